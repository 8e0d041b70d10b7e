"""``trecvit verify``: check that this installation reproduces the official model.

It runs the reference outputs of the official JAX model shipped with the
package (two tiny models on random videos, every parameter perturbed) through
this implementation, checks that frame-by-frame streaming equals the full
clip, decodes the official demo clip, and times TRecViT on it. Run it on any
new machine, device or PyTorch build before trusting the numbers there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trecvit.assets import example_video, reference_fixtures
from trecvit.config import TRecViTConfig
from trecvit.checkpoints.official import infer_config, model_from_official_params, read_npz_arrays
from trecvit.io import read_video
from trecvit.model import TRecViT

PARITY_TOL = 1e-4  # max abs error (logits, probs) and relative error (tokens, encoded, pre_logits)
STREAM_TOL = 1e-5  # relative error of step() against the full clip


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``||value - reference|| / ||reference||`` in float64."""
    value, reference = value.double(), reference.double()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


def max_abs_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference.double()).abs().max())


def reference_model(path) -> tuple[TRecViT, dict[str, np.ndarray]]:
    """The model of a reference fixture (``params/...``, ``config/...``, ``video``, ``out/...``)."""
    arrays = read_npz_arrays(Path(path), what="reference fixture")
    params = {k[len("params/"):]: v for k, v in arrays.items() if k.startswith("params/")}
    config = infer_config({k: v.shape for k, v in params.items()},
                          frames_per_clip=int(arrays["config/frames_per_clip"]),
                          min_rad=float(arrays["config/min_rad"]))
    return model_from_official_params(params, config, source=str(path)).eval(), arrays


@torch.inference_mode()
def stream_error(model: TRecViT, video: torch.Tensor) -> tuple[float, float]:
    """Worst relative error of ``step``'s encoded frames against the full forward, and
    the max abs error of the logits after the last frame (one clip)."""
    clip = video[:, : max(video.shape[1] // model.num_clips(video.shape[1]), 1)]
    full = model(clip)
    state = model.init_state(clip.shape[0], image_size=tuple(clip.shape[-2:]))
    worst = 0.0
    for t in range(clip.shape[1]):
        out, state = model.step(clip[:, t], state)
        worst = max(worst, relative_error(out.encoded, full.encoded[:, t]))
    return worst, max_abs_error(out.logits, full.logits)


@torch.inference_mode()
def check_reference(name: str, path) -> Iterator[Check]:
    model, ref = reference_model(path)
    video = torch.from_numpy(ref["video"]).permute(0, 1, 4, 2, 3)  # (b, t, h, w, 3) -> (b, t, 3, h, w)
    out = model(video)
    errors = {
        "tokens": relative_error(model.embed(video), torch.from_numpy(ref["out/tokens"])),
        "encoded": relative_error(out.encoded, torch.from_numpy(ref["out/encoded"])),
        "pre_logits": relative_error(out.pre_logits, torch.from_numpy(ref["out/pre_logits"])),
        "logits": max_abs_error(out.logits, torch.from_numpy(ref["out/logits"])),
        "probs": max_abs_error(out.probs, torch.from_numpy(ref["out/probs"])),
    }
    worst = max(errors.values())
    yield Check(f"parity {name}", worst <= PARITY_TOL,
                ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + f" (tolerance {PARITY_TOL:g})")
    enc_err, logit_err = stream_error(model, video)
    yield Check(f"streaming {name}", max(enc_err, logit_err) <= STREAM_TOL,
                f"step vs full clip: encoded {enc_err:.1e}, logits {logit_err:.1e} "
                f"(tolerance {STREAM_TOL:g})")


@torch.inference_mode()
def check_demo_clip(model: TRecViT) -> Iterator[Check]:
    path = example_video()
    cfg = model.config
    start = time.perf_counter()
    video = read_video(path, 32, cfg.image_hw)
    decode_s = time.perf_counter() - start
    ok = tuple(video.shape) == (32, 3, *cfg.image_hw)
    yield Check("decode demo clip", ok, f"{path.name}: {tuple(video.shape)} in {decode_s:.2f} s")
    start = time.perf_counter()
    full = model(video[None])
    full_s = time.perf_counter() - start
    state = model.init_state(1)
    start = time.perf_counter()
    for frame in video:
        out, state = model.step(frame[None], state)
    stream_s = time.perf_counter() - start
    err = max_abs_error(out.logits, full.logits)
    yield Check("demo clip: stream = full", err <= STREAM_TOL * max(1.0, float(full.logits.abs().max())),
                f"logits after 32 steps vs full clip: {err:.1e}; full clip {32 / full_s:.1f} frames/s, "
                f"streaming {32 / stream_s:.1f} frames/s")


def run_checks(model: TRecViT | None = None, variant: str = "S") -> Iterator[Check]:
    """Every check, lazily. ``model`` is timed on the demo clip (default: a
    randomly initialised TRecViT of ``variant``)."""
    for name, path in reference_fixtures().items():
        yield from check_reference(name, path)
    if model is None:
        torch.manual_seed(0)
        model = TRecViT(TRecViTConfig.from_variant(variant)).eval()
    yield from check_demo_clip(model)
