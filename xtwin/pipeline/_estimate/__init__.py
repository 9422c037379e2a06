"""What is estimated about a scan before its blocks run: each estimator returns a typed
record (what it found, how sure, whether it is applied); the notes and the provenance are
rendered from the records."""
