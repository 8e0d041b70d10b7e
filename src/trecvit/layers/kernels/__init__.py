"""Compiled kernels behind the layers: the fused CPU (Numba) and GPU (Triton) scans.

:mod:`~trecvit.layers.kernels.numba_scan` holds the fused Numba kernels of the
linear scan, :mod:`~trecvit.layers.kernels.rglru_fused` the RG-LRU with its
gates and scan in one Numba pass (CPU training), and
:mod:`~trecvit.layers.kernels.triton_scan` the optional Triton GPU scan. Each
is optional at run time (Numba and Triton are imported on first use) and
numerically equal to the plain PyTorch scan in :mod:`trecvit.layers.scan`,
which dispatches to them. This module holds the shape contract they all check.
"""

from __future__ import annotations

import torch


def check_scan_shapes(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None,
                      name: str = "linear_scan") -> None:
    """``ValueError`` unless ``a`` and ``x`` are ``[b, t, ...]`` alike and ``h0`` is ``[b, ...]``."""
    if a.shape != x.shape:
        raise ValueError(f"{name}: a {tuple(a.shape)} and x {tuple(x.shape)} differ in shape")
    if x.dim() < 2:
        raise ValueError(f"{name}: x must be [b, t, ...], got shape {tuple(x.shape)}")
    if h0 is not None and h0.shape != x.shape[:1] + x.shape[2:]:
        raise ValueError(f"{name}: h0 {tuple(h0.shape)} must be x's shape without the time "
                         f"axis, {tuple(x.shape[:1] + x.shape[2:])}")
