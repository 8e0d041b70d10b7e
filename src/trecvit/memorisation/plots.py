"""The figures of ``trecvit memorise``: the PSNR sweep and the reconstructions (paper Figures 8-9).

* :func:`plot_sweep`: two panels, the PSNR against the distance ``T - k`` between the target frame
  and the last frame, and against the test length ``T`` (up to 4 x the training length), one line
  per model (ViViT once per interpolation of its temporal position embedding), the two
  remember-nothing baselines dashed (the last frame at ``T = k`` is the target itself, 100 dB,
  and is left off), the training length marked; the oracle rows of the table are not drawn.
* :func:`plot_reconstructions`: for a few held-out videos, the target frame, the last frame seen
  and each model's reconstruction at each test length, with the PSNR of each.

Both write small PNGs (matplotlib's Agg backend, about 100 kB).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

_STYLE = {  # line colour and marker per series
    "TRecViT": ("tab:blue", "o"),
    "ViViT (nearest)": ("tab:red", "s"),
    "ViViT (linear)": ("tab:orange", "^"),
    "clip mean": ("0.45", None),
    "last frame": ("0.7", None),
}
EXACT_COPY_DB = 99.0  # a baseline that is the target itself (the last frame at T = k): left off the plot


def series_label(record: dict) -> str:
    """The legend label of a result row: the model, and for ViViT the interpolation."""
    if record["model"] == "ViViT":
        return f"ViViT ({record['interpolation']})"
    return record["model"]


def _series(records: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(series_label(r), []).append(r)
    return out


def plot_sweep(records: Sequence[dict], path: str | Path, *, train_frames: int, target_frame: int,
               distances: Sequence[int], lengths: Sequence[int], title: str = "") -> Path:
    """Write the two-panel sweep figure to ``path``.

    Args:
        records: result rows with ``model``, ``interpolation``, ``frames_test`` and ``psnr`` (dB)
            (and ``psnr_sem``, drawn as error bars when present); baselines have ``model``
            "clip mean" or "last frame".
        train_frames: the training length (marked in both panels).
        target_frame: ``k``.
        distances: the distances ``T - k`` of the left panel.
        lengths: the test lengths of the right panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    panels = ((axes[0], [target_frame + d for d in distances], lambda t: t - target_frame,
               f"distance T - k (frames after frame k = {target_frame})", train_frames - target_frame),
              (axes[1], list(lengths), lambda t: t, "test length T (frames)", train_frames))
    shown = [r for r in records if r["psnr"] < EXACT_COPY_DB and "oracle" not in r["model"]]
    for ax, wanted, to_x, xlabel, mark in panels:
        wanted_set = set(wanted)
        for label, rows in _series(shown).items():
            rows = sorted((r for r in rows if r["frames_test"] in wanted_set), key=lambda r: r["frames_test"])
            if not rows:
                continue
            colour, marker = _STYLE.get(label, ("k", "x"))
            xs = [to_x(r["frames_test"]) for r in rows]
            ys = [r["psnr"] for r in rows]
            errs = [r.get("psnr_sem", 0.0) for r in rows]
            dashed = marker is None
            ax.errorbar(xs, ys, yerr=None if dashed else errs, color=colour, marker=marker, markersize=4,
                        linestyle="--" if dashed else "-", linewidth=1.2 if dashed else 1.8, capsize=2,
                        label=label)
        ax.axvline(mark, color="0.3", linestyle=":", linewidth=1)
        ax.text(mark, 0.02, " training", transform=ax.get_xaxis_transform(), fontsize=8, color="0.3")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[1].set_xticks(list(lengths))
    twin = axes[1].secondary_xaxis("top", functions=(lambda t: t / train_frames, lambda m: m * train_frames))
    twin.set_xlabel("x training length", fontsize=8)
    axes[0].set_ylabel(f"PSNR of frame k = {target_frame} (dB)")
    axes[0].legend(fontsize=8, loc="best")
    axes[0].set_title("PSNR against the distance T - k", fontsize=10, pad=24)
    axes[1].set_title("PSNR against the test length", fontsize=10, pad=24)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if title else None)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_reconstructions(target: torch.Tensor,
                         columns: Sequence[tuple[str, torch.Tensor, torch.Tensor | None]],
                         path: str | Path, *, num_videos: int = 4, title: str = "") -> Path:
    """Write a grid of frames: one row per held-out video, the target frame first, then one
    column per ``(title, frames [V, 3, H, W], psnr [V] or None)``.

    Args:
        target: ``[V, 3, H, W]`` the frames to reconstruct.
        columns: the other columns (the last frame seen, each model's reconstruction).
        num_videos: rows (the first videos).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = min(num_videos, target.shape[0])
    cols = 1 + len(columns)
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.45 * rows + 0.5), squeeze=False)
    all_columns = [("target frame k", target, None), *columns]
    for j, (name, frames, psnr) in enumerate(all_columns):
        for i in range(rows):
            ax = axes[i][j]
            ax.imshow(frames[i].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy(),
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if psnr is not None:
                ax.text(0.04, 0.05, f"{float(psnr[i]):.1f} dB", transform=ax.transAxes, fontsize=7,
                        color="white", bbox=dict(facecolor="black", alpha=0.6, pad=1.5, linewidth=0))
            if i == 0:
                ax.set_title(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.2, rect=(0, 0, 1, 0.93) if title else None)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
