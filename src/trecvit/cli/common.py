"""Argument types and output helpers shared by the ``trecvit`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def int_list(text: str, *, minimum: int = 1, example: str = "8,16,32",
             what: str = "frame counts") -> list[int]:
    """A comma-separated list of ints, each ``>= minimum`` (``what`` names them in the error)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated frame counts like {example}, got {text!r}") from None
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {text!r}")
    return values


def positive_list(text: str) -> list[int]:
    return int_list(text)


def device_type(text: str) -> str:
    """``--device``: a torch device string this installation can use."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (try cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this PyTorch has no usable CUDA GPU (use cpu)")
    return text


def check_output(path: str | None, flag: str, overwrite: bool) -> None:
    """Refuse, before any work, an output file that cannot be written or would replace one."""
    if path is None:
        return
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"{flag} {path}: folder {target.parent} does not exist")
    if target.exists() and not overwrite:
        raise ValueError(f"{flag} {path} exists; pass --overwrite to replace it")



def image_size_arg(values: list[int] | None, flag: str) -> tuple[int, int] | None:
    """An ``--image-size`` given as one int (square) or ``H W`` (``nargs="+"``), as ``(H, W)``;
    ``None`` when not given."""
    from trecvit.validation import size_hw

    if values is None:
        return None
    if len(values) > 2:
        raise ValueError(f"{flag} takes one int or H W, got {len(values)} values")
    try:
        return size_hw(values[0] if len(values) == 1 else tuple(values), flag)
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None
