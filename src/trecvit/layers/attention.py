"""Scaled dot-product attention, computed one of two ways, chosen for the whole process.

Every attention layer of the package (TRecViT's spatial blocks and the
baselines' spatial, temporal and spatio-temporal attention) calls
:func:`attend`. It computes ``softmax(q k^T / sqrt(d_h) + mask) v`` either with
PyTorch's fused ``scaled_dot_product_attention`` (the default: never holds the
``n x n`` scores at once on the kernels that tile them) or naively, with the
``[b, h, n, n]`` score matrix materialised, which is what the paper's memory
analysis of a lowered JAX graph counts. Both give the same result to float
rounding; they differ in peak memory, which is why ``trecvit
compare-efficiency`` measures both (:func:`use_attention`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch.nn import functional as F

ATTENTION_MODES = ("fused", "naive")
_mode = "fused"


def attention_mode() -> str:
    """The attention implementation in use: ``"fused"`` or ``"naive"``."""
    return _mode


@contextlib.contextmanager
def use_attention(mode: str) -> Iterator[None]:
    """``with use_attention("naive"): ...`` runs every :func:`attend` in the block that way."""
    global _mode
    if mode not in ATTENTION_MODES:
        raise ValueError(f"unknown attention mode {mode!r}; expected one of {ATTENTION_MODES}")
    previous, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = previous


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """``q [..., n, e]``, ``k`` and ``v [..., m, e]`` -> ``[..., n, e]``.

    ``mask``: bool, broadcastable to ``[..., n, m]``, ``True`` where a query may attend
    to a key (every query row must allow at least one key), or ``None`` for all pairs.
    """
    if _mode == "fused":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (..., n, m)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(scores.softmax(dim=-1), v)


def causal_mask(num_queries: int, num_keys: int | None = None, *, group: int = 1,
                device: torch.device | str | None = None) -> torch.Tensor:
    """A bool ``[num_queries, num_keys]`` mask for attention that may not look ahead in time.

    Tokens come in groups of ``group`` consecutive tokens per time step (a frame's
    patches); a query may attend to every key of its own step and of earlier steps.
    With ``num_keys > num_queries`` the queries are the last ``num_queries`` positions
    (a key/value cache holds the earlier ones).
    """
    num_keys = num_queries if num_keys is None else num_keys
    if num_keys < num_queries:
        raise ValueError(f"causal_mask: {num_keys} keys cannot precede {num_queries} queries")
    q_step = (torch.arange(num_queries, device=device) + num_keys - num_queries) // group
    k_step = torch.arange(num_keys, device=device) // group
    return k_step[None, :] <= q_step[:, None]
