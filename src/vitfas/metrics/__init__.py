"""vitfas.metrics."""
