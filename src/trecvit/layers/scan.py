"""The linear recurrence ``h_t = a_t * h_{t-1} + x_t`` and the bounded square root.

Both are custom autograd functions:

* :func:`linear_scan` runs the recurrence forward over time and its gradient
  as the reverse recurrence ``dh_t = g_t + a_{t+1} * dh_{t+1}``, so autograd
  does not keep one small tensor per frame.
* :func:`sqrt_bound_derivative` is ``sqrt(x)`` whose backward uses
  ``max(x, 1 / (4 * 1000^2))``: its derivative is at most 1000, which keeps the
  RG-LRU's ``sqrt(1 - a^2)`` trainable in bfloat16 (as in the official model).
"""

from __future__ import annotations

import torch

MAX_SQRT_GRADIENT = 1000.0


def _scan_forward(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """Sequential scan over axis 1 of ``a, x [b, t, ...]``; returns ``h [b, t, ...]``."""
    num_frames = x.shape[1]
    if num_frames == 1:  # the streaming case: one state update, no loop
        return x if h0 is None else torch.addcmul(x, a, h0.unsqueeze(1))
    hs = []
    h = h0
    for t in range(num_frames):
        h = x[:, t] if h is None else torch.addcmul(x[:, t], a[:, t], h)
        hs.append(h)
    return torch.stack(hs, dim=1)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None):  # type: ignore[override]
        h = _scan_forward(a, x, h0)
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(a, h, h0 if h0 is not None else h.new_zeros(()))
        return h

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        num_frames = h.shape[1]
        grad_x = torch.empty_like(grad_h)
        dh = grad_h[:, num_frames - 1]
        grad_x[:, num_frames - 1] = dh
        for t in range(num_frames - 2, -1, -1):  # reverse scan: dh_t = g_t + a_{t+1} dh_{t+1}
            dh = torch.addcmul(grad_h[:, t], a[:, t + 1], dh)
            grad_x[:, t] = dh
        grad_a = grad_h_0 = None
        if ctx.needs_input_grad[0]:
            # dL/da_t = dh_t * h_{t-1}, with h_{-1} = h0 (zero when absent).
            h_first = h0.unsqueeze(1) if ctx.has_h0 else torch.zeros_like(h[:, :1])
            h_prev = torch.cat([h_first, h[:, :-1]], dim=1)  # (b, t, ...)
            grad_a = grad_x * h_prev
        if ctx.has_h0 and ctx.needs_input_grad[2]:
            grad_h_0 = a[:, 0] * grad_x[:, 0]
        return grad_a, grad_x, grad_h_0


def linear_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = a_t * h_{t-1} + x_t`` along axis 1, with ``h_{-1} = h0`` (zero if ``None``).

    Args:
        a: decay ``[b, t, ...]``.
        x: input ``[b, t, ...]``, same shape and dtype as ``a``.
        h0: state before the first frame ``[b, ...]``, or ``None``.

    Returns:
        every state ``h [b, t, ...]``.
    """
    if a.shape != x.shape:
        raise ValueError(f"linear_scan: a {tuple(a.shape)} and x {tuple(x.shape)} differ in shape")
    if h0 is not None and h0.shape != x.shape[:1] + x.shape[2:]:
        raise ValueError(f"linear_scan: h0 {tuple(h0.shape)} must be x's shape without the time "
                         f"axis, {tuple(x.shape[:1] + x.shape[2:])}")
    needs_grad = torch.is_grad_enabled() and (
        a.requires_grad or x.requires_grad or (h0 is not None and h0.requires_grad))
    if not needs_grad or x.shape[1] == 1:
        return _scan_forward(a, x, h0)
    return _LinearScan.apply(a, x, h0)


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
