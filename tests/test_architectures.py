"""The architecture table, the shared trunk, and the model folder around them.

Every row of :mod:`trecvit.architectures` builds, round-trips through
``save_pretrained`` / ``from_pretrained`` bit for bit, and refuses a folder
written for another row, naming both; folders written by 0.1.0 (trunk tensors
at the top level) still load and give the same numbers; the clip settings a
model was trained with are the defaults of ``evaluate`` and ``classify``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trecvit import TRecViT, TRecViTConfig, TRecViTEncoder
from trecvit.architectures import ARCHITECTURES, build_model, get_architecture
from trecvit.base import VideoClassifier
from trecvit.baselines import FrameAverageViT
from trecvit.checkpoints.auto import from_pretrained, load_model
from trecvit.checkpoints.pretrained import PreprocessorConfig, read_preprocessor
from trecvit.cli import main as cli_main

LEGACY = Path(__file__).parent / "fixtures" / "legacy_v0_1"


def _tiny(arch: str, seed: int = 0) -> VideoClassifier:
    torch.manual_seed(seed)
    model = build_model(arch, "mu", width=16, num_heads=2, mlp_dim=32, patch_size=8, image_size=(16, 24),
                        num_classes=3, rep_size=8, frames_per_clip=2)
    with torch.no_grad():  # move zero-initialised parameters away from zero
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_builds_and_round_trips_bit_for_bit(tmp_path, arch):
    model = _tiny(arch)
    assert type(model).arch == arch and isinstance(model.config, get_architecture(arch).config_class)
    model.save_pretrained(tmp_path / arch)
    assert json.loads((tmp_path / arch / "config.json").read_text())["arch"] == arch
    for loaded in (from_pretrained(tmp_path / arch), type(model).from_pretrained(tmp_path / arch)):
        assert type(loaded) is type(model)
        a, b = model.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        video = torch.rand(2, 4, 3, 16, 24)
        assert torch.equal(loaded(video).logits, model(video).logits)


@pytest.mark.parametrize("saved, loader", [(a, b) for a in ARCHITECTURES for b in ARCHITECTURES if a != b])
def test_a_folder_of_another_architecture_is_refused_naming_both(tmp_path, saved, loader):
    _tiny(saved).save_pretrained(tmp_path / saved)
    cls = get_architecture(loader).model_class
    with pytest.raises(ValueError, match=rf"{saved!r}.*{loader!r}"):
        cls.from_pretrained(tmp_path / saved)


def test_unknown_architecture_names_the_known_ones(tmp_path):
    _tiny("trecvit").save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "arch": "vivit_xl"}))
    with pytest.raises(ValueError, match="unknown architecture 'vivit_xl'; known: trecvit, frame_average"):
        from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vivit_xl")


@pytest.mark.parametrize("arch, cls", [("trecvit", TRecViT), ("frame_average", FrameAverageViT)])
def test_folders_saved_by_0_1_0_load_with_the_same_numbers(arch, cls):
    expected = load_file(str(LEGACY / "expected.safetensors"))
    old = load_file(str(LEGACY / arch / "model.safetensors"))
    assert not any(k.startswith("encoder.") for k in old)  # written before the trunk was a module
    for model in (from_pretrained(LEGACY / arch), cls.from_pretrained(LEGACY / arch), load_model(LEGACY / arch)):
        assert type(model) is cls
        for key, value in model.state_dict().items():  # the weights bit for bit
            old_key = key if key in old else key.removeprefix("encoder.")
            assert torch.equal(value, old[old_key]), key
        with torch.no_grad():
            logits = model.eval()(expected["video"]).logits
        # the logits to float rounding: they were computed on another CPU, whose kernels may sum in
        # another order
        torch.testing.assert_close(logits, expected[f"{arch}_logits"], atol=1e-5, rtol=1e-5)


def test_load_state_dict_takes_0_1_0_keys():
    old = load_file(str(LEGACY / "trecvit" / "model.safetensors"))
    model = TRecViT.from_pretrained(LEGACY / "trecvit")
    fresh = TRecViT(model.config)
    fresh.load_state_dict(old, strict=True)  # the pre-hook renames tokenizer.* -> encoder.tokenizer.*
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


def test_the_trunk_is_one_module_inside_every_task_model():
    model = _tiny("trecvit")
    assert isinstance(model.encoder, TRecViTEncoder)
    assert {k.split(".")[0] for k in model.state_dict()} == {"encoder", "head"}
    video = torch.rand(2, 4, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(model.encoder(video), model.forward_features(video))
        state = model.encoder.init_state(2)
        for t in range(2):  # the trunk streams on its own, as the classifier's step does
            encoded, state = model.encoder.step(video[:, t], state)
            torch.testing.assert_close(encoded, model.forward_features(video[:, :2])[:, t], atol=1e-5, rtol=0)
    baseline = _tiny("frame_average")
    assert {k.split(".")[0] for k in baseline.state_dict()} == {"encoder", "head"}


def test_forward_head_takes_the_clip_structure_explicitly():
    model = _tiny("trecvit")  # frames_per_clip 2: a 4-frame video is 2 clips
    video = torch.rand(2, 4, 3, 16, 24)
    with torch.no_grad():
        encoded = model.forward_features(video)
        assert encoded.shape[0] == 4  # b * clips
        out = model.forward_head(encoded, num_clips=model.num_clips(4))
        torch.testing.assert_close(out.logits, model(video).logits, atol=0, rtol=0)
        assert out.pre_logits.shape[:2] == (2, 2)
    with pytest.raises(TypeError):
        model.forward_head(encoded)  # without num_clips the clip structure would be guessed
    with pytest.raises(ValueError, match="clips = 3"):
        model.forward_head(encoded, num_clips=3)


def test_the_baseline_checks_frames_like_trecvit():
    model = _tiny("frame_average")
    with pytest.raises(ValueError, match="learnt position embedding is for 16x24"):
        model(torch.rand(1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match="is on meta but the model is on cpu"):
        model(torch.rand(1, 2, 3, 16, 24, device="meta"))


def test_preprocessor_config_round_trips_and_is_checked(tmp_path):
    model = _tiny("trecvit")
    settings = PreprocessorConfig(num_frames=4, stride=2, image_size=(16, 24))
    model.save_pretrained(tmp_path / "m", preprocessor=settings)
    assert read_preprocessor(tmp_path / "m") == settings
    assert read_preprocessor(LEGACY / "trecvit") is None  # older folders have none
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps({"num_frames": 0}))
    with pytest.raises(ValueError, match="num_frames"):
        read_preprocessor(tmp_path / "m")


@pytest.fixture
def trained_folder(tmp_path):
    """A non-square model folder with the clip settings of a run trained at 4 frames, stride 2."""
    from trecvit.data.synthetic import write_synthetic_videos

    data = write_synthetic_videos(tmp_path / "data", 3, num_frames=12, image_size=32, seed=0)
    num_classes = len((data / "classes.txt").read_text().splitlines())
    torch.manual_seed(0)
    model = TRecViT(TRecViTConfig(width=16, depth=1, num_heads=2, mlp_dim=32, patch_size=8,
                                  image_size=(16, 24), num_classes=num_classes, rep_size=0,
                                  frames_per_clip=4))
    folder = tmp_path / "model"
    model.save_pretrained(folder, preprocessor=PreprocessorConfig(num_frames=4, stride=2, image_size=(16, 24)))
    (folder / "classes.txt").write_text((data / "classes.txt").read_text())
    return folder, data


def test_evaluate_uses_the_saved_clip_settings_and_the_model_s_non_square_size(trained_folder, monkeypatch,
                                                                                capsys):
    import trecvit.data.datasets as datasets

    folder, data = trained_folder
    seen = {}
    real = datasets.build_dataset

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "build_dataset", spy)
    assert cli_main(["evaluate", "--checkpoint", str(folder), "--data", "csv", "--val-data",
                     str(data / "labels.csv"), "--views", "1x1", "--num-workers", "0", "--json"]) == 0
    assert (seen["num_frames"], seen["stride"], tuple(seen["image_size"])) == (4, 2, (16, 24))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["videos"] == 3
    # options still win over the saved settings
    assert cli_main(["evaluate", "--checkpoint", str(folder), "--data", "csv", "--val-data",
                     str(data / "labels.csv"), "--views", "1x1", "--num-workers", "0", "--json",
                     "--num-frames", "2", "--stride", "1"]) == 0
    assert (seen["num_frames"], seen["stride"]) == (2, 1)


def test_classify_uses_the_saved_clip_settings(trained_folder, monkeypatch, capsys):
    import trecvit.classification.inference as inference

    folder, data = trained_folder
    video = next((data / "videos").iterdir())
    calls = []
    real = inference.read_video

    def spy(path, num_frames, size, **kwargs):
        calls.append((num_frames, tuple(size), kwargs.get("stride")))
        return real(path, num_frames, size, **kwargs)

    monkeypatch.setattr(inference, "read_video", spy)
    assert cli_main(["classify", str(video), "--checkpoint", str(folder), "--sampling", "stride", "--json"]) == 0
    assert calls == [(4, (16, 24), 2)]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 4
    assert cli_main(["classify", str(video), "--checkpoint", str(folder), "--stream", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 6  # 12 frames at the saved stride 2, frame by frame


def test_streaming_commands_refuse_an_architecture_without_step(tmp_path, capsys):
    folder = tmp_path / "baseline"
    _tiny("frame_average").save_pretrained(folder)
    from trecvit.data.synthetic import write_synthetic_videos

    video = next((write_synthetic_videos(tmp_path / "data", 1, num_frames=4, image_size=32) / "videos").iterdir())
    assert cli_main(["classify", str(video), "--checkpoint", str(folder), "--stream"]) == 1
    assert "'frame_average' model does not run frame by frame" in capsys.readouterr().err
    assert cli_main(["classify", str(video), "--checkpoint", str(folder)]) == 0  # whole videos are fine
    assert cli_main(["export", str(folder), "--onnx", str(tmp_path / "step.onnx")]) == 2
    assert "does not run frame by frame" in capsys.readouterr().err
