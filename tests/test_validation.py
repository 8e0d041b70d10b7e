"""Bad input to the model fails early with a message naming the problem."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()  # 32 x 32 frames, patch 16, 4 frames per clip


@pytest.mark.parametrize("video, message", [
    (torch.rand(4, 3, 32, 32), r"5 dimensions .*needs a batch axis"),
    (torch.rand(1, 2, 4, 3, 32, 32), "5 dimensions"),
    (torch.rand(1, 4, 1, 32, 32), "3 \\(RGB\\) channels .* got 1"),
    (torch.rand(1, 4, 4, 32, 32), "3 \\(RGB\\) channels .* got 4"),
    (torch.rand(1, 4, 32, 32, 3), "channels-last"),
    ((torch.rand(1, 4, 3, 32, 32) * 255).to(torch.uint8), "float tensor .* uint8"),
    (torch.rand(1, 4, 3, 30, 32), "multiples of the patch size 16"),
    (torch.rand(1, 9, 3, 32, 32), "9 frames, which do not split into 2 equal clips"),
    (torch.rand(1, 4, 3, 48, 32), "position embedding is for 32x32"),
    (torch.rand(0, 4, 3, 32, 32), "empty"),
    (torch.rand(1, 0, 3, 32, 32), "empty"),
    ([[0.0]], "must be a torch.Tensor"),
])
def test_bad_videos(model, video, message):
    with pytest.raises(ValueError, match=message):
        model(video)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_video(model, value):
    video = torch.rand(1, 4, 3, 32, 32)
    video[0, 2, 1, 5, 5] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(video)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.forward_features(video)


def test_bad_frames_and_states(model):
    state = model.init_state(2)
    with pytest.raises(ValueError, match=r"4 dimensions .*goes to model\(video\)"):
        model.step(torch.rand(2, 1, 3, 32, 32), state)
    with pytest.raises(ValueError, match="needs a batch axis"):
        model.step(torch.rand(3, 32, 32), state)
    with pytest.raises(ValueError, match="state does not fit frame"):
        model.step(torch.rand(3, 3, 32, 32), state)
    with pytest.raises(ValueError, match="must be a TRecViTState"):
        model.step(torch.rand(2, 3, 32, 32), {"lru": None})
    frame = torch.rand(2, 3, 32, 32)
    frame[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model.step(frame, state)
    with pytest.raises(ValueError, match="reset mask"):
        state.reset(torch.tensor([True]))
    with pytest.raises(ValueError, match="batch_size"):
        model.init_state(0)
    with pytest.raises(ValueError, match="position embedding"):
        model.init_state(1, image_size=64)


def test_a_failed_call_leaves_the_state_usable(model):
    state = model.init_state(1)
    frame = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        out1, state1 = model.step(frame, state)
        with pytest.raises(ValueError):
            model.step(torch.full_like(frame, float("nan")), state1)
        out2, _ = model.step(frame, state1)
    assert state1.num_frames.item() == 1 and bool(torch.isfinite(out2.logits).all())
