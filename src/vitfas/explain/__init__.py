"""Explainability for ViTs: attention maps, attention rollout, gradient-weighted rollout,
heatmap overlays and position-embedding similarity figures.

>>> from vitfas.explain import explain
>>> e = explain(model, images, "rollout")           # e.maps: [B, h, w] over the patch grid

See docs/explain.md.
"""

from vitfas.explain.explainer import (
    METHODS,
    Explanation,
    TokenLayout,
    attention_and_gradients,
    attention_weights,
    explain,
    layer_head_maps,
    resolve_query,
    token_layout,
)
from vitfas.explain.overlay import (
    colorize,
    crop_to_image_affine,
    layer_head_figure,
    normalise,
    overlay,
    overlay_on_crop,
    overlay_on_image,
    save_png,
    to_pixels,
)
from vitfas.explain.posembed import (
    local_structure,
    position_embedding,
    similarity_figure,
    similarity_maps,
)
from vitfas.explain.rollout import (
    HEAD_FUSIONS,
    add_residual_and_normalise,
    all_attention_maps,
    attention_map,
    discard_lowest,
    fuse_heads,
    grad_rollout,
    readout,
    rollout,
)

__all__ = [
    "HEAD_FUSIONS",
    "METHODS",
    "Explanation",
    "TokenLayout",
    "add_residual_and_normalise",
    "all_attention_maps",
    "attention_and_gradients",
    "attention_map",
    "attention_weights",
    "colorize",
    "crop_to_image_affine",
    "discard_lowest",
    "explain",
    "fuse_heads",
    "grad_rollout",
    "layer_head_figure",
    "layer_head_maps",
    "local_structure",
    "normalise",
    "overlay",
    "overlay_on_crop",
    "overlay_on_image",
    "position_embedding",
    "readout",
    "resolve_query",
    "rollout",
    "save_png",
    "similarity_figure",
    "similarity_maps",
    "to_pixels",
    "token_layout",
]
