"""PureLRU (the paper's Figure 4 baseline): one RG-LRU sequence over the flattened video.

Checks shapes, frame-level causality, that streaming frame by frame gives the full
forward (one clip; and clip by clip with resets when a video makes several clips,
since a stream never restarts by itself), the constant state, gradients, saving and
loading, the FLOP formula, the config checks and ``state.reset(mask)``.
"""

from __future__ import annotations

import pytest
import torch

from trecvit.architectures import build_model, get_architecture
from trecvit.baselines.pure_lru import PureLRU, PureLRUConfig
from trecvit.checkpoints.auto import from_pretrained as load_pretrained
from trecvit.layers.attention import use_attention
from trecvit.state import TRecViTState
from trecvit.tools.profiling import count_flops

FPC = 3  # frames_per_clip of the tiny model
N = 16  # tokens per frame: a 4x4 grid of 8x8 patches on 32x32 frames


def _config(**overrides) -> PureLRUConfig:
    fields = dict(width=32, depth=2, num_heads=2, mlp_dim=64, image_size=32, patch_size=8,
                  num_classes=5, rep_size=16, frames_per_clip=FPC)
    fields.update(overrides)
    return PureLRUConfig(**fields)


def _model(seed: int = 0, **overrides) -> PureLRU:
    torch.manual_seed(seed)
    model = PureLRU(_config(**overrides))
    with torch.no_grad():  # move zero-initialised parameters away from zero so they all matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def _stream(model: PureLRU, video: torch.Tensor, state: TRecViTState | None = None):
    """Step through ``video [b, t, 3, H, W]``: (per-frame outputs, final state)."""
    state = model.init_state(video.shape[0]) if state is None else state
    outs = []
    for frame in video.unbind(1):
        out, state = model.step(frame, state)
        outs.append(out)
    return outs, state


def test_shapes_and_registration():
    model = _model()
    video = torch.rand(2, 2 * FPC, 3, 32, 32)  # two clips
    with torch.no_grad():
        out = model(video)
    assert out.logits.shape == out.probs.shape == (2, 5)
    assert out.pre_logits.shape == (2, 2, 16)
    assert out.encoded.shape == (4, FPC, N, 32)  # (b c, t/c, n, d)
    assert model.num_clips(2 * FPC) == 2 and model.num_clips(2 * FPC - 1) == 1
    step_out, state = model.step(video[:, 0], model.init_state(2))
    assert step_out.encoded.shape == (2, N, 32)
    assert step_out.logits.shape == step_out.probs.shape == (2, 5)
    assert step_out.pre_logits.shape == (2, 16)
    assert get_architecture("pure_lru").model_class is PureLRU
    built = build_model("pure_lru", "mu", image_size=32, frames_per_clip=4, num_classes=7)
    assert isinstance(built, PureLRU) and built.config.pool_type == "gap"
    assert built(torch.rand(1, 4, 3, 32, 32)).logits.shape == (1, 7)
    with pytest.raises(ValueError, match="video"):
        model(torch.rand(2, 3, 32, 32))


def test_causal_at_the_frame_level():
    model = _model()
    video = torch.rand(1, FPC, 3, 32, 32)
    changed = video.clone()
    changed[:, 1:] = torch.rand_like(changed[:, 1:])  # frames 1.. differ
    with torch.no_grad():
        a, b = model.forward_features(video), model.forward_features(changed)
    torch.testing.assert_close(a[:, :1], b[:, :1], atol=0, rtol=0)  # frame 0 untouched
    assert not torch.allclose(a[:, 1:], b[:, 1:], atol=1e-4)
    # and later frames do see earlier ones: changing frame 0 only changes frame 2's output
    early = video.clone()
    early[:, 0] = torch.rand_like(early[:, 0])
    with torch.no_grad():
        c = model.forward_features(early)
    assert not torch.allclose(a[:, 2], c[:, 2], atol=1e-4)


@torch.no_grad()
def test_step_equals_forward_including_past_frames_per_clip():
    """A video of FPC + 2 < 2 FPC frames is one clip; the stream goes past frames_per_clip
    (the last temporal embedding is reused by both) and agrees frame by frame."""
    model = _model()
    video = torch.rand(2, FPC + 2, 3, 32, 32)
    assert model.num_clips(video.shape[1]) == 1
    full = model(video)
    outs, state = _stream(model, video)
    for t, out in enumerate(outs):
        torch.testing.assert_close(out.encoded, full.encoded[:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[-1].logits, full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[-1].pre_logits, full.pre_logits[:, 0], atol=1e-5, rtol=1e-5)
    assert state.num_frames.tolist() == [FPC + 2] * 2
    chunk, chunk_state = model.step_chunk(video, model.init_state(2))  # one call, same result
    torch.testing.assert_close(chunk.encoded, full.encoded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunk.logits[:, -1], full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunk_state.lru, state.lru, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_several_clips_stream_clip_by_clip_with_resets():
    """With 2 FPC frames forward cuts two clips and restarts the recurrence; a stream never
    restarts by itself, so it matches clip 1 only after ``state.reset()``, and the mean of
    the two clip logits is the forward's logits."""
    model = _model()
    video = torch.rand(1, 2 * FPC, 3, 32, 32)
    full = model(video)  # encoded (2, FPC, n, d)
    first, state = _stream(model, video[:, :FPC])
    second, _ = _stream(model, video[:, FPC:], state.reset())
    for t in range(FPC):
        torch.testing.assert_close(first[t].encoded, full.encoded[0:1, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(second[t].encoded, full.encoded[1:2, t], atol=1e-5, rtol=1e-5)
    mean_logits = (first[-1].logits + second[-1].logits) / 2
    torch.testing.assert_close(mean_logits, full.logits, atol=1e-5, rtol=1e-5)
    unbroken, _ = _stream(model, video[:, FPC:], state)  # without the reset: one long sequence
    assert not torch.allclose(unbroken[0].encoded, full.encoded[1:2, 0], atol=1e-4)


@torch.no_grad()
def test_state_has_constant_size_and_one_position():
    model = _model()
    state = model.init_state(2)
    assert state.conv.shape == (2, 2, 3, 1, 64)  # (depth, b, k-1, 1, l)
    assert state.lru.shape == (2, 2, 1, 64)  # (depth, b, 1, l)
    assert state.feature_sum.shape == (2, 16) and state.num_frames.shape == (2,)
    assert state.conv.dtype == state.lru.dtype == state.feature_sum.dtype == torch.float32
    assert state.num_frames.dtype == torch.int64
    size = state.nbytes()
    for _ in range(2 * FPC + 1):
        _, state = model.step(torch.rand(2, 3, 32, 32), state)
        assert state.nbytes() == size
    with pytest.raises(ValueError, match="state"):
        model.step(torch.rand(3, 3, 32, 32), state)  # 3 frames for a state of 2 streams


@torch.no_grad()
def test_reset_mask_restarts_only_the_selected_streams():
    model = _model()
    before, after = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32)
    _, state = _stream(model, before)
    reset = state.reset(torch.tensor([True, False]))
    assert reset.num_frames.tolist() == [0, 2]
    outs, _ = _stream(model, after, reset)
    fresh, _ = _stream(model, after[:1])  # stream 0 as a new stream
    kept, _ = _stream(model, after[1:], TRecViTState(*(t[:, 1:] if t.dim() > 2 else t[1:]
                                                       for t in state)))
    for t in range(2):
        torch.testing.assert_close(outs[t].encoded[:1], fresh[t].encoded, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outs[t].logits[1:], kept[t].logits, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    model = _model().train()
    model(torch.rand(2, FPC, 3, 32, 32)).logits.sum().backward()  # every temporal embedding used
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(torch.rand(2, FPC, 3, 32, 32)).logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_round_trip_through_save_pretrained(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "pure_lru")
    loaded = load_pretrained(tmp_path / "pure_lru")
    assert isinstance(loaded, PureLRU) and loaded.config == model.config
    video = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video).logits, model(video).logits, atol=0, rtol=0)


@torch.no_grad()
def test_no_attention_so_both_attention_modes_agree():
    model = _model()
    video = torch.rand(1, FPC, 3, 32, 32)
    with use_attention("naive"):
        naive = model(video).logits
    with use_attention("fused"):
        fused = model(video).logits
    torch.testing.assert_close(naive, fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_frames,batch", [(FPC, 1), (2 * FPC, 2)])
def test_analytic_flops_equal_count_flops(num_frames, batch):
    model = _model()
    video = torch.rand(batch, num_frames, 3, 32, 32)
    with torch.no_grad():
        counted = count_flops(lambda: model(video))
    assert PureLRU.analytic_flops(model.config, num_frames, batch) == counted
    no_rep = _model(rep_size=0)
    with torch.no_grad():
        counted = count_flops(lambda: no_rep(video))
    assert PureLRU.analytic_flops(no_rep.config, num_frames, batch) == counted


def test_bad_config_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="pool_type"):
        _config(pool_type="tok")
    with pytest.raises(ValueError, match="posemb"):
        _config(posemb="sincos2d")
    with pytest.raises(ValueError, match="frames_per_clip"):
        _config(frames_per_clip=0)
    with pytest.raises(ValueError, match="pool_type"):
        PureLRUConfig.from_variant("mu", pool_type="tok")
    assert PureLRUConfig().pool_type == "gap"
