"""Rollout, discard and gradient rollout on tiny hand-worked matrices."""

from __future__ import annotations

import pytest
import torch

from vitfas.errors import BadConfigError
from vitfas.explain.rollout import (
    attention_map,
    discard_lowest,
    grad_rollout,
    readout,
    rollout,
)

# two heads whose mean is A1 = [[.5, .25, .25], [0, 1, 0], [.5, 0, .5]]
H0 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
H1 = [[0.0, 0.5, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
A2 = [[0.0, 0.5, 0.5], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]


def _blocks() -> list[torch.Tensor]:
    b1 = torch.tensor([H0, H1]).unsqueeze(0)  # [1, 2, 3, 3]
    b2 = torch.tensor([A2, A2]).unsqueeze(0)
    return [b1, b2]


def _random_attn(batch: int, heads: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, heads, n, n, generator=g) * 2).softmax(dim=-1)


def test_rollout_equals_hand_computed_product() -> None:
    # (A1 + I)/2 = [[.75, .125, .125], [0, 1, 0], [.25, 0, .75]]
    # (A2 + I)/2 = [[.5, .25, .25], [.25, .75, 0], [.5, 0, .5]]
    # their product, worked by hand:
    expected = torch.tensor([
        [0.4375, 0.3125, 0.25],
        [0.1875, 0.78125, 0.03125],
        [0.5, 0.0625, 0.4375],
    ])
    R = rollout(_blocks(), head_fusion="mean")
    assert R.shape == (1, 3, 3)
    torch.testing.assert_close(R[0], expected, atol=1e-6, rtol=0)
    # only the first block: (A1 + I) / 2
    R1 = rollout(_blocks()[:1])
    torch.testing.assert_close(
        R1[0], torch.tensor([[0.75, 0.125, 0.125], [0.0, 1.0, 0.0], [0.25, 0.0, 0.75]]),
        atol=1e-6, rtol=0,
    )


def test_max_and_min_fusion_renormalise_rows_not_columns() -> None:
    # max over heads of block 1 = [[1, .5, .5], [0, 1, 0], [1, 0, 1]], row sums 2, 1, 2;
    # + I -> [[2, .5, .5], [0, 2, 0], [1, 0, 2]], rows divided by 3, 2, 3.
    # Dividing by a.sum(-1) without keepdim (the vit-explain bug) would divide the
    # *columns* by 3, 2, 3 instead, e.g. give 0.25 at [0, 1] instead of 1/6.
    R = rollout(_blocks()[:1], head_fusion="max")
    expected = torch.tensor([[2 / 3, 1 / 6, 1 / 6], [0.0, 1.0, 0.0], [1 / 3, 0.0, 2 / 3]])
    torch.testing.assert_close(R[0], expected, atol=1e-6, rtol=0)
    # min over heads = [[0, 0, 0], [0, 1, 0], [0, 0, 0]] -> + I, rows renormalised = I
    Rmin = rollout(_blocks()[:1], head_fusion="min")
    torch.testing.assert_close(Rmin[0], torch.eye(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.5, 0.9])
def test_rollout_rows_stay_normalised(fusion: str, discard: float) -> None:
    attns = [_random_attn(3, 4, 7, seed=i) for i in range(5)]
    R = rollout(attns, head_fusion=fusion, discard_ratio=discard)  # type: ignore[arg-type]
    assert R.shape == (3, 7, 7)
    assert (R >= 0).all()
    torch.testing.assert_close(R.sum(-1), torch.ones(3, 7), atol=1e-5, rtol=0)


def test_discard_keeps_class_token_and_is_per_sample() -> None:
    a = _random_attn(2, 1, 4, seed=3)[:, 0]  # [2, 4, 4]
    a[:, :, 0] = 1e-6  # attention *to* the class token is the smallest everywhere
    out = discard_lowest(a, 0.5, keep_tokens=(0,))
    # the class token's column survives untouched in every sample
    torch.testing.assert_close(out[:, :, 0], a[:, :, 0], atol=0, rtol=0)
    for b in range(2):
        free = a[b, :, 1:].reshape(-1)  # the 12 discardable entries
        k = int(12 * 0.5)
        dropped = out[b, :, 1:].reshape(-1) == 0
        assert int(dropped.sum()) == k
        # exactly this sample's own k smallest entries were dropped
        assert set(free.argsort()[:k].tolist()) == set(dropped.nonzero().flatten().tolist())
    assert (a > 0).all()  # the input was not modified


def test_discard_in_rollout_never_drops_class_token() -> None:
    a = _random_attn(1, 2, 5, seed=4)
    a[..., 0] = 1e-4  # the class-token column is the weakest
    a = a / a.sum(-1, keepdim=True)
    R = rollout([a, a], discard_ratio=0.95, keep_tokens=(0,))
    assert (R[0, :, 0] > 0).all()
    R_unprotected = rollout([a, a], discard_ratio=0.95, keep_tokens=())
    assert (R_unprotected[0, 1:, 0] == 0).all()


def test_discard_ratio_range() -> None:
    with pytest.raises(BadConfigError, match="discard_ratio"):
        rollout([_random_attn(1, 1, 3, 0)], discard_ratio=1.0)


def test_grad_rollout_matches_hand_computation() -> None:
    attns = [
        torch.tensor([[[0.5, 0.5], [0.25, 0.75]], [[1.0, 0.0], [0.5, 0.5]]]).unsqueeze(0),
        torch.tensor([[[0.5, 0.5], [0.5, 0.5]], [[0.2, 0.8], [0.6, 0.4]]]).unsqueeze(0),
    ]
    grads = [
        torch.tensor([[[2.0, -2.0], [4.0, 0.0]], [[1.0, 3.0], [-2.0, 2.0]]]).unsqueeze(0),
        torch.tensor([[[1.0, 1.0], [-1.0, 2.0]], [[5.0, 0.0], [0.0, -1.0]]]).unsqueeze(0),
    ]
    # block 1: grad*attn = [[1, -1], [1, 0]] and [[1, 0], [-1, 1]]; clamp, mean over heads:
    #   Ā1 = [[1, 0], [.5, .5]];  R1 = I + Ā1 = [[2, 0], [.5, 1.5]]
    # block 2: grad*attn = [[.5, .5], [-.5, 1]] and [[1, 0], [0, -.4]]; clamp, mean:
    #   Ā2 = [[.75, .25], [0, .5]];  R2 = R1 + Ā2 R1 = [[3.625, .375], [.75, 2.25]]
    # (averaging before clamping would give Ā1 = [[1, 0], [0, .5]] instead.)
    R = grad_rollout(attns, grads)
    torch.testing.assert_close(
        R[0], torch.tensor([[3.625, 0.375], [0.75, 2.25]]), atol=1e-6, rtol=0
    )
    R1 = grad_rollout(attns[:1], grads[:1])
    torch.testing.assert_close(R1[0], torch.tensor([[2.0, 0.0], [0.5, 1.5]]), atol=1e-6, rtol=0)


def test_grad_rollout_shape_mismatch() -> None:
    a = [_random_attn(1, 2, 3, 0)]
    with pytest.raises(BadConfigError, match="gradients"):
        grad_rollout(a, [torch.zeros(1, 2, 4, 4)])


def test_readout_prefix_and_grid() -> None:
    # 2 prefix tokens + a 2x3 grid; row 0 holds 0..7, so the patches are 2..7
    N = 8
    m = torch.zeros(1, N, N)
    m[0, 0] = torch.arange(N, dtype=torch.float32)
    m[0, 2:, 2:] = 1.0
    out = readout(m, 2, (2, 3), query=0)
    torch.testing.assert_close(out[0], torch.tensor([[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]]))
    torch.testing.assert_close(readout(m, 2, (2, 3), "mean")[0], torch.ones(2, 3))
    with pytest.raises(BadConfigError, match="prefix tokens"):
        readout(m, 1, (2, 3))


def test_attention_map_picks_layer_and_head() -> None:
    attns = [_random_attn(2, 3, 5, seed=i) for i in range(2)]  # 1 prefix + 2x2 grid
    m = attention_map(attns, layer=1, head=2, num_prefix_tokens=1, grid_size=(2, 2))
    torch.testing.assert_close(m, attns[1][:, 2, 0, 1:].reshape(2, 2, 2))
    fused = attention_map(attns, layer=-1, head=None, num_prefix_tokens=1, grid_size=(2, 2),
                          head_fusion="max")
    torch.testing.assert_close(fused, attns[1].amax(1)[:, 0, 1:].reshape(2, 2, 2))
    with pytest.raises(BadConfigError, match="head 3 out of range"):
        attention_map(attns, 0, 3, 1, (2, 2))
    with pytest.raises(BadConfigError, match="layer 2 out of range"):
        attention_map(attns, 2, 0, 1, (2, 2))
