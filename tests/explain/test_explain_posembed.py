"""Position-embedding similarity: local structure for sin-cos, none for random."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from explain_helpers import tiny_config, tiny_deit
from PIL import Image

from vitfas.errors import BadConfigError
from vitfas.explain import local_structure, position_embedding, similarity_figure, similarity_maps
from vitfas.models import VisionTransformer, sincos_2d


def test_sincos_has_local_structure_and_random_has_none() -> None:
    grid = (8, 10)
    sim = similarity_maps(sincos_2d(grid, 128), grid)
    assert sim.shape == (8, 10, 8, 10)
    # each position is most similar to itself
    diag = sim.reshape(80, 80).diagonal()
    torch.testing.assert_close(diag, torch.ones(80), atol=1e-5, rtol=0)
    s = local_structure(sim)
    assert s["contrast"] > 0.1, s  # measured 0.19 (neighbours 0.98, far 0.80)
    # a position's neighbours are more similar than positions far away, everywhere
    assert float(sim[3, 4, 3, 5]) > float(sim[3, 4, 3, 9])
    assert float(sim[3, 4, 4, 4]) > float(sim[3, 4, 7, 4])

    g = torch.Generator().manual_seed(0)
    rnd = local_structure(similarity_maps(torch.randn(80, 128, generator=g), grid))
    assert abs(rnd["contrast"]) < 0.05, rnd


def test_position_embedding_of_models() -> None:
    # learned, prefix tokens (class + 2 registers) carry a position: they are dropped
    m = VisionTransformer(tiny_config(reg_tokens=2))
    emb, grid = position_embedding(m)
    assert grid == (4, 6) and emb.shape == (24, 32)
    torch.testing.assert_close(emb, m.pos_embed[0, 3:].detach())
    # learned, grid only
    m2 = VisionTransformer(tiny_config(reg_tokens=2, pos_embed_on_prefix=False))
    torch.testing.assert_close(position_embedding(m2)[0], m2.pos_embed[0].detach())
    # DeiT: class and distillation tokens both have a position entry
    m3 = tiny_deit()
    assert m3.pos_embed.shape[1] == 2 + 24
    torch.testing.assert_close(position_embedding(m3)[0], m3.pos_embed[0, 2:].detach())
    # sincos: computed for the grid
    m4 = VisionTransformer(tiny_config(pos_embed="sincos"))
    torch.testing.assert_close(position_embedding(m4)[0], sincos_2d((4, 6), 32))
    # relative bias: no per-position vector
    with pytest.raises(BadConfigError, match="no absolute position embedding"):
        position_embedding(VisionTransformer(tiny_config(pos_embed="rel")))


def test_similarity_figure(tmp_path: Path) -> None:
    grid = (4, 6)
    out = similarity_figure(similarity_maps(sincos_2d(grid, 32), grid), tmp_path / "s.png",
                            title="sincos")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 100 and im.height > 100
