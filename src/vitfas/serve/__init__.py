"""vitfas.serve."""
