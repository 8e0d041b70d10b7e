"""Every implementation of the temporal scan equals the simple sequential scan, values and gradients."""

from __future__ import annotations

import pytest
import torch

from trecvit.layers import scan
from trecvit.layers.scan import linear_scan, resolve_scan_impl

CPU_IMPLS = ["chunked"] + (["numba"] if scan.numba_available() else [])


def _inputs(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*shape, generator=g, dtype=dtype).requires_grad_()
    x = torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()
    h0 = torch.randn(shape[0], *shape[2:], generator=g, dtype=dtype).requires_grad_()
    grad = torch.randn(*shape, generator=g, dtype=dtype)
    return a, x, h0, grad


def _run(impl, a, x, h0, grad):
    h = linear_scan(a, x, h0, impl=impl)
    inputs = (a, x) if h0 is None else (a, x, h0)
    return (h, *torch.autograd.grad(h, inputs, grad))


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("shape", [(2, 2, 3), (1, 37, 5, 3), (3, 300, 70), (1, 1024, 3000)])
@pytest.mark.parametrize("with_h0", [True, False])
def test_scan_equals_sequential(impl, shape, with_h0):
    a, x, h0, grad = _inputs(shape)
    h0 = h0 if with_h0 else None
    expected = _run("sequential", a, x, h0, grad)
    for ours, ref in zip(_run(impl, a, x, h0, grad), expected):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_scan_gradcheck(impl):
    a, x, h0, _ = _inputs((2, 9, 3), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, x, h0: linear_scan(a, x, h0, impl=impl), (a, x, h0))


def test_scan_only_x_needs_grad():
    a, x, h0, grad = _inputs((2, 40, 6))
    a = a.detach()
    (gx,) = torch.autograd.grad(linear_scan(a, x, h0.detach()), (x,), grad)
    (ref,) = torch.autograd.grad(linear_scan(a, x, h0.detach(), impl="sequential"), (x,), grad)
    torch.testing.assert_close(gx, ref)


def test_scan_chooses_and_validates_the_implementation(monkeypatch):
    x = torch.zeros(1, 8, 4)
    assert resolve_scan_impl(x) == ("numba" if scan.numba_available() else "sequential")
    assert resolve_scan_impl(torch.zeros(1, 8, 4, dtype=torch.bfloat16)) in ("chunked", "sequential")
    monkeypatch.setenv(scan.SCAN_ENV, "chunked")
    assert resolve_scan_impl(x) == "chunked"
    monkeypatch.setenv(scan.SCAN_ENV, "fastest")
    with pytest.raises(ValueError, match="unknown scan implementation 'fastest'"):
        resolve_scan_impl(x)
    with pytest.raises(ValueError, match="needs Triton and"):
        resolve_scan_impl(x, "triton")


def test_scan_is_one_opaque_op_under_compile():
    a, x, h0, _ = _inputs((1, 50, 8))
    compiled = torch.compile(linear_scan, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(a, x, h0), linear_scan(a, x, h0, impl="sequential"))


@pytest.mark.skipif(not scan.numba_available(), reason="needs Numba")
@pytest.mark.parametrize("case", ["fresh", "first", "carry"])
def test_fused_rglru_equals_the_unfused_layer(case, monkeypatch):
    from trecvit.layers import RGLRU
    from trecvit.layers import rglru as rglru_module

    torch.manual_seed(0)
    layer = RGLRU(24, 3)
    b, t, n = 2, 9, 3
    c = torch.randn(b, t, n, 24, requires_grad=True)
    h0 = torch.randn(b, n, 24, requires_grad=True)
    grad = torch.randn(b, t, n, 24)
    args = {"fresh": (None, None), "first": (h0, torch.tensor([True, False])), "carry": (h0, None)}[case]
    params = [c, *layer.parameters()] + ([h0] if args[0] is not None else [])

    def run():
        y, last = layer(c, *args)
        return (y, last, *torch.autograd.grad((y * grad).sum() + last.sum(), params))

    fused = run()
    monkeypatch.setattr(rglru_module, "fused_available", lambda x: False)
    unfused = run()
    for ours, ref in zip(fused, unfused):
        torch.testing.assert_close(ours, ref, atol=2e-5, rtol=2e-5)
