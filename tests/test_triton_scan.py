"""The Triton scan kernel equals the sequential ``linear_scan``, forward and backward.

Without a GPU the kernels run in Triton's CPU interpreter: ``TRITON_INTERPRET=1``
has to be in the environment before Triton reads it, so those comparisons run in
one child process, which prints the largest differences per case as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("triton")

from trecvit.layers import linear_scan
from trecvit.layers.kernels import triton_scan

TOLERANCE = 1e-5

# (id, shape [b, t, ...], with h0, block_c override or None, which inputs need a gradient)
CASES = [
    ("t1-no-h0", (2, 1, 37), False, None, "ax"),
    ("t1-h0", (2, 1, 5, 3), True, None, "axh"),
    ("odd-channels-3-blocks", (2, 7, 37), True, 16, "axh"),
    ("odd-channels-no-h0", (3, 6, 37), False, 16, "ax"),
    ("trailing-dims", (2, 5, 3, 7), True, None, "axh"),
    ("block-wider-than-channels", (1, 4, 5), True, None, "axh"),
    ("only-x-grad", (2, 4, 19), True, 8, "x"),
    ("only-a-h0-grad", (2, 4, 19), True, 8, "ah"),
    ("non-contiguous", (2, 6, 4, 5), True, 8, "axh"),
]

CHILD = textwrap.dedent("""
    import json, sys
    from trecvit.layers.kernels import triton_scan
    lazy = "triton" not in sys.modules  # importing the module must not import triton
    import torch
    from trecvit.layers import linear_scan
    from trecvit.layers.kernels.triton_scan import _triton_linear_scan

    def run(scan, a, x, h0, g, needs):
        leaves = {k: v.detach().clone().requires_grad_(k in needs) if v is not None else None
                  for k, v in (("a", a), ("x", x), ("h", h0))}
        h = scan(leaves["a"], leaves["x"], leaves["h"])
        inputs = [leaves[k] for k in needs]
        grads = torch.autograd.grad(h, inputs, g, allow_unused=True, materialize_grads=True)
        return h.detach(), dict(zip(needs, grads))

    results = {}
    for name, shape, with_h0, block_c, needs in json.loads(sys.argv[1]):
        torch.manual_seed(0)
        shape = tuple(shape)
        a = torch.rand(shape) * 1.2 - 0.1  # mostly in (0, 1), a few outside
        x = torch.randn(shape)
        if name == "non-contiguous":
            a = a.transpose(2, 3).contiguous().transpose(2, 3)
            x = torch.randn(shape[:2] + shape[3:] + shape[2:3]).transpose(2, 3)
            assert not a.is_contiguous() and not x.is_contiguous()
        h0 = torch.randn(shape[:1] + shape[2:]) if with_h0 else None
        needs = "".join(k for k in needs if k != "h" or with_h0)
        g = torch.randn(shape)
        h_ref, g_ref = run(linear_scan, a, x, h0, g, needs)
        h_tri, g_tri = run(lambda a_, x_, h_: _triton_linear_scan(a_, x_, h_, block_c=block_c),
                           a, x, h0, g, needs)
        errors = {"h": (h_tri - h_ref).abs().max().item()}
        errors.update({"grad_" + k: (g_tri[k] - g_ref[k]).abs().max().item() for k in needs})
        errors["shape_dtype_ok"] = h_tri.shape == h_ref.shape and h_tri.dtype == h_ref.dtype
        results[name] = errors

    # bfloat16 in, float32 accumulation: close to the float32 scan of the same values
    torch.manual_seed(0)
    a = torch.rand(2, 8, 33).bfloat16()
    x = torch.randn(2, 8, 33).bfloat16()
    h = _triton_linear_scan(a, x, None)
    ref = linear_scan(a.float(), x.float(), None)
    results["bfloat16"] = {"h": (h.float() - ref).abs().max().item(),
                           "shape_dtype_ok": h.dtype == torch.bfloat16}
    print(json.dumps({"lazy": lazy, "results": results}))
""")


@pytest.fixture(scope="module")
def interpreted():
    """Every case run once in a child process with ``TRITON_INTERPRET=1``."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CASES)], env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_module_import_does_not_import_triton(interpreted):
    assert interpreted["lazy"]


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_interpreted_kernel_matches_sequential_scan(interpreted, name):
    errors = dict(interpreted["results"][name])
    assert errors.pop("shape_dtype_ok")
    needs = next(case[4] for case in CASES if case[0] == name)
    has_h0 = next(case[2] for case in CASES if case[0] == name)
    expected = {"h"} | {"grad_" + k for k in needs if k != "h" or has_h0}
    assert set(errors) == expected
    for key, err in errors.items():
        assert err <= TOLERANCE, f"{name}: {key} differs by {err}"


def test_interpreted_kernel_bfloat16(interpreted):
    errors = interpreted["results"]["bfloat16"]
    assert errors["shape_dtype_ok"]
    assert errors["h"] < 0.05  # only the bfloat16 rounding of the stored states


def test_cpu_tensors_are_refused_without_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    a = torch.rand(1, 3, 4)
    assert not triton_scan.can_use(a, a)
    with pytest.raises(ValueError, match="CUDA"):
        triton_scan.triton_linear_scan(a, a)


def test_bad_inputs_are_refused():
    a = torch.rand(1, 3, 4)
    with pytest.raises(ValueError, match="differ in shape"):
        triton_scan._triton_linear_scan(a, torch.rand(1, 3, 5))
    with pytest.raises(ValueError, match="h0"):
        triton_scan._triton_linear_scan(a, a, torch.rand(1, 5))
    with pytest.raises(TypeError, match="dtype"):
        triton_scan._triton_linear_scan(a.double(), a.double())


@pytest.mark.skipif(not triton_scan.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_kernel_matches_sequential_scan(dtype):
    torch.manual_seed(0)
    shape = (3, 9, 5, 301)
    a = torch.rand(shape, device="cuda").to(dtype).requires_grad_()
    x = torch.randn(shape, device="cuda").to(dtype).requires_grad_()
    h0 = torch.randn(shape[:1] + shape[2:], device="cuda").to(dtype).requires_grad_()
    assert triton_scan.can_use(a, x, h0)
    g = torch.randn(shape, device="cuda").to(dtype)
    h = triton_scan.triton_linear_scan(a, x, h0)
    grads = torch.autograd.grad(h, (a, x, h0), g)
    f32 = [t.detach().float().requires_grad_() for t in (a, x, h0)]
    h_ref = linear_scan(*f32)
    grads_ref = torch.autograd.grad(h_ref, f32, g.float())
    tol = TOLERANCE if dtype == torch.float32 else 0.05
    assert h.dtype == dtype
    torch.testing.assert_close(h.float(), h_ref, atol=tol, rtol=tol if dtype == torch.float32 else 0.02)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol if dtype == torch.float32 else 0.02)
