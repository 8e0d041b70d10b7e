"""Patches, reconstruction targets and losses, PSNR and the trivial mean-colour baseline.

A patch's pixels are flattened row by row, each pixel's RGB together:
``[p, p, 3] -> P = 3 p^2`` values; patches are in row-major order over the
grid, as the tokenizer orders its tokens.

Losses (mean squared error):

* the paper's: over **every pixel of every frame** (visible and masked patches);
* ``masked_loss``: over the masked patches only (VideoMAE's);
* ``norm_pix_loss``: targets are each patch's pixels minus their mean, divided
  by their standard deviation (``sqrt(var + 1e-6)``, VideoMAE's), instead of
  plain pixels in [0, 1].

PSNR is ``10 log10(1 / MSE)`` on pixels in [0, 1] over whole frames, per video.
"""

from __future__ import annotations

import torch

from trecvit.mae.masking import hidden_patches

NORM_EPS = 1e-6


def patchify(video: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``video [b, t, 3, H, W]`` -> ``patches [b, t, N, P]``."""
    b, t, c, h, w = video.shape
    p = patch_size
    x = video.reshape(b, t, c, h // p, p, w // p, p)
    x = x.permute(0, 1, 3, 5, 4, 6, 2)  # (b, t, gh, gw, p, p, 3)
    return x.reshape(b, t, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """``patches [b, t, N, P]`` -> ``video [b, t, 3, H, W]`` (the inverse of :func:`patchify`)."""
    b, t = patches.shape[:2]
    gh, gw = grid_hw
    p = patch_size
    x = patches.reshape(b, t, gh, gw, p, p, 3)
    x = x.permute(0, 1, 6, 2, 4, 3, 5)  # (b, t, 3, gh, p, gw, p)
    return x.reshape(b, t, 3, gh * p, gw * p)


def patch_stats(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each patch's mean and standard deviation ``sqrt(var + eps)``, ``[..., 1]`` each."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, unbiased=False, keepdim=True)
    return mean, (var + NORM_EPS).sqrt()


def targets(video: torch.Tensor, patch_size: int, norm_pix: bool) -> torch.Tensor:
    """The reconstruction targets ``[b, t, N, P]`` of ``video``."""
    patches = patchify(video.float(), patch_size)
    if not norm_pix:
        return patches
    mean, std = patch_stats(patches)
    return (patches - mean) / std


def reconstruction_loss(pred: torch.Tensor, video: torch.Tensor, keep: torch.Tensor, patch_size: int, *,
                        norm_pix: bool = False, masked_only: bool = False) -> torch.Tensor:
    """The mean squared error (float32 scalar) of ``pred [b, t, N, P]`` against ``video``'s
    targets, over all patches of all frames, or over the masked patches only (those not in
    ``keep [b, k]``) with ``masked_only``."""
    err = (pred.float() - targets(video, patch_size, norm_pix)).pow(2).mean(dim=-1)  # (b, t, N)
    if not masked_only:
        return err.mean()
    masked = hidden_patches(keep.to(err.device), err.shape[2]).to(err.dtype)  # (b, N): 1 where masked
    count = masked.sum() * err.shape[1]
    if float(count) == 0:  # nothing masked (ratio 0): the loss is zero, but keeps the graph
        return (err * 0.0).sum()
    return (err * masked[:, None]).sum() / count


def pixels_from_prediction(pred: torch.Tensor, video: torch.Tensor, patch_size: int,
                           norm_pix: bool) -> torch.Tensor:
    """Frames ``[b, t, 3, H, W]`` in [0, 1] from predicted targets ``pred [b, t, N, P]``. With
    ``norm_pix`` the prediction is un-normalised with the true patch's mean and spread (the model
    predicts neither), as VideoMAE's visualisation does."""
    pred = pred.float()
    if norm_pix:
        mean, std = patch_stats(patchify(video.float(), patch_size))
        pred = pred * std + mean
    grid = (video.shape[-2] // patch_size, video.shape[-1] // patch_size)
    return unpatchify(pred, patch_size, grid).clamp(0.0, 1.0)


def psnr(recon: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """``[b]``: the PSNR in dB of ``recon`` against ``video`` (both ``[b, t, 3, H, W]`` in [0, 1])
    over all their pixels (capped at 100 dB for an exact copy)."""
    mse = (recon.float() - video.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def mean_colour_baseline(video: torch.Tensor, keep: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The trivial reconstruction: every pixel of a frame set to the mean colour of the
    visible pixels of that frame (``[b, t, 3, H, W]``)."""
    patches = patchify(video.float(), patch_size)  # (b, t, N, P)
    b, t, _, size = patches.shape
    k = keep.shape[1]
    visible = patches.gather(2, keep.to(video.device).long()[:, None, :, None].expand(b, t, k, size))
    colour = visible.reshape(b, t, k * size // 3, 3).mean(dim=2)  # (b, t, 3)
    return colour[..., None, None].expand(b, t, 3, *video.shape[-2:]).clone()
