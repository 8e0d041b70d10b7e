"""Looking at a masked autoencoder: reconstructions of videos, their PSNR, and a PNG grid.

The functions behind ``trecvit reconstruct``. A video is read as ``trecvit
classify`` reads it (frames sampled, short side resized, centre crop), masked
with a seeded tube mask, reconstructed, and scored by PSNR on pixels in
[0, 1] over whole frames, next to the trivial baseline that predicts every
pixel of a frame as the mean colour of that frame's visible pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from trecvit.checkpoints.auto import model_folder
from trecvit.checkpoints.integrity import atomic_write
from trecvit.checkpoints.pretrained import read_config_json
from trecvit.mae.loss import mean_colour_baseline, patchify, psnr, unpatchify
from trecvit.mae.masking import TubeMasking, hidden_patches
from trecvit.mae.model import MaskedAutoencoder

MASK_GREY = 0.5  # the colour hidden patches are drawn in


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> MaskedAutoencoder:
    """The masked autoencoder of a ``trecvit pretrain`` run's ``autoencoder/`` folder, in eval mode.
    A TRecViT folder (the run's ``model/``, the encoder alone) is refused with a hint."""
    folder = model_folder(path) or Path(path)  # a folder, or the folder of its model.safetensors
    arch, _ = read_config_json(folder)
    if arch != MaskedAutoencoder.arch:
        raise ValueError(f"{folder} holds a {arch!r} model (no decoder); pass the autoencoder/ folder of a "
                         "`trecvit pretrain` run (its model/ folder is the encoder alone)")
    return MaskedAutoencoder.from_pretrained(folder, map_location=device).eval()


@dataclass
class VideoReconstruction:
    """One video's frames, masked input and reconstruction (``[t, 3, H, W]`` in [0, 1]) and scores."""

    path: str
    video: torch.Tensor
    masked: torch.Tensor
    recon: torch.Tensor
    psnr: float
    baseline_psnr: float
    mask_ratio: float

    def to_dict(self) -> dict:
        """The ``--json`` object: ``video``, ``psnr``, ``baseline_psnr`` (dB), frames, mask ratio."""
        return {"video": self.path, "psnr": round(self.psnr, 4),
                "baseline_psnr": round(self.baseline_psnr, 4), "frames": int(self.video.shape[0]),
                "mask_ratio": self.mask_ratio}


def masked_input(video: torch.Tensor, keep: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``video [b, t, 3, H, W]`` with the hidden patches (not in ``keep [b, k]``) painted grey."""
    patches = patchify(video.float(), patch_size)  # (b, t, N, P)
    masked = hidden_patches(keep.to(video.device), patches.shape[2])  # (b, N)
    patches = torch.where(masked[:, None, :, None], torch.full_like(patches, MASK_GREY), patches)
    grid = (video.shape[-2] // patch_size, video.shape[-1] // patch_size)
    return unpatchify(patches, patch_size, grid)


@torch.inference_mode()
def reconstruct_clip(model: MaskedAutoencoder, video: torch.Tensor, keep: torch.Tensor, path: str = "",
                     mask_ratio: float = float("nan")) -> VideoReconstruction:
    """Reconstruct one clip ``video [t, 3, H, W]`` from the patches at ``keep [k]``."""
    clip = video[None].to(model.device)
    keep = keep[None].to(model.device)
    recon = model.reconstruct(clip, keep)
    baseline = mean_colour_baseline(clip, keep, model.patch_size)
    masked = masked_input(clip, keep, model.patch_size)
    return VideoReconstruction(path=path, video=clip[0].cpu(), masked=masked[0].cpu(), recon=recon[0].cpu(),
                               psnr=float(psnr(recon, clip)[0]),
                               baseline_psnr=float(psnr(baseline, clip)[0]), mask_ratio=mask_ratio)


def reconstruct_videos(model: MaskedAutoencoder, paths: list[str], *, num_frames: int,
                       image_size: tuple[int, int], mask_ratio: float | None = None, seed: int = 0,
                       **read_kwargs):
    """Yield a :class:`VideoReconstruction` (or the ``ValueError`` / ``FileNotFoundError`` raised
    reading it) for each video of ``paths``: ``num_frames`` frames read as
    :func:`trecvit.io.read_video` does with ``read_kwargs``, masked at ``mask_ratio`` (default: the
    ratio the model was trained with) by the seeded tube mask of video ``i`` (its place in ``paths``)."""
    from trecvit.io import read_video

    ratio = model.config.mask_ratio if mask_ratio is None else mask_ratio
    gh, gw = image_size[0] // model.patch_size, image_size[1] // model.patch_size
    masking = TubeMasking(gh * gw, ratio, seed)
    for i, path in enumerate(paths):
        try:
            video = read_video(path, num_frames, image_size, **read_kwargs)  # (t, 3, H, W)
        except (FileNotFoundError, ValueError) as err:
            yield err
            continue
        yield reconstruct_clip(model, video, masking.keep(0, i), str(path), ratio)


def save_grid(results: list[VideoReconstruction], path: str | Path, num_frames: int = 4) -> None:
    """A PNG grid (written atomically): per video three rows, original, masked input and
    reconstruction, over ``num_frames`` evenly spaced frames, titled with the PSNRs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("no reconstruction to draw")
    cols = max(min(num_frames, min(r.video.shape[0] for r in results)), 1)
    rows = 3 * len(results)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols + 0.6, 1.6 * rows), squeeze=False)
    for v, res in enumerate(results):
        t = res.video.shape[0]
        frames = torch.linspace(0, t - 1, cols).round().long().tolist()
        for r, (name, clip) in enumerate((("original", res.video), ("masked", res.masked),
                                          ("reconstruction", res.recon))):
            for c, f in enumerate(frames):
                ax = axes[3 * v + r][c]
                ax.imshow(clip[f].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"frame {f}", fontsize=7, pad=2)
                if c == 0:
                    ax.set_ylabel(name, fontsize=7)
        axes[3 * v][0].text(0.0, 1.32, f"{Path(res.path).name}: PSNR {res.psnr:.1f} dB, mean colour "
                            f"{res.baseline_psnr:.1f} dB, {res.mask_ratio:.0%} hidden",
                            transform=axes[3 * v][0].transAxes, fontsize=7, ha="left")
    fig.subplots_adjust(left=0.1, right=0.98, top=1 - 0.5 / rows, bottom=0.01, hspace=0.42, wspace=0.05)
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
