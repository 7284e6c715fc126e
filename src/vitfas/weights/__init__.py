"""Weight interop: checkpoints from timm, Hugging Face and JAX into vitfas models."""

from vitfas.weights.core import architecture_of, check_and_load, save_model

__all__ = ["architecture_of", "check_and_load", "save_model"]
