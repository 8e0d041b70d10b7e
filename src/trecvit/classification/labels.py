"""Class names of a classifier, and the top-k readout of its probabilities.

A model folder written by ``trecvit train`` holds ``classes.txt`` (one name per
line, in class order); 400-class models default to the bundled Kinetics-400
names; others are named by index.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trecvit.assets import kinetics400_labels

CLASSES_NAME = "classes.txt"  # beside a model folder's weights (written by trecvit train)


def load_labels(num_classes: int, labels_file: str | Path | None = None) -> list[str]:
    """Class names: from ``labels_file`` (one per line), the bundled Kinetics-400
    names for a 400-class model, else ``"class <i>"``."""
    if labels_file is not None:
        path = Path(labels_file)
        if not path.is_file():
            raise FileNotFoundError(f"labels file {path} does not exist")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) != num_classes:
            raise ValueError(f"labels file {path} has {len(names)} names but the model has "
                             f"{num_classes} classes")
        return names
    if num_classes == 400:
        return kinetics400_labels()
    return [f"class {i}" for i in range(num_classes)]


def top_k(probs: torch.Tensor, labels: list[str], k: int) -> list[tuple[int, str, float]]:
    """``probs [classes]`` -> the ``k`` best ``(index, name, probability)``."""
    values, indices = probs.float().topk(min(k, probs.numel()))
    return [(int(i), labels[int(i)], float(v)) for v, i in zip(values, indices)]
