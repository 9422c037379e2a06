"""Analysis of generated or reconstructed volumes: microstructure metrics, statistics."""
