"""vitfas: Vision Transformers in PyTorch, built for face anti-spoofing."""

from vitfas.errors import (
    BadCheckpointError,
    BadConfigError,
    BadImageError,
    BadVideoError,
    NoFaceError,
    VitfasError,
)
from vitfas.models import VisionTransformer, ViTConfig, list_models
from vitfas.weights.pretrained import create_model

__version__ = "0.1.0"


def load_model(path, **kwargs):
    """Build a model from a checkpoint that names its own architecture.

    See :func:`vitfas.weights.load_model`.
    """
    from vitfas.weights import load_model as _load_model

    return _load_model(path, **kwargs)


__all__ = [
    "BadCheckpointError",
    "BadConfigError",
    "BadImageError",
    "BadVideoError",
    "NoFaceError",
    "ViTConfig",
    "VisionTransformer",
    "VitfasError",
    "__version__",
    "create_model",
    "list_models",
    "load_model",
]
