"""The RG-LRU recurrence fused for training on the CPU.

Forward: PyTorch computes the two sigmoid gates and ``a = exp(-C gate_a softplus(a_param))``
(vectorised); one Numba pass then does ``m = sqrt(1 - a^2)`` (1 at a reset), the gated
input and the scan. Backward: one reverse Numba pass does the whole chain rule (the
scan, the bounded square root of the official model, both sigmoids and ``softplus(a_param)``)
and writes the gradients of the input and of both gate logits. Autograd would otherwise
make about 25 passes over these ``[b, t, n, l]`` tensors. Numerically the same as
:class:`~trecvit.layers.RGLRU`'s unfused path (tested); used by it automatically when
:func:`fused_available` says so.
"""

from __future__ import annotations

import functools

import torch

from trecvit.layers.kernels.numba_scan import (MAX_SQRT_GRADIENT, _numba_kernels, _numba_threads,
                                               numba_available)
from trecvit.layers.scan import resolve_scan_impl
from trecvit.validation import without_values

_BLOCK = 2048


@functools.cache
def _kernels():
    if _numba_kernels() is None:
        return None
    import math

    import numba
    import numpy as np

    @numba.njit(parallel=True, cache=True, nogil=True)
    def forward(a, c, gate_x, h0, reset, h, block):  # pragma: no cover - compiled
        b_size, t_size, c_size = c.shape
        nb = (c_size + block - 1) // block
        for job in numba.prange(b_size * nb):
            b = job // nb
            c0 = (job % nb) * block
            c1 = min(c0 + block, c_size)
            state = h0[b, c0:c1].copy()
            for t in range(t_size):
                if t == 0 and reset[b]:
                    for i in range(c1 - c0):
                        state[i] = a[b, t, c0 + i] * state[i] + c[b, t, c0 + i] * gate_x[b, t, c0 + i]
                        h[b, t, c0 + i] = state[i]
                else:
                    for i in range(c1 - c0):
                        av = a[b, t, c0 + i]
                        m = math.sqrt(1.0 - av * av)
                        state[i] = av * state[i] + c[b, t, c0 + i] * gate_x[b, t, c0 + i] * m
                        h[b, t, c0 + i] = state[i]

    @numba.njit(parallel=True, cache=True, nogil=True)
    def backward(g, a, h, h0, c, gate_x, gate_a, sp, reset, cconst, eps,
                 dc, dgxl, dgal, dsp, dh0, block):  # pragma: no cover - compiled
        b_size, t_size, c_size = c.shape
        width = sp.shape[0]
        nb = (c_size + block - 1) // block
        for job in numba.prange(b_size * nb):
            b = job // nb
            c0 = (job % nb) * block
            c1 = min(c0 + block, c_size)
            d = np.zeros(c1 - c0, dtype=g.dtype)
            acc = np.zeros(c1 - c0, dtype=g.dtype)
            for t in range(t_size - 1, -1, -1):
                is_reset = t == 0 and reset[b]
                for i in range(c1 - c0):
                    k = c0 + i
                    dv = g[b, t, k]
                    if t + 1 < t_size:
                        dv += a[b, t + 1, k] * d[i]
                    d[i] = dv
                    av = a[b, t, k]
                    gx = gate_x[b, t, k]
                    ga = gate_a[b, t, k]
                    cv = c[b, t, k]
                    hp = h[b, t - 1, k] if t > 0 else h0[b, k]
                    da = dv * hp
                    if is_reset:
                        m = 1.0
                    else:
                        one_minus = 1.0 - av * av
                        m = math.sqrt(one_minus)
                        da += dv * cv * gx * (-2.0 * av) / math.sqrt(max(4.0 * one_minus, eps))
                    dc[b, t, k] = dv * gx * m
                    dgxl[b, t, k] = dv * cv * m * gx * (1.0 - gx)
                    dlog = da * av
                    dgal[b, t, k] = dlog * (-cconst * sp[k % width]) * ga * (1.0 - ga)
                    acc[i] += dlog * (-cconst * ga)
            for i in range(c1 - c0):
                dsp[b, c0 + i] = acc[i]
                dh0[b, c0 + i] = a[b, 0, c0 + i] * d[i]

    return forward, backward


def fused_available(x: torch.Tensor) -> bool:
    """Whether :class:`~trecvit.layers.RGLRU` can use the fused kernels for ``x``: float32 or
    float64 CPU tensors, Numba installed, not under ``torch.compile``, and the scan
    implementation in use is Numba's (so ``TRECVIT_SCAN`` switches this off too)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and numba_available()
            and not torch.compiler.is_compiling() and resolve_scan_impl(x) == "numba"
            and _kernels() is not None)


class _FusedRGLRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, gate_x_logits, gate_a_logits, sp, h0, reset, cconst):  # type: ignore[override]
        b, t = c.shape[:2]
        shape = c.shape
        c3 = c.reshape(b, t, -1).contiguous()
        gate_x = torch.sigmoid(gate_x_logits).reshape(b, t, -1)
        gate_a = torch.sigmoid(gate_a_logits).reshape(b, t, -1)
        width = sp.shape[0]
        a = torch.exp(gate_a.view(b, t, -1, width) * (-cconst * sp)).view(b, t, -1)
        h0z = h0.reshape(b, -1).contiguous() if h0 is not None else c3.new_zeros(b, c3.shape[2])
        h = torch.empty_like(c3)
        _numba_threads(_numba_kernels()[0])
        forward, _ = _kernels()
        if not without_values(c3):  # a fake tensor (the efficiency study's trace) has no values
            forward(a.numpy(), c3.numpy(), gate_x.contiguous().numpy(), h0z.numpy(), reset.numpy(),
                    h.numpy(), _BLOCK)
        ctx.save_for_backward(c3, gate_x, gate_a, a, h, h0z, sp, reset)
        ctx.cconst = cconst
        ctx.shape = shape
        ctx.has_h0 = h0 is not None
        return h.view(shape)

    @staticmethod
    def backward(ctx, grad_h):  # type: ignore[override]
        c3, gate_x, gate_a, a, h, h0z, sp, reset = ctx.saved_tensors
        g = grad_h.reshape(h.shape).contiguous()
        dc, dgxl, dgal = torch.empty_like(c3), torch.empty_like(c3), torch.empty_like(c3)
        dsp_lane, dh0 = torch.empty_like(h0z), torch.empty_like(h0z)
        _numba_threads(_numba_kernels()[0])
        _, backward = _kernels()
        if not without_values(g):
            backward(g.numpy(), a.numpy(), h.numpy(), h0z.numpy(), c3.numpy(), gate_x.numpy(),
                     gate_a.numpy(), sp.detach().contiguous().numpy(), reset.numpy(), float(ctx.cconst),
                     MAX_SQRT_GRADIENT ** -2, dc.numpy(), dgxl.numpy(), dgal.numpy(), dsp_lane.numpy(),
                     dh0.numpy(), _BLOCK)
        shape = ctx.shape
        dsp = dsp_lane.view(shape[0], -1, sp.shape[0]).sum(dim=(0, 1))
        return (dc.view(shape), dgxl.view(shape), dgal.view(shape), dsp,
                dh0.view(shape[:1] + shape[2:]) if ctx.has_h0 else None, None, None)


def fused_rglru(c, gate_x_logits, gate_a_logits, sp, h0, reset, cconst):
    return _FusedRGLRU.apply(c, gate_x_logits, gate_a_logits, sp, h0, reset, cconst)
