"""The fused CPU kernels of the linear scan ``h_t = a_t * h_{t-1} + x_t``, compiled by Numba.

The forward is one pass over time that reads ``a`` and ``x`` and writes ``h``,
parallel over (batch, channel block) work items and vectorised within a block;
the backward is one reverse pass (``dh_t = g_t + a_{t+1} dh_{t+1}``,
``da_t = dh_t h_{t-1}``). :mod:`trecvit.layers.scan` dispatches to them for
float32/float64 CPU tensors when Numba is installed; nothing here imports Numba
until a kernel is first needed.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

MAX_SQRT_GRADIENT = 1000.0  # bound of d sqrt(x) / dx in the RG-LRU (see trecvit.layers.scan)
_NUMBA_BLOCK = 2048  # channels per Numba work item: the carried state fits in L1
# Checked without importing Numba (a constant, so torch.compile can trace the dispatch).
_HAS_NUMBA = importlib.util.find_spec("numba") is not None


# --------------------------------------------------------------------------- Numba (CPU)

@functools.cache
def _numba_kernels():
    """Compile (once per process; cached on disk) the fused CPU kernels, or None without Numba."""
    try:
        import numba
        import numpy as np
    except ImportError:
        return None

    @numba.njit(parallel=True, cache=True, nogil=True)
    def forward(a, x, h0, h, block):  # pragma: no cover - compiled
        b_size, t_size, c_size = x.shape
        num_blocks = (c_size + block - 1) // block
        for job in numba.prange(b_size * num_blocks):
            b = job // num_blocks
            c0 = (job % num_blocks) * block
            c1 = min(c0 + block, c_size)
            state = h0[b, c0:c1].copy()
            for t in range(t_size):
                for i in range(c1 - c0):
                    state[i] = a[b, t, c0 + i] * state[i] + x[b, t, c0 + i]
                    h[b, t, c0 + i] = state[i]

    @numba.njit(parallel=True, cache=True, nogil=True)
    def backward(a, h, h0, g, grad_a, grad_x, grad_h0, need_a, block):  # pragma: no cover
        b_size, t_size, c_size = g.shape
        num_blocks = (c_size + block - 1) // block
        for job in numba.prange(b_size * num_blocks):
            b = job // num_blocks
            c0 = (job % num_blocks) * block
            c1 = min(c0 + block, c_size)
            dh = np.zeros(c1 - c0, dtype=g.dtype)
            for t in range(t_size - 1, -1, -1):
                if t == t_size - 1:
                    for i in range(c1 - c0):
                        dh[i] = g[b, t, c0 + i]
                        grad_x[b, t, c0 + i] = dh[i]
                else:
                    for i in range(c1 - c0):
                        dh[i] = g[b, t, c0 + i] + a[b, t + 1, c0 + i] * dh[i]
                        grad_x[b, t, c0 + i] = dh[i]
                if need_a:
                    if t > 0:
                        for i in range(c1 - c0):
                            grad_a[b, t, c0 + i] = dh[i] * h[b, t - 1, c0 + i]
                    else:
                        for i in range(c1 - c0):
                            grad_a[b, t, c0 + i] = dh[i] * h0[b, c0 + i]
            for i in range(c1 - c0):
                grad_h0[b, c0 + i] = a[b, 0, c0 + i] * dh[i]

    return numba, forward, backward


def numba_available() -> bool:
    """True when Numba is installed, so the fused CPU kernels can be used."""
    return _HAS_NUMBA


def _numba_threads(numba) -> None:
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS)))
    # Numba's OpenMP layer, on its first use, sets the OpenMP thread count to NUMBA_NUM_THREADS in
    # the libgomp that PyTorch shares: give PyTorch back the thread count the user chose.
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


def _numba_forward(a, x, h0):
    numba, forward, _ = _numba_kernels()
    _numba_threads(numba)
    h = torch.empty_like(x)
    h0 = h0 if h0 is not None else x.new_zeros(x.shape[0], x.shape[2])
    forward(a.numpy(), x.numpy(), h0.contiguous().numpy(), h.numpy(), _NUMBA_BLOCK)
    return h


def _numba_backward(a, h, h0, g, need_a: bool):
    numba, _, backward = _numba_kernels()
    _numba_threads(numba)
    grad_x = torch.empty_like(g)
    grad_a = torch.empty_like(g) if need_a else g.new_empty(1, 1, 1)
    h0_arr = h0.contiguous() if h0 is not None else g.new_zeros(g.shape[0], g.shape[2])
    grad_h0 = torch.empty_like(h0_arr)
    backward(a.numpy(), h.numpy(), h0_arr.numpy(), g.numpy(), grad_a.numpy(), grad_x.numpy(),
             grad_h0.numpy(), need_a, _NUMBA_BLOCK)
    return (grad_a if need_a else None), grad_x, (grad_h0 if h0 is not None else None)
