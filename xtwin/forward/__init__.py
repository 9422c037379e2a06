"""The digital twin: microstructure -> electrochemistry -> Li field -> acquisition -> files."""
