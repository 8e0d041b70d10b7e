"""Official checkpoint loading, save_pretrained / from_pretrained, and their refusals."""

from __future__ import annotations

import json
import pathlib
import pickle

import numpy as np
import pytest
import torch

from trecvit import TRecViT, TRecViTConfig, load_official_checkpoint
from trecvit.checkpoints.official import official_param_shapes, read_npz

from conftest import FIXTURES, tiny_config, tiny_model, write_official_npz


@pytest.mark.slow
def test_full_size_official_b_checkpoint_loads_and_runs(tmp_path):
    keys = json.loads((FIXTURES / "official_B_k400_keys.json").read_text())
    assert {k: tuple(v) for k, v in keys.items()} == official_param_shapes(TRecViTConfig())
    rng = np.random.default_rng(0)
    path = tmp_path / "trecvit_B_k400.npz"
    np.savez(path, **{k: (0.02 * rng.standard_normal(s, dtype=np.float32)) for k, s in keys.items()})
    model = load_official_checkpoint(path)
    assert model.config == TRecViTConfig()
    assert model.num_parameters() == 136_778_128
    with torch.inference_mode():
        out = model.eval()(torch.rand(1, 2, 3, 224, 224))
    assert out.logits.shape == (1, 400) and bool(torch.isfinite(out.logits).all())
    assert out.encoded.shape == (1, 2, 197, 768)


def _tiny_arrays() -> dict[str, np.ndarray]:
    return read_npz(FIXTURES / "tiny_tok_learn.ckpt.npz")


@pytest.mark.parametrize("key, value, message", [
    ("encoder/residualblock_01/recurrent_block/rg_lru/a_param", None,
     r"missing key.*residualblock_01/recurrent_block/rg_lru/a_param"),
    ("encoder/encoderblock_1/extra/kernel", np.zeros((2, 2), np.float32),
     r"unexpected key.*encoderblock_1/extra/kernel"),
    ("encoder/encoderblock_0/MlpBlock_0/Dense_1/kernel", np.zeros((128, 63), np.float32),
     r"mis-shaped key.*encoderblock_0/MlpBlock_0/Dense_1/kernel has shape \(128, 63\), expected \(128, 64\)"),
    ("tokenizer/embedding/bias", np.zeros(64, np.int32), r"tokenizer/embedding/bias.*int32"),
], ids=["missing", "unexpected", "mis-shaped", "integer"])
def test_bad_array_is_named(tmp_path, key, value, message):
    arrays = _tiny_arrays()
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    np.savez(tmp_path / "ckpt.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_official_checkpoint(tmp_path / "ckpt.npz")


def test_config_that_does_not_match_the_file_is_refused():
    with pytest.raises(ValueError, match=r"width: file 64 \(from tokenizer/embedding/kernel\), config 192"):
        load_official_checkpoint(FIXTURES / "tiny_tok_learn.ckpt.npz", TRecViTConfig.from_variant("Ti"))


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_npz_with_pickled_objects_is_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    arrays = _tiny_arrays()
    arrays["decoder/cls_head/bias"] = np.array([_Payload(marker)], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(ValueError, match=r"decoder/cls_head/bias.*pickled"):
        load_official_checkpoint(tmp_path / "evil.npz")
    assert not marker.exists()


def test_plain_pickle_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    with pytest.raises(ValueError, match=r"evil\.npz.*pickled"):
        load_official_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"PK\x03\x04 this is not really a zip", "not a readable .npz"),
    (b"hello, world", "pickled|not a readable"),
])
def test_broken_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "ckpt.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_official_checkpoint(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    data = (FIXTURES / "tiny_tok_learn.ckpt.npz").read_bytes()
    path = tmp_path / "ckpt.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(path)):
        load_official_checkpoint(path)


def test_missing_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_official_checkpoint(tmp_path / "nope.npz")


def test_bfloat16_arrays_as_jax_writes_them_load(tmp_path):
    arrays = _tiny_arrays()
    key = "tokenizer/embedding/bias"
    bf16 = torch.from_numpy(arrays[key]).to(torch.bfloat16)
    arrays[key] = bf16.view(torch.int16).numpy().view(np.dtype("V2"))
    np.savez(tmp_path / "ckpt.npz", **arrays)
    model = load_official_checkpoint(tmp_path / "ckpt.npz")
    torch.testing.assert_close(model.tokenizer.patch_embed.bias, bf16.float())


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = tiny_model(pool_type="gap", posemb="sincos2d", image_size=(32, 48))
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = TRecViT.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    video = torch.rand(1, 4, 3, 32, 48)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(video).logits, model(video).logits, atol=0, rtol=0)


def test_from_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TRecViT.from_pretrained(tmp_path / "absent")
    tiny_model().save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        TRecViT.from_pretrained(tmp_path / "a")

    tiny_model().save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        TRecViT.from_pretrained(tmp_path / "b")

    tiny_model().save_pretrained(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    cfg["mlp_dim"] = 96
    (tmp_path / "c" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"blocks\.0\.spatial\.mlp\.fc1\.weight has shape \(64, 32\), expected \(96, 32\)"):
        TRecViT.from_pretrained(tmp_path / "c")

    tiny_model().save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text('{"width": 32, "colour": "red"}')
    with pytest.raises(ValueError, match="colour"):
        TRecViT.from_pretrained(tmp_path / "d")


def test_save_pretrained_replaces_files_atomically(tmp_path, monkeypatch):
    """A save that fails half-way leaves the previous checkpoint intact."""
    good = tiny_model(seed=1)
    good.save_pretrained(tmp_path / "ckpt")
    before = (tmp_path / "ckpt" / "model.safetensors").read_bytes()

    import trecvit.checkpoints.pretrained as pretrained

    def failing_save(state, path, metadata=None):
        pathlib.Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pretrained, "save_file", failing_save)
    with pytest.raises(OSError, match="No space left"):
        tiny_model(seed=2).save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]


def test_official_layout_round_trip_for_every_option(tmp_path):
    for cfg in (tiny_config(), tiny_config(pool_type="gap", posemb="sincos2d", rep_size=0),
                tiny_config(image_size=(32, 64), conv1d_width=3, lru_width=48)):
        path = write_official_npz(tmp_path / "x.npz", cfg)
        model = load_official_checkpoint(path, cfg)
        assert model.config == cfg
