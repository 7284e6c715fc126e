"""vitfas.train."""
