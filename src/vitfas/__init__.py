"""vitfas: Vision Transformers in PyTorch, built for face anti-spoofing."""

from vitfas.errors import (
    BadCheckpointError,
    BadConfigError,
    BadImageError,
    BadVideoError,
    NoFaceError,
    VitfasError,
)

__version__ = "0.1.0"

# torch-backed names are imported on first use, so that `import vitfas.errors` (and the
# command line's --help/--version) do not pay for importing torch.
_LAZY = {
    "VisionTransformer": "vitfas.models",
    "ViTConfig": "vitfas.models",
    "list_models": "vitfas.models",
    "create_model": "vitfas.weights.pretrained",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vitfas' has no attribute {name!r}")


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
