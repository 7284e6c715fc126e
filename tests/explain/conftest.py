"""Fixtures for the explain tests."""

from __future__ import annotations

import pytest
from explain_helpers import tiny_config

from vitfas.models import VisionTransformer


@pytest.fixture
def tiny_model() -> VisionTransformer:
    """A 2-block, 2-head ViT on 32x48 inputs (4x6 patches), random weights, eval mode."""
    return VisionTransformer(tiny_config()).eval()
