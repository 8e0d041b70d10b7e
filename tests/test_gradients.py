"""Gradients reach every parameter and stay finite, in float32 and bfloat16 autocast."""

from __future__ import annotations

import pytest
import torch

from trecvit.layers import linear_scan, sqrt_bound_derivative

from conftest import tiny_model


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bfloat16-autocast"])
@pytest.mark.parametrize("pool_type, posemb", [("tok", "learn"), ("gap", "sincos2d")])
def test_gradients_reach_every_parameter(autocast, pool_type, posemb):
    model = tiny_model(pool_type=pool_type, posemb=posemb).train()
    video = torch.rand(2, 8, 3, 32, 32)  # 2 clips of 4 frames
    labels = torch.tensor([1, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(video)
        loss = torch.nn.functional.cross_entropy(out.logits.float(), labels)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert bool(torch.isfinite(p.grad).all()), f"non-finite gradient for {name}"
        assert float(p.grad.abs().sum()) > 0, f"zero gradient for {name}"


def test_step_is_differentiable_through_the_state():
    model = tiny_model().train()
    state = model.init_state(1)
    frames = torch.rand(3, 1, 3, 32, 32)
    for frame in frames:
        out, state = model.step(frame, state)
    out.logits.sum().backward()
    a_param = model.encoder.blocks[0].temporal.rg_lru.a_param
    assert a_param.grad is not None and bool(torch.isfinite(a_param.grad).all())


def naive_scan(a, x, h0):
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = a[:, t] * h + x[:, t]
        hs.append(h)
    return torch.stack(hs, 1)


def test_linear_scan_gradients_match_autograd_of_the_loop():
    torch.manual_seed(0)
    a = torch.rand(2, 7, 3, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 7, 3, 5, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear_scan, (a, x, h0))
    assert torch.autograd.gradcheck(lambda a, x: linear_scan(a, x), (a, x))
    g = torch.randn(2, 7, 3, 5, dtype=torch.float64)
    ours = torch.autograd.grad((linear_scan(a, x, h0) * g).sum(), (a, x, h0))
    ref = torch.autograd.grad((naive_scan(a, x, h0) * g).sum(), (a, x, h0))
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r)


def test_sqrt_derivative_is_capped_at_1000():
    x = torch.tensor([0.0, 1e-12, 0.25, 1.0], requires_grad=True)
    y = sqrt_bound_derivative(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), x.detach().sqrt())
    torch.testing.assert_close(x.grad, torch.tensor([1000.0, 1000.0, 1.0, 0.5]))
