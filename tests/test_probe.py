"""Frozen-feature probes (``trecvit.mae.probe``, ``trecvit probe``): features, probes, training,
encoder loading and the command, on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from trecvit import TRecViT, TRecViTConfig
from trecvit.baselines.frame_average import FrameAverageViT
from trecvit.checkpoints.pretrained import PreprocessorConfig
from trecvit.cli import main
from trecvit.data.synthetic import SyntheticMotion
from trecvit.mae.probe import (AttentiveProbe, LinearProbe, build_probe_datasets, extract_features,
                               load_probe_encoder, probe_clip_settings, run_probe, train_probe)
from trecvit.training.data import ClipTensorDataset

TINY = dict(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=8, image_size=16, num_classes=3,
            rep_size=0, frames_per_clip=4)
TINY_ARGS = [f"--model={k}={v}" for k, v in TINY.items() if k != "image_size"]


def tiny_encoder(seed: int = 0, **overrides) -> TRecViT:
    torch.manual_seed(seed)
    return TRecViT(TRecViTConfig(**{**TINY, **overrides})).eval()


def clips(n: int = 6, frames: int = 8, seed: int = 0) -> ClipTensorDataset:
    src = SyntheticMotion(n, seed=seed, num_frames=frames, image_size=16)
    return ClipTensorDataset(*src.materialize(), classes=list(src.classes))


class _Views(torch.utils.data.Dataset):
    """Items of ``dataset`` as an evaluation dataset gives them, ``[1, T, 3, H, W]``, with item 1
    undecodable."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def set_epoch(self, epoch):
        pass

    def __getitem__(self, i):
        item = dict(self.dataset[i])
        if i == 1:
            return {"video": None, "label": item["label"], "index": i, "error": "broken.mp4: bad"}
        item["video"] = item["video"][None]
        return item


# ---------------------------------------------------------------------------- features
def test_feature_shapes_and_last_is_the_last_frame_of_all():
    model = tiny_encoder()  # 8 frames, frames_per_clip 4: two clips per video
    data = clips(5)
    n, d = model.config.num_tokens, model.config.width
    all_x, all_y = extract_features(model, data, tokens="all", batch_size=2)
    last_x, last_y = extract_features(model, data, tokens="last", batch_size=3)
    assert all_x.shape == (5, 8 * n, d) and last_x.shape == (5, n, d)
    assert all_x.dtype == torch.float32 and torch.equal(all_y, data.labels) and torch.equal(last_y, all_y)
    torch.testing.assert_close(last_x, all_x.view(5, 8, n, d)[:, -1])
    with torch.no_grad():
        encoded = model.forward_features(data[0]["video"][None])  # (2, 4, n, d)
    torch.testing.assert_close(all_x[0], encoded.reshape(-1, d))


def test_features_of_view_items_skip_undecodable_videos():
    model = tiny_encoder()
    data = clips(4)
    failed: list = []
    x, y = extract_features(model, _Views(data), tokens="last", batch_size=2, failed=failed)
    ref, _ = extract_features(model, data, tokens="last", batch_size=4)
    assert failed == [(1, "broken.mp4: bad")]
    assert x.shape[0] == 3 and torch.equal(y, data.labels[[0, 2, 3]])
    torch.testing.assert_close(x, ref[[0, 2, 3]])
    with pytest.raises(ValueError, match="tokens"):
        extract_features(model, data, tokens="first")


# ---------------------------------------------------------------------------- probes
def test_attentive_probe_shape_and_every_parameter_gets_a_gradient():
    probe = AttentiveProbe(32, 5, num_queries=3)
    logits = probe(torch.randn(4, 7, 32))
    assert logits.shape == (4, 5)
    logits.square().sum().backward()
    for name, p in probe.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert LinearProbe(32, 5)(torch.randn(4, 7, 32)).shape == (4, 5)
    with pytest.raises(ValueError, match="num_heads"):
        AttentiveProbe(32, 5, num_heads=3)


def separable(n: int, seed: int, classes: int = 4, tokens: int = 5, dim: int = 16):
    """Features whose per-channel mean encodes the class (a one-hot bump), plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    x = torch.randn(n, tokens, dim, generator=g)
    x[torch.arange(n), :, labels] += 4.0
    return x, labels


@pytest.mark.parametrize("kind", ["attentive", "linear"])
def test_probe_learns_a_separable_problem_deterministically(kind):
    train_x, train_y = separable(64, 0)
    val_x, val_y = separable(32, 1)

    def fit():
        torch.manual_seed(0)
        probe = AttentiveProbe(16, 4) if kind == "attentive" else LinearProbe(16, 4)
        result = train_probe(probe, train_x, train_y, val_x, val_y, epochs=20, batch_size=16, lr=3e-2,
                             weight_decay=0.0, seed=3)
        return probe, result

    probe, result = fit()
    assert result.top1 == 1.0 and result.top5 == 1.0
    assert (result.num_train, result.num_val) == (64, 32) and result.train_loss < 0.5
    probe2, result2 = fit()
    assert result2 == result
    for a, b in zip(probe.state_dict().values(), probe2.state_dict().values()):
        assert torch.equal(a, b)


def test_run_probe_never_trains_the_encoder():
    model = tiny_encoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = run_probe(model, clips(8), clips(4, seed=1), ["a"] * 12, tokens="last", epochs=2,
                       batch_size=4)
    assert list(report.results) == ["attentive", "linear"]
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for result in report.results.values():
        assert 0.0 <= result.top1 <= result.top5 <= 1.0


# ---------------------------------------------------------------------------- encoders
def test_random_encoder_is_seeded_and_frozen():
    opts = dict(variant="mu", model_overrides=dict(patch_size=8), image_size=16, num_frames=4)
    a = load_probe_encoder("random", seed=5, **opts)
    b = load_probe_encoder("random", seed=5, **opts)
    c = load_probe_encoder("random", seed=6, **opts)
    assert a.config.image_hw == (16, 16) and a.config.frames_per_clip == 4 and not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    assert not any(p.requires_grad for p in a.parameters())


def test_checkpoint_folders_load_and_other_architectures_are_refused(tmp_path):
    model = tiny_encoder(seed=1)
    model.save_pretrained(tmp_path / "model", preprocessor=PreprocessorConfig(num_frames=4, stride=2,
                                                                             image_size=16))
    loaded = load_probe_encoder(tmp_path / "model")
    assert not any(p.requires_grad for p in loaded.parameters())
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert load_probe_encoder(tmp_path / "model" / "model.safetensors").config == model.config
    settings = probe_clip_settings(loaded, tmp_path / "model", num_frames=6)
    assert (settings.num_frames, settings.stride, settings.image_size) == (6, 2, (16, 16))

    FrameAverageViT(TRecViTConfig(**TINY)).save_pretrained(tmp_path / "baseline")
    with pytest.raises(ValueError, match="'frame_average'"):
        load_probe_encoder(tmp_path / "baseline")
    mae = tmp_path / "autoencoder"
    mae.mkdir()
    (mae / "config.json").write_text(json.dumps({"arch": "trecvit_mae", **TINY}))
    (mae / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="trecvit_mae.*model/ folder"):
        load_probe_encoder(mae)
    with pytest.raises(ValueError, match="random encoder only"):
        load_probe_encoder(tmp_path / "model", model_overrides={"depth": 2})
    with pytest.raises(FileNotFoundError):
        load_probe_encoder(tmp_path / "missing")


def test_datasets_need_both_splits():
    settings = PreprocessorConfig(num_frames=4, image_size=16)
    with pytest.raises(ValueError, match="train_data and val_data"):
        build_probe_datasets("folder", settings, train_data="somewhere")
    train, val, classes = build_probe_datasets("synthetic", settings, synthetic_train_size=6,
                                               synthetic_val_size=3, seed=2)
    assert (len(train), len(val), len(classes)) == (6, 3, 12)
    assert torch.equal(val.videos, clips(3, frames=4, seed=1002).videos)


# ---------------------------------------------------------------------------- the command
SMALL = ["--data", "synthetic", "--synthetic-train-size", "24", "--synthetic-val-size", "12",
         "--num-frames", "4", "--image-size", "16", "--epochs", "2", "--batch-size", "8"]


def test_cli_random_json(capsys):
    code = main(["probe", "--checkpoint", "random", "--variant", "mu", *TINY_ARGS, *SMALL, "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checkpoint"] == "random" and out["tokens"] == "all"
    assert set(out["probes"]) == {"attentive", "linear"}
    assert 0.0 <= out["top1"] <= out["top5"] <= 1.0
    assert out["top1"] == out["probes"]["attentive"]["top1"]
    assert out["probes"]["linear"]["num_train"] == 24 and out["probes"]["linear"]["num_val"] == 12


def test_cli_checkpoint_folder_lines(tmp_path, capsys):
    tiny_encoder(seed=2).save_pretrained(tmp_path / "model")
    code = main(["probe", "--checkpoint", str(tmp_path / "model"), "--probe", "linear", "--tokens", "last",
                 *SMALL])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("linear probe: top-1 ")
    assert f"(24 train / 12 val clips, frozen encoder: {tmp_path / 'model'})" in lines[0]


def test_cli_errors(tmp_path, capsys):
    assert main(["probe", "--checkpoint", str(tmp_path / "missing"), *SMALL]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["probe", "--checkpoint", "random", "--variant", "mu", "--data", "folder", "--train-data", str(tmp_path)]) == 2
    assert "val_data" in capsys.readouterr().err
