"""The linear recurrence ``h_t = a_t * h_{t-1} + x_t`` and the bounded square root.

:func:`linear_scan` is the temporal scan of the RG-LRU. Its gradient is the
reverse recurrence ``dh_t = g_t + a_{t+1} * dh_{t+1}``, ``da_t = dh_t * h_{t-1}``,
so autograd keeps no per-frame tensors. It has several implementations, all
numerically equal (to float32 rounding) and chosen automatically:

``"numba"`` (CPU, default there)
    a fused kernel compiled by Numba: one pass that reads ``a`` and ``x`` and
    writes ``h``, parallel over channels, vectorised within a row; the backward
    is one reverse pass. Used for float32/float64 CPU tensors when Numba is
    installed (it is a dependency of the package, but the code runs without it).
``"triton"`` (CUDA, default there)
    the Triton kernel of :mod:`trecvit.layers.kernels.triton_scan`, when Triton is
    installed. Never required.
``"chunked"``
    plain PyTorch for any device and dtype: the time axis is cut into chunks of
    about ``sqrt(t)`` frames; the chunks are scanned side by side, then the
    carries are propagated from chunk to chunk, so there are about
    ``2 * sqrt(t)`` vectorised steps instead of ``t``.
``"sequential"``
    the reference: one vectorised step per frame.

Set ``TRECVIT_SCAN`` (or pass ``impl=``) to force one. The CPU path is a
``torch.library`` custom op, so ``torch.compile`` treats it as one opaque call
(no graph break, no unrolled loop).

:func:`sqrt_bound_derivative` is ``sqrt(x)`` whose backward uses
``max(x, 1 / (4 * 1000^2))``: its derivative is at most 1000, which keeps the
RG-LRU's ``sqrt(1 - a^2)`` trainable in bfloat16 (as in the official model).
"""

from __future__ import annotations

import math
import os

import torch

from trecvit.layers.kernels import check_scan_shapes
from trecvit.layers.kernels.numba_scan import (MAX_SQRT_GRADIENT, _numba_backward, _numba_forward,
                                               _numba_kernels, numba_available)

SCAN_IMPLS = ("auto", "numba", "triton", "chunked", "sequential")
SCAN_ENV = "TRECVIT_SCAN"


# --------------------------------------------------------------------------- plain PyTorch

def _sequential(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """One step per frame over axis 1 of ``a, x [b, t, c]``."""
    h = torch.empty_like(x)
    prev = h0
    for t in range(x.shape[1]):
        prev = x[:, t] if prev is None else torch.addcmul(x[:, t], a[:, t], prev)
        h[:, t] = prev
    return h


def _chunk_size(num_frames: int) -> int:
    return max(1, int(math.sqrt(num_frames)))


def _chunked(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None,
             chunk: int | None = None) -> torch.Tensor:
    """Two-level scan over axis 1 of ``a, x [b, t, c]``: ``chunk + t / chunk`` vectorised steps."""
    b, t, c = x.shape
    k = chunk or _chunk_size(t)
    n = -(-t // k)
    pad = n * k - t
    if pad:  # a = 1, x = 0 past the end: the state just carries over
        a = torch.cat([a, a.new_ones(b, pad, c)], dim=1)
        x = torch.cat([x, x.new_zeros(b, pad, c)], dim=1)
    a4, x4 = a.reshape(b, n, k, c), x.reshape(b, n, k, c)
    local = torch.empty_like(x4)  # scan within each chunk, starting from zero
    decay = torch.empty_like(a4)  # product of a within each chunk, up to each frame
    local[:, :, 0] = x4[:, :, 0]
    decay[:, :, 0] = a4[:, :, 0]
    for i in range(1, k):
        local[:, :, i] = torch.addcmul(x4[:, :, i], a4[:, :, i], local[:, :, i - 1])
        decay[:, :, i] = a4[:, :, i] * decay[:, :, i - 1]
    carry = torch.empty(b, n, c, dtype=x.dtype, device=x.device)  # state entering each chunk
    state = h0 if h0 is not None else x.new_zeros(b, c)
    for j in range(n):
        carry[:, j] = state
        state = torch.addcmul(local[:, j, -1], decay[:, j, -1], state)
    h = torch.addcmul(local, decay, carry.unsqueeze(2)).reshape(b, n * k, c)
    return h[:, :t] if pad else h


def _torch_forward(a, x, h0, impl: str) -> torch.Tensor:
    return _chunked(a, x, h0) if impl == "chunked" else _sequential(a, x, h0)


def _torch_backward(a, h, h0, g, impl: str, need_a: bool):
    """Reverse scan ``dh_t = g_t + a_{t+1} dh_{t+1}`` as a forward scan of the flipped tensors."""
    a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
    dh = _torch_forward(a_next.flip(1), g.flip(1), None, impl).flip(1)
    grad_a = None
    if need_a:
        h_first = h0.unsqueeze(1) if h0 is not None else torch.zeros_like(h[:, :1])
        grad_a = dh * torch.cat([h_first, h[:, :-1]], dim=1)
    grad_h0 = a[:, 0] * dh[:, 0] if h0 is not None else None
    return grad_a, dh, grad_h0


# --------------------------------------------------------------------------- the custom op

def _forward(a, x, h0, impl: str) -> torch.Tensor:
    if impl == "numba" and _numba_kernels() is not None:
        return _numba_forward(a, x, h0)
    return _torch_forward(a, x, h0, impl)


@torch.library.custom_op("trecvit::linear_scan", mutates_args=())
def _scan_op(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None, impl: str) -> torch.Tensor:
    return _forward(a.contiguous(), x.contiguous(), h0, impl)


@_scan_op.register_fake
def _(a, x, h0, impl):
    return torch.empty_like(x)


@torch.library.custom_op("trecvit::linear_scan_backward", mutates_args=())
def _scan_backward_op(a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None, g: torch.Tensor,
                      impl: str, need_a: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = g.contiguous()
    if impl == "numba" and _numba_kernels() is not None:
        grad_a, grad_x, grad_h0 = _numba_backward(a, h, h0, g, need_a)
    else:
        grad_a, grad_x, grad_h0 = _torch_backward(a, h, h0, g, impl, need_a)
    empty = g.new_empty(0)
    return (grad_a if grad_a is not None else empty), grad_x, (grad_h0 if grad_h0 is not None else empty)


@_scan_backward_op.register_fake
def _(a, h, h0, g, impl, need_a):
    return (torch.empty_like(a) if need_a else g.new_empty(0), torch.empty_like(g),
            torch.empty_like(h0) if h0 is not None else g.new_empty(0))


def _setup_context(ctx, inputs, output):
    a, _, h0, impl = inputs
    ctx.impl = impl
    ctx.has_h0 = h0 is not None
    ctx.save_for_backward(a, output, h0)


def _backward(ctx, grad_h):
    a, h, h0 = ctx.saved_tensors
    need_a = ctx.needs_input_grad[0]
    grad_a, grad_x, grad_h0 = _scan_backward_op(a, h, h0, grad_h, ctx.impl, need_a)
    return ((grad_a if need_a else None), grad_x,
            (grad_h0 if ctx.has_h0 and ctx.needs_input_grad[2] else None), None)


_scan_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------- public API

def resolve_scan_impl(x: torch.Tensor, impl: str = "auto") -> str:
    """The implementation :func:`linear_scan` uses for ``x`` (``impl="auto"`` honours ``TRECVIT_SCAN``)."""
    if impl == "auto":
        impl = os.environ.get(SCAN_ENV, "auto") or "auto"
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown scan implementation {impl!r} (from {SCAN_ENV} or impl=); "
                         f"choose one of {', '.join(SCAN_IMPLS)}")
    cpu_ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if impl == "numba" and not (cpu_ok and numba_available()):
        raise ValueError("the 'numba' scan needs Numba installed and float32/float64 CPU tensors "
                         f"(got {x.dtype} on {x.device})")
    if impl == "triton" and not _triton_usable(x):
        raise ValueError("the 'triton' scan needs Triton and float32/bfloat16/float16 CUDA tensors "
                         f"(got {x.dtype} on {x.device})")
    if impl != "auto":
        return impl
    if x.is_cuda and not torch.compiler.is_compiling() and _triton_usable(x):
        return "triton"
    if cpu_ok and numba_available():
        return "numba"
    return "chunked" if x.shape[1] >= 32 else "sequential"


def _triton_usable(x: torch.Tensor) -> bool:
    if not x.is_cuda:
        return False
    from trecvit.layers.kernels import triton_scan
    return triton_scan.is_available() and x.dtype in (torch.float32, torch.bfloat16, torch.float16)


def linear_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None,
                impl: str = "auto") -> torch.Tensor:
    """``h_t = a_t * h_{t-1} + x_t`` along axis 1, with ``h_{-1} = h0`` (zero if ``None``).

    Args:
        a: decay ``[b, t, ...]``.
        x: input ``[b, t, ...]``, same shape and dtype as ``a``.
        h0: state before the first frame ``[b, ...]``, or ``None``.
        impl: ``"auto"`` (default), ``"numba"``, ``"triton"``, ``"chunked"`` or
            ``"sequential"``; see the module docstring.

    Returns:
        every state ``h [b, t, ...]``.
    """
    check_scan_shapes(a, x, h0)
    if x.shape[1] == 1:  # the streaming case: one state update
        return x if h0 is None else torch.addcmul(x, a, h0.unsqueeze(1))
    impl = resolve_scan_impl(x, impl)
    b, t = x.shape[:2]
    if impl == "triton":
        from trecvit.layers.kernels.triton_scan import can_use, triton_linear_scan
        if can_use(a, x, h0):
            return triton_linear_scan(a, x, h0)
        impl = "chunked"
    a3, x3 = a.reshape(b, t, -1), x.reshape(b, t, -1)
    h03 = h0.reshape(b, -1) if h0 is not None else None
    return _scan_op(a3, x3, h03, impl).view(x.shape)


class _SqrtBoundDerivative(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.sqrt(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        clipped_x_times_4 = torch.clamp(4.0 * x, min=MAX_SQRT_GRADIENT ** -2)
        return grad_output / torch.sqrt(clipped_x_times_4)


def sqrt_bound_derivative(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` whose derivative is capped at ``MAX_SQRT_GRADIENT`` (1000)."""
    return _SqrtBoundDerivative.apply(x)
