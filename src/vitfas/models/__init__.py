"""Models: the Vision Transformer, its position encodings, attention and the registry."""

from vitfas.models.attention import Attention, Block, DropPath, LayerScale, Mlp
from vitfas.models.pos_embed import RelativePositionBias, resample_pos_embed, sincos_2d
from vitfas.models.registry import (
    build_from_architecture,
    create_model,
    get_entry,
    list_models,
    model_config,
    register_model,
)
from vitfas.models.vit import PatchEmbed, VisionTransformer, ViTConfig, vit_config

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "RelativePositionBias",
    "ViTConfig",
    "VisionTransformer",
    "build_from_architecture",
    "create_model",
    "get_entry",
    "list_models",
    "model_config",
    "register_model",
    "resample_pos_embed",
    "sincos_2d",
    "vit_config",
]

# Model families that register their own configs (import for the side effect).
from vitfas.models import convstem as convstem
from vitfas.models import deit as deit
from vitfas.models import lbptokens as lbptokens  # registers vit_lbptok_*
from vitfas.models import mae as mae  # registers mae_vit_* (MaskedAutoencoderViT)
from vitfas.models import swin as swin
from vitfas.models.convstem import ConvStemVisionTransformer, ConvStemViTConfig
from vitfas.models.deit import DeiTConfig, DistilledVisionTransformer
from vitfas.models.lbptokens import LBPTokenVisionTransformer, LBPTokenViTConfig
from vitfas.models.swin import SwinConfig, SwinTransformer

__all__ += ["ConvStemViTConfig", "ConvStemVisionTransformer", "DeiTConfig",
            "DistilledVisionTransformer", "LBPTokenViTConfig",
            "LBPTokenVisionTransformer", "SwinConfig", "SwinTransformer"]
