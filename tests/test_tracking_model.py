"""The point tracker: causality, query independence, step equals the clip, queries joining a stream,
gradients, the losses, save/load and bad input."""

from __future__ import annotations

import pytest
import torch

from trecvit import TRecViT, TRecViTConfig
from trecvit.tracking import PointTracker, TrackerConfig
from trecvit.tracking.loss import tracking_loss


def tiny_tracker(seed: int = 0, **readout) -> PointTracker:
    torch.manual_seed(seed)
    enc = TRecViTConfig(width=32, depth=2, num_heads=2, mlp_dim=64, image_size=32, patch_size=8,
                        num_classes=3, rep_size=0, frames_per_clip=4)
    fields = dict(width=32, depth=2, num_heads=2, num_frequencies=4)
    fields.update(readout)
    return PointTracker(TrackerConfig(encoder=enc, **fields)).eval()


def queries_for(b: int = 2) -> torch.Tensor:
    q = torch.tensor([[0.0, 0.5, 0.5], [2.0, 0.1, 0.9], [4.0, 0.8, 0.25]])
    return q.expand(b, 3, 3).clone()


@pytest.fixture(scope="module")
def tracker():
    return tiny_tracker()


def test_shapes_and_visibility_rule(tracker):
    video = torch.rand(2, 6, 3, 32, 32)
    out = tracker(video, queries_for())
    assert out.positions.shape == (2, 3, 6, 2)
    assert out.visibility.shape == out.certainty.shape == (2, 3, 6)
    expected = torch.sigmoid(out.visibility) * torch.sigmoid(out.certainty) > 0.5
    assert torch.equal(out.visible, expected)
    # up to its query frame a point is the query itself, marked visible
    assert torch.allclose(out.positions[:, 1, :3], queries_for()[:, 1, None, 1:].expand(2, 3, 2))
    assert out.visible[:, 2, :5].all()


def test_step_equals_the_clip_and_queries_join_mid_stream(tracker):
    torch.manual_seed(1)
    video = torch.rand(2, 7, 3, 32, 32)
    queries = queries_for()
    full = tracker(video, queries)
    state = tracker.init_state(queries[:, :1])
    steps = []
    for t in range(7):
        if t == 2:  # the points queried at frames 2 and 4 join when the stream is at frame 2
            state = tracker.add_queries(state, queries[:, 1:])
        out, state = tracker.step(video[:, t], state)
        steps.append(out)
    first = torch.cat([o.positions[:, :1] for o in steps], dim=2)
    torch.testing.assert_close(first, full.positions[:, :1], atol=1e-5, rtol=0)
    late = torch.cat([o.positions[:, 1:] for o in steps[2:]], dim=2)
    torch.testing.assert_close(late, full.positions[:, 1:, 2:], atol=1e-5, rtol=0)
    for name in ("visibility", "certainty"):
        a = torch.cat([getattr(o, name)[:, 1:] for o in steps[2:]], dim=2)
        torch.testing.assert_close(a, getattr(full, name)[:, 1:, 2:], atol=1e-5, rtol=0)


def test_causal_in_time(tracker):
    torch.manual_seed(2)
    video = torch.rand(1, 6, 3, 32, 32)
    changed = video.clone()
    changed[:, 4:] = torch.rand(1, 2, 3, 32, 32)
    a, b = tracker(video, queries_for(1)), tracker(changed, queries_for(1))
    torch.testing.assert_close(a.positions[..., :4, :], b.positions[..., :4, :], atol=1e-6, rtol=0)
    assert not torch.allclose(a.positions[..., 4:, :], b.positions[..., 4:, :])


def test_tracks_are_independent_of_each_other(tracker):
    torch.manual_seed(3)
    video = torch.rand(1, 6, 3, 32, 32)
    queries = queries_for(1)
    together = tracker(video, queries)
    for k in range(3):
        alone = tracker(video, queries[:, k:k + 1])
        torch.testing.assert_close(alone.positions[:, 0], together.positions[:, k], atol=1e-6, rtol=0)
        torch.testing.assert_close(alone.visibility[:, 0], together.visibility[:, k], atol=1e-6, rtol=0)
    # another query point, or moving one, changes nothing for the others
    moved = queries.clone()
    moved[0, 2] = torch.tensor([1.0, 0.3, 0.3])
    other = tracker(video, moved)
    torch.testing.assert_close(other.positions[:, :2], together.positions[:, :2], atol=1e-6, rtol=0)


def test_a_point_before_its_query_frame_has_no_state_and_reports_the_query(tracker):
    video = torch.rand(1, 5, 3, 32, 32)
    q = torch.tensor([[[0.0, 0.2, 0.2], [3.0, 0.5, 0.5]]])
    state = tracker.init_state(q)
    for t in range(5):
        out, state = tracker.step(video[:, t], state)
        if t <= 3:
            assert torch.equal(out.positions[0, 1, 0], q[0, 1, 1:])
        if t < 3:
            assert torch.equal(state.latent[0, 1], torch.zeros_like(state.latent[0, 1]))
        else:
            assert state.latent[0, 1].abs().sum() > 0
    assert state.latent[0, 0].abs().sum() > 0


def test_losses_and_gradients_reach_every_readout_parameter():
    model = tiny_tracker().train()
    model.freeze_encoder()
    video = torch.rand(2, 5, 3, 32, 32)
    queries = queries_for()
    queries[..., 0] = torch.tensor([0.0, 1.0, 2.0])
    targets = queries[:, :, None, 1:].expand(2, 3, 5, 2).clone() + 0.05
    occluded = torch.zeros(2, 3, 5, dtype=torch.bool)
    occluded[:, 0, 3] = True
    out = model(video, queries)
    loss = tracking_loss(out, targets, occluded, queries, torch.tensor([[True, True, False]] * 2))
    assert torch.isfinite(loss.total) and loss.position > 0 and loss.visibility > 0
    loss.total.backward()
    missing = [n for n, p in model.readout.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert all(p.grad is None for p in model.encoder.parameters())


def test_position_loss_counts_visible_frames_from_the_query_on():
    b, n, t = 1, 1, 4
    positions = torch.zeros(b, n, t, 2)
    positions[0, 0, 0] = 0.5  # before the query frame: not counted
    positions[0, 0, 2] = 0.5  # occluded: not counted
    out = (positions, torch.zeros(b, n, t), torch.zeros(b, n, t))
    from trecvit.tracking.model import TrackingOutput

    occluded = torch.tensor([[[False, False, True, False]]])
    q = torch.tensor([[[1.0, 0.0, 0.0]]])
    loss = tracking_loss(TrackingOutput(*out), torch.zeros(b, n, t, 2), occluded, q)
    assert loss.position == 0
    # one pixel off in x (of 256) on the counted frames: Huber 0.5 * 1^2 with delta 4
    shifted = TrackingOutput(positions + torch.tensor([1 / 256, 0.0]), *out[1:])
    loss = tracking_loss(shifted, torch.zeros(b, n, t, 2), occluded, q)
    assert loss.position.item() == pytest.approx(0.5, rel=1e-4)


def test_save_and_load_round_trip(tmp_path, tracker):
    tracker.save_pretrained(tmp_path / "t")
    again = PointTracker.from_pretrained(tmp_path / "t")
    video, q = torch.rand(1, 3, 3, 32, 32), queries_for(1)[:, :1]
    torch.testing.assert_close(again(video, q).positions, tracker(video, q).positions)
    assert again.config == tracker.config


def test_a_classifier_folder_is_not_a_tracker(tmp_path):
    TRecViT(TRecViTConfig(width=32, depth=1, num_heads=2, mlp_dim=64, image_size=32, num_classes=2)
            ).save_pretrained(tmp_path / "c")
    with pytest.raises(ValueError, match="not a point tracker"):
        PointTracker.from_pretrained(tmp_path / "c")


def test_a_tracker_folder_where_a_classifier_is_expected_says_what_it_is(tmp_path, tracker):
    from trecvit.checkpoints.auto import load_model

    tracker.save_pretrained(tmp_path / "t")
    with pytest.raises(ValueError, match="point tracker"):
        load_model(tmp_path / "t")


@pytest.mark.parametrize("queries, match", [
    (torch.tensor([[[0.0, 1.2, 0.5]]]), "inside the frame"),
    (torch.tensor([[[0.0, 0.5, -0.1]]]), "inside the frame"),
    (torch.tensor([[[9.0, 0.5, 0.5]]]), "past the end"),
    (torch.tensor([[[0.5, 0.5, 0.5]]]), "whole frame"),
    (torch.tensor([[[0.0, float("nan"), 0.5]]]), "NaN"),
    (torch.zeros(1, 2), r"\[b=1, n, 3\]"),
])
def test_bad_queries(tracker, queries, match):
    with pytest.raises(ValueError, match=match):
        tracker(torch.rand(1, 4, 3, 32, 32), queries)


def test_bad_stream_input(tracker):
    state = tracker.init_state(torch.tensor([[[0.0, 0.5, 0.5]]]))
    _, state = tracker.step(torch.rand(1, 3, 32, 32), state)
    with pytest.raises(ValueError, match="in the past"):
        tracker.add_queries(state, torch.tensor([[[0.0, 0.2, 0.2]]]))
    with pytest.raises(ValueError, match="frame"):
        tracker.step(torch.rand(1, 3, 24, 24), state)  # another frame size than the state's
    with pytest.raises(ValueError, match="TrackerState"):
        tracker.step(torch.rand(1, 3, 32, 32), state.encoder)


def test_config_checks():
    with pytest.raises(ValueError, match="divisible"):
        TrackerConfig(width=30, num_heads=4)
    with pytest.raises(ValueError, match="unknown"):
        TrackerConfig.from_dict({"widht": 3})
    cfg = TrackerConfig(encoder=TRecViTConfig(width=32, depth=1, num_heads=2, mlp_dim=64), width=16, num_heads=2)
    assert TrackerConfig.from_dict(cfg.to_dict()) == cfg
