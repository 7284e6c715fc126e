"""vitfas.data."""
