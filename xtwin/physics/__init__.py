"""X-ray physics shared by the twin and the pipeline: materials, attenuation, XANES, dose."""
