"""Frame-by-frame streaming equals the full clip; the model is causal; the state is constant."""

from __future__ import annotations

import pytest
import torch

from trecvit import TRecViTState
from trecvit.tools.verify import relative_error

from conftest import reference_video, tiny_model


def test_step_equals_full_forward_on_every_frame(reference):
    _, model, arrays = reference
    video = reference_video(arrays)
    clip_len = video.shape[1] // model.num_clips(video.shape[1])
    with torch.inference_mode():
        full = model(video)
        encoded = full.encoded.view(video.shape[0], -1, clip_len, *full.encoded.shape[2:])
        for c in range(model.num_clips(video.shape[1])):  # the recurrence restarts in every clip
            state = model.init_state(video.shape[0], image_size=tuple(video.shape[-2:]))
            for t in range(clip_len):
                out, state = model.step(video[:, c * clip_len + t], state)
                assert relative_error(out.encoded, encoded[:, c, t]) <= 1e-5, (c, t)
        if model.num_clips(video.shape[1]) == 1:
            assert relative_error(out.logits, full.logits) <= 1e-5
            torch.testing.assert_close(out.probs, full.probs, atol=1e-6, rtol=0)
            torch.testing.assert_close(out.pre_logits, full.pre_logits[:, 0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pool_type, posemb", [("tok", "learn"), ("gap", "sincos2d")])
def test_running_logits_equal_full_logits_of_the_prefix(pool_type, posemb):
    model = tiny_model(pool_type=pool_type, posemb=posemb, frames_per_clip=16)
    video = torch.rand(2, 6, 3, 32, 32)
    state = model.init_state(2)
    with torch.inference_mode():
        for t in range(6):
            out, state = model.step(video[:, t], state)
            prefix = model(video[:, : t + 1])
            assert relative_error(out.logits, prefix.logits) <= 1e-5


def test_full_forward_is_causal():
    model = tiny_model(frames_per_clip=8)
    video = torch.rand(2, 8, 3, 32, 32)
    with torch.inference_mode():
        base = model.forward_features(video)
        for t in range(7):
            changed = video.clone()
            changed[:, t + 1:] = torch.rand_like(changed[:, t + 1:])
            out = model.forward_features(changed)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0)
            assert not torch.allclose(out[:, t + 1], base[:, t + 1])


def test_state_is_plain_tensors_of_constant_size():
    model = tiny_model()
    state = model.init_state(3)
    assert isinstance(state, TRecViTState) and isinstance(state, tuple)
    assert all(isinstance(t, torch.Tensor) for t in state)
    assert state.conv.dtype == state.lru.dtype == state.feature_sum.dtype == torch.float32
    shapes, nbytes = [t.shape for t in state], state.nbytes()
    with torch.inference_mode():
        for _ in range(40):
            _, state = model.step(torch.rand(3, 3, 32, 32), state)
    assert [t.shape for t in state] == shapes and state.nbytes() == nbytes
    assert state.num_frames.tolist() == [40, 40, 40]
    assert all(bool(torch.isfinite(t).all()) for t in state)


def test_reset_restarts_only_the_selected_streams():
    model = tiny_model()
    frames = torch.rand(6, 2, 3, 32, 32)  # 6 frames of 2 streams
    with torch.inference_mode():
        state = model.init_state(2)
        for t in range(3):
            _, state = model.step(frames[t], state)
        state = state.reset(torch.tensor([True, False]))
        for t in range(3, 6):
            out, state = model.step(frames[t], state)
        # stream 0 == a fresh stream over frames 3..5; stream 1 == all 6 frames
        fresh = model.init_state(1)
        for t in range(3, 6):
            ref0, fresh = model.step(frames[t, :1], fresh)
        whole = model.init_state(1)
        for t in range(6):
            ref1, whole = model.step(frames[t, 1:], whole)
    torch.testing.assert_close(out.encoded[0], ref0.encoded[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.logits[0], ref0.logits[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.encoded[1], ref1.encoded[0], atol=1e-6, rtol=1e-5)
    assert state.num_frames.tolist() == [3, 6]


def test_num_frames_zero_starts_afresh_whatever_the_state_holds():
    model = tiny_model()
    frame = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        clean, _ = model.step(frame, model.init_state(1))
        junk = model.init_state(1)
        junk = junk._replace(conv=torch.randn_like(junk.conv), lru=torch.randn_like(junk.lru),
                             feature_sum=torch.randn_like(junk.feature_sum))
        out, _ = model.step(frame, junk)
    torch.testing.assert_close(out.encoded, clean.encoded)
    torch.testing.assert_close(out.logits, clean.logits)


def test_long_stream_in_bfloat16_autocast_stays_finite():
    model = tiny_model()
    state = model.init_state(1)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for t in range(200):
            frame = torch.ones(1, 3, 32, 32) if t % 50 < 25 else torch.rand(1, 3, 32, 32)
            out, state = model.step(frame, state)
    assert state.lru.dtype == torch.float32
    assert bool(torch.isfinite(out.logits.float()).all()) and bool(torch.isfinite(state.lru).all())
