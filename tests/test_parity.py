"""Parity with the official JAX model on its reference outputs."""

from __future__ import annotations

import numpy as np
import torch

from trecvit import TRecViTConfig, load_official_checkpoint
from trecvit.tools.verify import max_abs_error, relative_error

from conftest import FIXTURES, reference_video

TOL = 1e-4


def check_outputs(model, arrays) -> None:
    video = reference_video(arrays)
    with torch.inference_mode():
        tokens = model.embed(video)
        out = model(video)
    assert relative_error(tokens, torch.from_numpy(arrays["out/tokens"])) <= TOL
    assert relative_error(out.encoded, torch.from_numpy(arrays["out/encoded"])) <= TOL
    assert relative_error(out.pre_logits, torch.from_numpy(arrays["out/pre_logits"])) <= TOL
    assert max_abs_error(out.logits, torch.from_numpy(arrays["out/logits"])) <= TOL
    assert max_abs_error(out.probs, torch.from_numpy(arrays["out/probs"])) <= TOL
    assert out.encoded.shape == arrays["out/encoded"].shape
    assert out.pre_logits.shape == arrays["out/pre_logits"].shape


def test_parity_with_official_outputs(reference):
    _, model, arrays = reference
    check_outputs(model, arrays)


def test_official_checkpoint_file_gives_the_same_numbers(reference):
    name, model, arrays = reference
    loaded = load_official_checkpoint(FIXTURES / f"{name}.ckpt.npz",
                                      model.config.replace(frames_per_clip=int(arrays["config/frames_per_clip"])))
    check_outputs(loaded.eval(), arrays)
    expected, got = model.state_dict(), loaded.state_dict()
    assert got.keys() == expected.keys(), (f"missing: {sorted(expected.keys() - got.keys())}, "
                                           f"unexpected: {sorted(got.keys() - expected.keys())}")
    for k, a in expected.items():
        b = got[k]
        assert a.dtype == b.dtype and torch.equal(a, b), (
            f"{k}: the loaded {b.dtype} {tuple(b.shape)} tensor differs from the reference model's "
            f"{a.dtype} {tuple(a.shape)}")


def test_inferred_config_matches_the_reference_config(reference):
    name, _, arrays = reference
    # No config given: everything but frames_per_clip is read off the arrays.
    cfg = load_official_checkpoint(FIXTURES / f"{name}.ckpt.npz").config
    for field in ("width", "depth", "num_heads", "mlp_dim", "posemb", "pool_type", "conv1d_width",
                  "num_classes", "rep_size"):
        assert getattr(cfg, field) == arrays[f"config/{field}"].item(), field
    assert cfg.patch_size == int(arrays["config/patch"])
    assert cfg.lru_width == int(arrays["config/state_multiplier"]) * cfg.width
    assert cfg.frames_per_clip == TRecViTConfig().frames_per_clip


def test_two_clip_video_averages_clip_logits_and_probs():
    from trecvit.assets import reference_fixtures
    from trecvit.tools.verify import reference_model

    model, arrays = reference_model(reference_fixtures()["tiny_gap_sincos_2clips"])
    video = reference_video(arrays)
    with torch.inference_mode():
        full = model(video)
        clips = [model(video[:, :8]), model(video[:, 8:])]
    assert full.pre_logits.shape[1] == 2
    torch.testing.assert_close(full.logits, (clips[0].logits + clips[1].logits) / 2, atol=1e-6, rtol=0)
    torch.testing.assert_close(full.probs, (clips[0].probs + clips[1].probs) / 2, atol=1e-6, rtol=0)
    # probs is the mean of per-clip softmax, not softmax of the mean logits
    assert not np.allclose(full.probs.numpy(), full.logits.softmax(-1).numpy(), atol=1e-7)
