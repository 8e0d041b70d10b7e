"""Checkpoints from strangers and damaged disks: no loader runs code, and no damaged file loads as
silently different weights. Every refusal names the file (and the tensor or field when there is one)."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_model, write_official_npz
from safetensors.torch import save_file

from trecvit import TRecViT, load_official_checkpoint
from trecvit.cli import main as cli_main
from trecvit.checkpoints.integrity import iter_tensors
from trecvit.training.checkpoint import load_checkpoint, save_checkpoint
from trecvit.checkpoints.weights import init_model_weights, load_vit_weights

FLIPS_PER_FORMAT = 300
CUTS_PER_FORMAT = 60


class _Exploit:
    """Unpickling this creates ``marker``: proof that the loader ran the file's code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _tiny_optimizer_payload(model: TRecViT) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(1, 4, 3, 32, 32)).logits.sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": None,
            "config": {"lr": 1e-3, "out_dir": "run"}, "skipped_steps": 0, "classes": ["a", "b"]}


# --------------------------------------------------------------------- pickles
def test_no_loader_runs_code_from_a_pickle(tmp_path, capsys):
    """Every way a file can reach trecvit (Python API and command line), fed a live exploit."""
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"weights": _Exploit(marker)})
    pickle.loads(evil)  # the payload is live: unpickling it does create the marker
    assert marker.exists()
    marker.rmdir()

    files = {name: tmp_path / name for name in ("model.pt", "model.pth", "pytorch_model.bin", "model.npz",
                                                "model.safetensors", "step_00000001.pt")}
    for path in files.values():
        path.write_bytes(evil)
    torch_pickle = tmp_path / "torch_saved.pt"  # the same exploit inside torch.save's zip format
    torch.save({"format_version": 1, "model": _Exploit(marker)}, torch_pickle)
    folder = tmp_path / "folder"
    tiny_model().save_pretrained(folder)
    shutil.copy(files["model.safetensors"], folder / "model.safetensors")
    npz_objects = tmp_path / "objects.npz"
    np.savez(npz_objects, w=np.array([_Exploit(marker)], dtype=object))

    attempts = {
        "load_official_checkpoint(.npz pickle)": lambda: load_official_checkpoint(files["model.npz"]),
        "load_official_checkpoint(.npz object array)": lambda: load_official_checkpoint(npz_objects),
        "from_pretrained(folder with a pickle)": lambda: TRecViT.from_pretrained(folder),
        "load_checkpoint(pickle)": lambda: load_checkpoint(files["step_00000001.pt"]),
        "load_checkpoint(torch.save zip)": lambda: load_checkpoint(torch_pickle),
    }
    for name in ("model.pt", "model.pth", "pytorch_model.bin", "model.npz", "model.safetensors"):
        attempts[f"load_vit_weights({name})"] = lambda p=files[name]: load_vit_weights(tiny_model(), p)
        attempts[f"init_model_weights({name})"] = lambda p=files[name]: init_model_weights(tiny_model(), p)
    attempts["init_model_weights(torch.save zip)"] = lambda: init_model_weights(tiny_model(), torch_pickle)
    for name, attempt in attempts.items():
        with pytest.raises(ValueError) as err:
            attempt()
        assert not marker.exists(), f"{name} ran the file's code"
        assert str(tmp_path) in str(err.value), f"{name}: the error does not name the file: {err.value}"

    video = tmp_path / "clip.npy"  # the CLI commands stop at the checkpoint, before any video is read
    for argv in (["classify", str(video), "--checkpoint", str(folder)],
                 ["classify", str(video), "--checkpoint", str(files["model.npz"])],
                 ["convert", str(files["model.npz"]), str(tmp_path / "out")],
                 ["verify", "--checkpoint", str(files["model.npz"])],
                 ["train", "--out-dir", str(tmp_path / "run"), "--init-from", str(files["model.pt"]),
                  "--synthetic-train-size", "8", "--max-steps", "1"]):
        with pytest.raises((ValueError, SystemExit)):
            code = cli_main(argv)
            assert code != 0
            raise SystemExit(code)
        assert not marker.exists(), f"trecvit {argv[0]} ran the file's code"
    capsys.readouterr()


# ------------------------------------------------------------- damaged files
def _pretrained_case(tmp_path: Path):
    model = tiny_model(seed=3)
    folder = tmp_path / "pretrained"
    model.save_pretrained(folder)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    def load():
        return TRecViT.from_pretrained(folder).state_dict()
    return folder / "model.safetensors", load, expected


def _official_case(tmp_path: Path):
    path = write_official_npz(tmp_path / "official.npz", tiny_config(), seed=4)
    expected = load_official_checkpoint(path).state_dict()

    def load():
        return load_official_checkpoint(path).state_dict()
    return path, load, expected


def _training_case(tmp_path: Path):
    folder = tmp_path / "checkpoints"
    path = save_checkpoint(folder, 7, _tiny_optimizer_payload(tiny_model(seed=5)), keep_last=1)
    expected = load_checkpoint(path)

    def load():
        return load_checkpoint(path)
    return path, load, expected


CASES = {"save_pretrained": _pretrained_case, "official_npz": _official_case, "training": _training_case}


def _same(a, b) -> bool:
    ta, tb = dict(iter_tensors(a)), dict(iter_tensors(b))
    if ta.keys() != tb.keys() or not all(torch.equal(ta[k], tb[k]) for k in ta):
        return False
    if isinstance(a, dict) and "config" in a:  # the training payload's plain values
        return {k: v for k, v in a.items() if k not in ("model", "optimizer")} == \
            {k: v for k, v in b.items() if k not in ("model", "optimizer")} and \
            a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    return True


@pytest.mark.parametrize("case", sorted(CASES))
def test_truncated_files_are_refused_naming_the_file(tmp_path, case):
    path, load, _ = CASES[case](tmp_path)
    data = path.read_bytes()
    rng = random.Random(1)
    cuts = sorted({0, 1, 8, len(data) - 1, *(rng.randrange(len(data)) for _ in range(CUTS_PER_FORMAT))})
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=str(path.name)):
            load()


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_bytes_are_refused_or_change_nothing(tmp_path, case):
    """Flip random bits anywhere (header, tensor data, metadata): the load either fails with a message
    naming the file, or gives exactly the original weights (the flip hit bytes nothing reads)."""
    path, load, expected = CASES[case](tmp_path)
    data = path.read_bytes()
    rng = random.Random(2)
    refused = unchanged = 0
    for trial in range(FLIPS_PER_FORMAT):
        damaged = bytearray(data)
        # half the flips in the first 2 KB, where the headers and the index live
        for _ in range(rng.choice((1, 1, 2, 8))):
            pos = rng.randrange(min(2048, len(data))) if trial % 2 else rng.randrange(len(data))
            damaged[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        try:
            got = load()
        except ValueError as err:
            assert str(path.name) in str(err), err
            refused += 1
            continue
        assert _same(got, expected), f"flip trial {trial} loaded different weights without an error"
        unchanged += 1
    print(f"\n{case}: {FLIPS_PER_FORMAT} damaged files, {refused} refused, {unchanged} loaded unchanged")
    assert refused > FLIPS_PER_FORMAT // 2


# --------------------------------------------------------- wrong contents
def test_wrong_dtype_non_finite_and_mismatched_config_name_the_key(tmp_path):
    model = tiny_model()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    key = "encoder.blocks.0.temporal.rg_lru.a_param"
    assert key in state

    def folder_with(name: str, tensors: dict, config: dict | None = None) -> Path:
        folder = tmp_path / name
        model.save_pretrained(folder)
        save_file(tensors, str(folder / "model.safetensors"))
        if config is not None:
            (folder / "config.json").write_text(json.dumps(config))
        return folder

    bad = folder_with("int", {**state, key: state[key].to(torch.int32)})
    with pytest.raises(ValueError, match=rf"int.*model\.safetensors: tensor '{key}' has dtype torch.int32"):
        TRecViT.from_pretrained(bad)
    nan = state[key].clone()
    nan[0] = float("nan")
    bad = folder_with("nan", {**state, key: nan})
    with pytest.raises(ValueError, match=rf"nan.*model\.safetensors: tensor '{key}' holds 1 NaN"):
        TRecViT.from_pretrained(bad)
    half = folder_with("half", {k: v.half() for k, v in state.items()})  # any float dtype is cast
    assert TRecViT.from_pretrained(half).tokenizer.patch_embed.weight.dtype == torch.float32

    # a config.json edited after saving: a field that changes shapes names the tensor ...
    folder = tmp_path / "edited"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "lru_width": 48}))
    with pytest.raises(ValueError, match=r"edited.*mis-shaped tensor\(s\): encoder\.blocks\.0\.temporal"):
        TRecViT.from_pretrained(folder)
    # ... and one that does not (same shapes, different model) names the field
    (folder / "config.json").write_text(json.dumps({**config, "min_rad": 0.7}))
    with pytest.raises(ValueError, match=r"config\.json does not match.*min_rad: 0\.7 in config\.json"):
        TRecViT.from_pretrained(folder)

    # an official .npz with a non-float array or a NaN names the array
    path = write_official_npz(tmp_path / "official.npz", tiny_config())
    arrays = dict(np.load(path))
    name = "tokenizer/embedding/bias"
    np.savez(path, **{**arrays, name: arrays[name].astype(np.int64)})
    with pytest.raises(ValueError, match=rf"official\.npz: array '{name}' has dtype int64"):
        load_official_checkpoint(path)
    arrays[name][3] = np.inf
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"official\.npz: array '{name}' holds 1 NaN or infinite"):
        load_official_checkpoint(path)
