"""vitfas.explain."""
