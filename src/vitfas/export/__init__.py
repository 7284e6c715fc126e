"""vitfas.export."""
