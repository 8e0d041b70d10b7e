"""Data files shipped with the package: the official demo clip, the Kinetics-400
class names and the official model's reference outputs (used by ``trecvit verify``)."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent


def example_video() -> Path:
    """The official TRecViT demo clip: 32 frames, 224 x 224, a cat being petted
    (Kinetics-400 class 213, "petting cat")."""
    return ASSETS_DIR / "example.mp4"


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names in class-index order."""
    text = (ASSETS_DIR / "kinetics400_labels.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def reference_fixtures() -> dict[str, Path]:
    """Outputs of the official JAX model on random inputs, by name."""
    return {p.name[: -len(".npz")]: p for p in sorted((ASSETS_DIR / "reference").glob("*.npz"))}
