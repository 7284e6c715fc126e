"""Sanity: a ViT trained to find a pattern puts its rollout mass where the pattern is.

Each positive image has a checkerboard patch in one random quadrant of a noise image; the
negatives are noise only. After a few seconds of training, the rollouts of the positives
should concentrate on the pattern's quadrant (25% would be chance), and an untrained model
should not. The grid is 4x6 (non-square), so a transposed or mis-sliced map would fail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from explain_helpers import tiny_config

from vitfas.explain import explain
from vitfas.models import VisionTransformer

H, W, P = 32, 48, 8
GH, GW = H // P, W // P  # 4 x 6 patches, quadrants of 2 x 3


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, H, W, generator=g) * 0.5
    y = torch.randint(0, 2, (n,), generator=g)
    quad = torch.randint(0, 4, (n,), generator=g)
    pat = torch.ones(3, P, P)
    pat[:, ::2, ::2] = -1
    pat[:, 1::2, 1::2] = -1
    for i in torch.nonzero(y).flatten().tolist():
        qy, qx = divmod(int(quad[i]), 2)
        py = qy * GH // 2 + int(torch.randint(0, GH // 2, (1,), generator=g))
        px = qx * GW // 2 + int(torch.randint(0, GW // 2, (1,), generator=g))
        x[i, :, py * P : (py + 1) * P, px * P : (px + 1) * P] += 2 * pat
    return x, y, quad


def _quadrant_mass(maps: torch.Tensor) -> torch.Tensor:
    """``[B, 4, 6]`` -> ``[B, 4]`` share of each quadrant (row-major quadrant order)."""
    m = maps.clamp(min=0)
    q = torch.stack([m[:, a * GH // 2 : (a + 1) * GH // 2, b * GW // 2 : (b + 1) * GW // 2]
                     .sum((1, 2)) for a in range(2) for b in range(2)], dim=1)
    return q / q.sum(1, keepdim=True)


def _scores(model: VisionTransformer, x: torch.Tensor, quad: torch.Tensor) -> dict[str, tuple]:
    out = {}
    for name, method, kw in [("rollout", "rollout", {}),
                             ("rollout-discard", "rollout", {"discard_ratio": 0.9}),
                             ("grad-rollout", "grad-rollout", {"target": 1})]:
        share = _quadrant_mass(explain(model, x, method, **kw).maps)  # type: ignore[arg-type]
        right = share.gather(1, quad[:, None]).squeeze(1)
        out[name] = (float(right.mean()), float((share.argmax(1) == quad).float().mean()))
    return out


def test_rollout_mass_lands_in_the_pattern_quadrant() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(tiny_config(img_size=(H, W), patch_size=P))
    xte, yte, qte = _data(128, seed=2)
    pos = yte == 1
    before = _scores(model.eval(), xte[pos], qte[pos])
    for name, (share, _) in before.items():
        assert share < 0.35, f"untrained {name} already favours the quadrant: {before}"

    xtr, ytr, _ = _data(512, seed=1)
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(80):
        idx = torch.randint(0, len(xtr), (64,), generator=g)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xte).argmax(-1) == yte).float().mean())
    assert acc > 0.95, f"the model did not learn the task (accuracy {acc:.3f})"

    after = _scores(model, xte[pos], qte[pos])
    # measured (this seed): rollout 0.67 of the mass in the right quadrant, heaviest
    # quadrant for 100% of images; with discard 0.9: 0.95; grad-rollout 0.95; chance 0.25.
    # Other seeds give plain rollout 0.48-0.67 (it keeps the first block's diffuse
    # class-token attention through the identity term), hence the lower bar for it.
    share, top = after["rollout"]
    assert share > 0.45 and top > 0.95, after
    assert after["rollout-discard"][0] > 0.7, after
    assert after["grad-rollout"][0] > 0.6, after
