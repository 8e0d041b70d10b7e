"""An optional Triton kernel for the linear scan ``h_t = a_t * h_{t-1} + x_t``.

This is a GPU fast path for :func:`trecvit.layers.scan.linear_scan`, with the
same semantics and the same gradients:

* forward: one program per ``(batch row, block of channels)`` walks the frames
  in order, carrying ``h`` in float32 registers; it reads ``a`` and ``x`` once
  and writes ``h`` once.
* backward: one pass that walks the frames in reverse,
  ``dh_t = g_t + a_{t+1} * dh_{t+1}``, and writes ``grad_x = dh``,
  ``grad_a_t = dh_t * h_{t-1}`` (``h_{-1} = h0``, zero when absent) and
  ``grad_h0 = a_0 * dh_0``.

Tensors ``[b, t, ...]`` are seen as ``[b, t, C]`` with ``C`` the product of the
trailing dimensions. Accumulation is in float32; float32, bfloat16 and float16
inputs are accepted (in low precision the carried state stays float32 between
frames, so results are slightly more accurate than the sequential reference).

Triton is optional: nothing here imports it until a kernel is first needed (or
:func:`is_available` finds CUDA), so ``import trecvit`` works without it. With
``TRITON_INTERPRET=1`` in the environment before the first kernel call, the
kernels run in Triton's CPU interpreter on CPU tensors (for tests); use
:func:`_triton_linear_scan`, which skips the device check.
"""

import functools
import importlib
import math
import os

import torch

from trecvit.layers.kernels import check_scan_shapes

__all__ = ["can_use", "is_available", "triton_linear_scan"]

#: Channels handled by one program, at most (a power of two).
MAX_BLOCK_C = 512

_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# ``triton`` and ``triton.language`` once :func:`_kernels` has imported them. The
# kernels below refer to ``tl`` as a module global (not a closure variable), which
# is what every Triton version resolves.
triton = None
tl = None


@functools.cache
def _triton_importable() -> bool:
    try:
        importlib.import_module("triton.language")
    except (ImportError, OSError, RuntimeError):  # absent, or a broken install failing on import
        return False
    return True


def is_available() -> bool:
    """Whether the kernel can run for real: CUDA is available and ``triton`` imports."""
    return torch.cuda.is_available() and _triton_importable()


def _interpret_mode() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.cache
def _kernels():
    """Import Triton and define the two kernels (once; ``TRITON_INTERPRET`` is read here)."""
    global triton, tl
    import triton
    import triton.language as tl

    @triton.jit
    def scan_fwd_kernel(a_ptr, x_ptr, h0_ptr, h_ptr, T, C,
                        HAS_H0: tl.constexpr, BLOCK_C: tl.constexpr):
        pid_b = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = cols < C
        row = pid_b.to(tl.int64)
        if HAS_H0:
            h = tl.load(h0_ptr + row * C + cols, mask=mask, other=0.0).to(tl.float32)
        else:
            h = tl.zeros([BLOCK_C], dtype=tl.float32)
        off = row * T * C + cols  # int64: frame t of this row starts at off + t * C
        for _ in range(T):
            a = tl.load(a_ptr + off, mask=mask, other=0.0).to(tl.float32)
            x = tl.load(x_ptr + off, mask=mask, other=0.0).to(tl.float32)
            h = a * h + x
            tl.store(h_ptr + off, h.to(h_ptr.dtype.element_ty), mask=mask)
            off += C

    @triton.jit
    def scan_bwd_kernel(a_ptr, h_ptr, h0_ptr, gh_ptr, ga_ptr, gx_ptr, gh0_ptr, T, C,
                        HAS_H0: tl.constexpr, STORE_GA: tl.constexpr, STORE_GH0: tl.constexpr,
                        BLOCK_C: tl.constexpr):
        pid_b = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = cols < C
        row = pid_b.to(tl.int64)
        off = (row * T + (T - 1)) * C + cols  # the last frame
        dh = tl.zeros([BLOCK_C], dtype=tl.float32)
        a_next = tl.zeros([BLOCK_C], dtype=tl.float32)  # a_{t+1}; none after the last frame
        for _ in range(T - 1):  # frames T-1 .. 1
            g = tl.load(gh_ptr + off, mask=mask, other=0.0).to(tl.float32)
            dh = g + a_next * dh
            tl.store(gx_ptr + off, dh.to(gx_ptr.dtype.element_ty), mask=mask)
            if STORE_GA:
                h_prev = tl.load(h_ptr + off - C, mask=mask, other=0.0).to(tl.float32)
                tl.store(ga_ptr + off, (dh * h_prev).to(ga_ptr.dtype.element_ty), mask=mask)
            a_next = tl.load(a_ptr + off, mask=mask, other=0.0).to(tl.float32)
            off -= C
        # frame 0: its previous state is h0 (zero when absent)
        g = tl.load(gh_ptr + off, mask=mask, other=0.0).to(tl.float32)
        dh = g + a_next * dh
        tl.store(gx_ptr + off, dh.to(gx_ptr.dtype.element_ty), mask=mask)
        if STORE_GA:
            if HAS_H0:
                h_prev = tl.load(h0_ptr + row * C + cols, mask=mask, other=0.0).to(tl.float32)
            else:
                h_prev = tl.zeros([BLOCK_C], dtype=tl.float32)
            tl.store(ga_ptr + off, (dh * h_prev).to(ga_ptr.dtype.element_ty), mask=mask)
        if STORE_GH0:
            a0 = tl.load(a_ptr + off, mask=mask, other=0.0).to(tl.float32)
            tl.store(gh0_ptr + row * C + cols, (a0 * dh).to(gh0_ptr.dtype.element_ty), mask=mask)

    return scan_fwd_kernel, scan_bwd_kernel


def _launch_config(num_channels: int, block_c: int | None) -> tuple[int, int]:
    """``(BLOCK_C, num_warps)``: up to ``MAX_BLOCK_C`` channels a program, 4 per thread."""
    if block_c is None:
        block_c = max(16, min(MAX_BLOCK_C, 1 << max(0, num_channels - 1).bit_length()))
    if block_c <= 0 or block_c & (block_c - 1):
        raise ValueError(f"triton scan: block size {block_c} must be a power of two")
    num_warps = max(1, min(8, block_c // 128))
    return block_c, num_warps


def _device_guard(t: torch.Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.is_cuda else _NullContext()


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _TritonLinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None,  # type: ignore[override]
                block_c: int | None):
        shape = x.shape
        b, t = shape[:2]
        c = math.prod(shape[2:])
        out_dtype = torch.promote_types(a.dtype, x.dtype)
        if h0 is not None:
            out_dtype = torch.promote_types(out_dtype, h0.dtype)
        a3 = a.reshape(b, t, c).contiguous()
        x3 = x.reshape(b, t, c).contiguous()
        h03 = h0.reshape(b, c).contiguous() if h0 is not None else None
        h = torch.empty((b, t, c), dtype=out_dtype, device=x.device)
        block, num_warps = _launch_config(c, block_c)
        if h.numel():
            fwd, _ = _kernels()
            with _device_guard(x):
                fwd[(b, triton.cdiv(c, block))](
                    a3, x3, h03 if h03 is not None else x3, h, t, c,
                    HAS_H0=h03 is not None, BLOCK_C=block, num_warps=num_warps)
        ctx.shape = shape
        ctx.h0_shape = h0.shape if h0 is not None else None
        ctx.dtypes = (a.dtype, x.dtype, h0.dtype if h0 is not None else None)
        ctx.launch = (block, num_warps)
        ctx.save_for_backward(a3, h, h03)
        return h.view(shape)

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):  # type: ignore[override]
        a3, h, h03 = ctx.saved_tensors
        b, t, c = h.shape
        a_dtype, x_dtype, h0_dtype = ctx.dtypes
        block, num_warps = ctx.launch
        has_h0 = h03 is not None
        store_ga = ctx.needs_input_grad[0]
        store_gh0 = has_h0 and ctx.needs_input_grad[2]
        gh = grad_h.reshape(b, t, c).contiguous()
        gx = torch.empty((b, t, c), dtype=x_dtype, device=gh.device)
        ga = torch.empty((b, t, c), dtype=a_dtype, device=gh.device) if store_ga else None
        gh0 = torch.empty((b, c), dtype=h0_dtype, device=gh.device) if store_gh0 else None
        if gx.numel():
            _, bwd = _kernels()
            with _device_guard(gh):
                bwd[(b, triton.cdiv(c, block))](
                    a3, h, h03 if has_h0 else h, gh,
                    ga if store_ga else gx, gx, gh0 if store_gh0 else gx, t, c,
                    HAS_H0=has_h0, STORE_GA=store_ga, STORE_GH0=store_gh0,
                    BLOCK_C=block, num_warps=num_warps)
        grad_a = ga.view(ctx.shape) if store_ga else None
        grad_x = gx.view(ctx.shape) if ctx.needs_input_grad[1] else None
        grad_h0 = gh0.view(ctx.h0_shape) if store_gh0 else None
        return grad_a, grad_x, grad_h0, None


def _check(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None) -> None:
    check_scan_shapes(a, x, h0, "triton_linear_scan")
    tensors = (a, x) if h0 is None else (a, x, h0)
    for tensor in tensors:
        if tensor.dtype not in _SUPPORTED_DTYPES:
            raise TypeError(f"triton_linear_scan: dtype {tensor.dtype} is not one of {_SUPPORTED_DTYPES}")
        if tensor.device != x.device:
            raise ValueError("triton_linear_scan: a, x and h0 must be on one device")


def _triton_linear_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None,
                        block_c: int | None = None) -> torch.Tensor:
    """:func:`triton_linear_scan` on any device (CPU tensors need ``TRITON_INTERPRET=1``).

    ``block_c`` overrides the channels per program (a power of two), for tests.
    """
    _check(a, x, h0)
    return _TritonLinearScan.apply(a, x, h0, block_c)


def triton_linear_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = a_t * h_{t-1} + x_t`` along axis 1 on a CUDA GPU, differentiable.

    Same contract as :func:`trecvit.layers.scan.linear_scan`: ``a, x [b, t, ...]``
    of one shape, ``h0 [b, ...]`` or ``None``; returns ``h [b, t, ...]`` in the
    promoted dtype of the inputs. Inputs must be CUDA tensors of dtype float32,
    bfloat16 or float16 (check with :func:`can_use`).
    """
    if not x.is_cuda and not _interpret_mode():
        raise ValueError(f"triton_linear_scan: needs CUDA tensors, got device {x.device} "
                         "(set TRITON_INTERPRET=1 to run Triton's CPU interpreter)")
    return _triton_linear_scan(a, x, h0)


def can_use(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> bool:
    """Whether :func:`triton_linear_scan` applies: CUDA tensors of one shape/device, supported dtypes."""
    tensors = (a, x) if h0 is None else (a, x, h0)
    return (
        x.is_cuda
        and x.dim() >= 2
        and a.shape == x.shape
        and (h0 is None or h0.shape == x.shape[:1] + x.shape[2:])
        and all(tensor.device == x.device and tensor.dtype in _SUPPORTED_DTYPES for tensor in tensors)
        and is_available()
    )
