"""vitfas.faces."""
