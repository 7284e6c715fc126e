"""Self-supervised pre-training (MAE)."""
