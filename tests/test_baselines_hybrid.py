"""The hybrid baselines of the paper's Table 2: TRecViT with an LSTM, a causal temporal convolution
or causal temporal self-attention as temporal block (``vit_lstm``, ``vit_conv1d``, ``vit_tsa``).

Each test runs for the three models: shapes and registration, frame-level causality,
streaming frame by frame equal to the full forward (also past ``frames_per_clip``, and
clip by clip with resets when a video makes several clips), the state's size (constant,
or growing by one frame for the attention cache), ``state.reset(mask)``, gradients,
saving and loading, the two attention modes, the FLOP formula, ``temporal_skip`` and the
config checks.
"""

from __future__ import annotations

import pytest
import torch

from trecvit.architectures import build_model, get_architecture
from trecvit.baselines.hybrid import HEAD_FIELDS, HybridViT
from trecvit.baselines.vit_conv1d import Conv1DState, ViTConv1D, ViTConv1DConfig
from trecvit.baselines.vit_lstm import LSTMState, ViTLSTM, ViTLSTMConfig
from trecvit.baselines.vit_tsa import TSAState, ViTTemporalAttention, ViTTSAConfig
from trecvit.checkpoints.auto import from_pretrained as load_pretrained
from trecvit.layers.attention import use_attention
from trecvit.tools.profiling import count_flops

FPC = 3  # frames_per_clip of the tiny models
N = 17  # tokens per frame: a 4x4 grid of 8x8 patches on 32x32 frames, plus the class token
MODELS = {"vit_lstm": ViTLSTM, "vit_conv1d": ViTConv1D, "vit_tsa": ViTTemporalAttention}


def _model(cls: type[HybridViT], seed: int = 0, **overrides) -> HybridViT:
    fields = dict(width=32, depth=2, num_heads=2, mlp_dim=64, image_size=32, patch_size=8,
                  num_classes=5, rep_size=16, frames_per_clip=FPC)
    fields.update(overrides)
    torch.manual_seed(seed)
    model = cls(cls.config_class(**fields))
    with torch.no_grad():  # move zero-initialised parameters away from zero so they all matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=list(MODELS))
def cls(request) -> type[HybridViT]:
    return MODELS[request.param]


def _stream(model: HybridViT, video: torch.Tensor, state=None):
    """Step through ``video [b, t, 3, H, W]``: (per-frame outputs, final state)."""
    state = model.init_state(video.shape[0]) if state is None else state
    outs = []
    for frame in video.unbind(1):
        out, state = model.step(frame, state)
        outs.append(out)
    return outs, state


def _streams(state, index: slice):
    """The streams ``index`` of a state (the temporal fields have their batch axis second)."""
    return type(state)(*(t[index] if f in HEAD_FIELDS else t[:, index]
                         for f, t in zip(state._fields, state)))


def test_shapes_and_registration(cls):
    model = _model(cls)
    video = torch.rand(2, 2 * FPC, 3, 32, 32)  # two clips
    with torch.no_grad():
        out = model(video)
    assert out.logits.shape == out.probs.shape == (2, 5)
    assert out.pre_logits.shape == (2, 2, 16)
    assert out.encoded.shape == (4, FPC, N, 32)  # (b c, t/c, n, d)
    assert model.num_clips(2 * FPC) == 2 and model.num_clips(2 * FPC - 1) == 1
    step_out, state = model.step(video[:, 0], model.init_state(2))
    assert isinstance(state, cls.state_class)
    assert step_out.encoded.shape == (2, N, 32)
    assert step_out.logits.shape == step_out.probs.shape == (2, 5)
    assert step_out.pre_logits.shape == (2, 16)
    assert get_architecture(cls.arch).model_class is cls
    built = build_model(cls.arch, "mu", image_size=32, frames_per_clip=4, num_classes=7)
    assert isinstance(built, cls) and isinstance(built.config, cls.config_class)
    assert built(torch.rand(1, 4, 3, 32, 32)).logits.shape == (1, 7)
    with pytest.raises(ValueError, match="video"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="clips"):
        model(torch.rand(1, 2 * FPC + 1, 3, 32, 32))  # 7 frames do not make 2 equal clips


@torch.no_grad()
def test_causal_at_the_frame_level(cls):
    model = _model(cls)
    video = torch.rand(1, FPC, 3, 32, 32)
    changed = video.clone()
    changed[:, 1:] = torch.rand_like(changed[:, 1:])  # frames 1.. differ
    a, b = model.forward_features(video), model.forward_features(changed)
    torch.testing.assert_close(a[:, :1], b[:, :1], atol=0, rtol=0)  # frame 0 untouched
    assert not torch.allclose(a[:, 1:], b[:, 1:], atol=1e-4)
    early = video.clone()  # and later frames do see earlier ones
    early[:, 0] = torch.rand_like(early[:, 0])
    assert not torch.allclose(a[:, 2], model.forward_features(early)[:, 2], atol=1e-4)


@torch.no_grad()
def test_conv1d_sees_only_its_receptive_field():
    """No recurrence: with depth 2 and kernel width 2, frame 3 sees frames 1..3 only."""
    model = _model(ViTConv1D, conv1d_width=2, frames_per_clip=4)
    video = torch.rand(1, 4, 3, 32, 32)
    changed = video.clone()
    changed[:, 0] = torch.rand_like(changed[:, 0])
    a, b = model.forward_features(video), model.forward_features(changed)
    torch.testing.assert_close(a[:, 3], b[:, 3], atol=0, rtol=0)
    assert not torch.allclose(a[:, 2], b[:, 2], atol=1e-4)


@torch.no_grad()
def test_step_equals_forward_including_past_frames_per_clip(cls):
    """A video of FPC + 2 < 2 FPC frames is one clip; the stream goes past frames_per_clip and
    agrees with the forward frame by frame; step_chunk does the same in one call."""
    model = _model(cls)
    video = torch.rand(2, FPC + 2, 3, 32, 32)
    assert model.num_clips(video.shape[1]) == 1
    full = model(video)
    outs, state = _stream(model, video)
    for t, out in enumerate(outs):
        torch.testing.assert_close(out.encoded, full.encoded[:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[-1].logits, full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[-1].probs, full.probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[-1].pre_logits, full.pre_logits[:, 0], atol=1e-5, rtol=1e-5)
    assert state.num_frames.tolist() == [FPC + 2] * 2
    assert all(bool(torch.isfinite(t.float()).all()) for t in state)
    chunk, chunk_state = model.step_chunk(video[:, :2], model.init_state(2))  # two frames at once,
    rest, _ = model.step_chunk(video[:, 2:], chunk_state)  # then the others: the same outputs
    torch.testing.assert_close(torch.cat([chunk.encoded, rest.encoded], 1), full.encoded,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest.logits[:, -1], full.logits, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_several_clips_stream_clip_by_clip_with_resets(cls):
    """With 2 FPC frames forward cuts two clips and restarts the temporal state; a stream
    never restarts by itself, so it matches clip 1 only after ``state.reset()``."""
    model = _model(cls)
    video = torch.rand(1, 2 * FPC, 3, 32, 32)
    full = model(video)  # encoded (2, FPC, n, d)
    first, state = _stream(model, video[:, :FPC])
    second, _ = _stream(model, video[:, FPC:], state.reset())
    for t in range(FPC):
        torch.testing.assert_close(first[t].encoded, full.encoded[0:1, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(second[t].encoded, full.encoded[1:2, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((first[-1].logits + second[-1].logits) / 2, full.logits,
                               atol=1e-5, rtol=1e-5)
    unbroken, _ = _stream(model, video[:, FPC:], state)  # without the reset: one long stream
    assert not torch.allclose(unbroken[-1].encoded, full.encoded[1:2, -1], atol=1e-4)


@torch.no_grad()
def test_state_size_constant_or_growing_by_one_frame(cls):
    model = _model(cls)
    state = model.init_state(2)
    shapes = {"vit_lstm": {"h": (2, 2, N, 32), "c": (2, 2, N, 32)},  # (depth, b, n, k)
              "vit_conv1d": {"conv": (2, 2, 3, N, 64)},  # (depth, b, k-1, n, l)
              "vit_tsa": {"keys": (2, 2, N, 2, 0, 16), "values": (2, 2, N, 2, 0, 16)}}[cls.arch]
    assert {f: tuple(getattr(state, f).shape) for f in shapes} == shapes
    assert state.feature_sum.shape == (2, 16) and state.num_frames.shape == (2,)
    assert all(t.dtype == torch.float32 for t in state[:-1]) and state.num_frames.dtype == torch.int64
    assert state.batch_size == 2
    sizes = [state.nbytes()]
    for _ in range(2 * FPC + 1):
        _, state = model.step(torch.rand(2, 3, 32, 32), state)
        sizes.append(state.nbytes())
    growth = {s - r for r, s in zip(sizes, sizes[1:])}
    if cls is ViTTemporalAttention:  # one frame of keys and values per layer and step
        assert growth == {2 * 2 * 2 * N * 32 * 4} and state.keys.shape[4] == 2 * FPC + 1
        assert state.reset().keys.shape[4] == 0  # a full reset empties the cache
    else:
        assert growth == {0}
    with pytest.raises(ValueError, match="state"):
        model.step(torch.rand(3, 3, 32, 32), state)  # 3 frames for a state of 2 streams
    with pytest.raises(ValueError, match="state must be a"):
        model.step(torch.rand(2, 3, 32, 32), tuple(state))
    with pytest.raises(ValueError, match="float32"):
        model.step(torch.rand(2, 3, 32, 32), state._replace(feature_sum=state.feature_sum.double()))


@torch.no_grad()
def test_reset_mask_restarts_only_the_selected_streams(cls):
    model = _model(cls)
    before, after = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32)
    _, state = _stream(model, before)
    reset = state.reset(torch.tensor([True, False]))
    assert isinstance(reset, cls.state_class) and reset.num_frames.tolist() == [0, 2]
    assert not reset.feature_sum[0].any() and torch.equal(reset.feature_sum[1], state.feature_sum[1])
    outs, _ = _stream(model, after, reset)
    fresh, _ = _stream(model, after[:1])  # stream 0 as a new stream
    kept, _ = _stream(model, after[1:], _streams(state, slice(1, 2)))  # stream 1 alone, carried on
    for t in range(2):
        torch.testing.assert_close(outs[t].encoded[:1], fresh[t].encoded, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outs[t].logits[:1], fresh[t].logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outs[t].encoded[1:], kept[t].encoded, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outs[t].logits[1:], kept[t].logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mask"):
        state.reset(torch.tensor([True]))


def test_gradients_reach_every_parameter(cls):
    model = _model(cls).train()
    video = torch.rand(2, FPC, 3, 32, 32)
    model(video).logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)  # the same gradients, the activations recomputed
    model(video).logits.sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-5)


def test_round_trip_through_save_pretrained(cls, tmp_path):
    model = _model(cls, temporal_skip=False)
    model.save_pretrained(tmp_path / cls.arch)
    loaded = load_pretrained(tmp_path / cls.arch)
    assert type(loaded) is cls and loaded.config == model.config
    video = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video).logits, model(video).logits, atol=0, rtol=0)


@torch.no_grad()
def test_naive_and_fused_attention_agree(cls):
    model = _model(cls)
    video = torch.rand(2, FPC, 3, 32, 32)
    with use_attention("naive"):
        naive, (naive_step, _) = model(video), _stream(model, video)
    with use_attention("fused"):
        fused, (fused_step, _) = model(video), _stream(model, video)
    torch.testing.assert_close(naive.encoded, fused.encoded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(naive.logits, fused.logits, atol=1e-5, rtol=1e-5)
    for a, b in zip(naive_step, fused_step):
        torch.testing.assert_close(a.encoded, b.encoded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_frames,batch,overrides", [
    (FPC, 1, {}), (2 * FPC, 2, {}), (4, 1, dict(rep_size=0, pool_type="gap"))])
def test_analytic_flops_equal_count_flops(cls, num_frames, batch, overrides):
    model = _model(cls, **overrides)
    video = torch.rand(batch, num_frames, 3, 32, 32)
    with torch.no_grad():
        counted = count_flops(lambda: model(video))
    assert cls.analytic_flops(model.config, num_frames, batch) == counted


@torch.no_grad()
def test_temporal_skip_false_changes_the_output_and_nothing_else(cls):
    with_skip, without = _model(cls), _model(cls, temporal_skip=False)
    shapes = {k: v.shape for k, v in with_skip.state_dict().items()}
    assert shapes == {k: v.shape for k, v in without.state_dict().items()}  # no tensor removed
    without.load_state_dict(with_skip.state_dict())
    video = torch.rand(1, FPC, 3, 32, 32)
    assert not torch.allclose(with_skip(video).logits, without(video).logits, atol=1e-4)
    block = without.encoder.blocks[0].temporal  # module(norm(x)), no skip
    x = torch.randn(1, FPC, N, 32)
    torch.testing.assert_close(block(x)[0], block.mixer(block.norm(x))[0], atol=0, rtol=0)
    skip = with_skip.encoder.blocks[0].temporal  # the same weights, plus x
    torch.testing.assert_close(skip(x)[0], x + block(x)[0], atol=1e-6, rtol=1e-6)
    assert cls.analytic_flops(without.config, FPC) == cls.analytic_flops(with_skip.config, FPC)
    outs, _ = _stream(without, video)  # and it streams as the forward
    torch.testing.assert_close(outs[-1].logits, without(video).logits, atol=1e-5, rtol=1e-5)


def test_lstm_is_explicit_and_initialised_as_a_standard_lstm():
    model = ViTLSTM(ViTLSTMConfig(width=32, depth=1, num_heads=2, mlp_dim=64, image_size=32,
                                  patch_size=8, lstm_width=24))
    assert not any(isinstance(m, torch.nn.LSTM) for m in model.modules())
    lstm = model.encoder.blocks[0].temporal.mixer
    assert lstm.input_proj.weight.shape == (96, 32) and lstm.recurrent_proj.weight.shape == (96, 24)
    assert lstm.out.weight.shape == (32, 24)
    bound = 24 ** -0.5
    assert lstm.input_proj.weight.abs().max() <= bound and lstm.recurrent_proj.weight.abs().max() <= bound
    bias = lstm.input_proj.bias.detach()
    assert torch.equal(bias[24:48], torch.ones(24)) and not bias[:24].any() and not bias[48:].any()


def test_configs_and_bad_values_naming_the_field():
    assert ViTLSTMConfig(width=64, num_heads=4).lstm_width == 64  # None means width
    assert ViTConv1DConfig(width=64, num_heads=4).lru_width == 128
    for config_class in (ViTLSTMConfig, ViTConv1DConfig, ViTTSAConfig):
        config = config_class.from_variant("mu", image_size=32, frames_per_clip=4, num_classes=3)
        assert config.temporal_skip is True and config.width == 32
        assert config_class.from_dict(config.to_dict()) == config
        assert config.replace(temporal_skip=False).temporal_skip is False
        with pytest.raises(ValueError, match="temporal_skip"):
            config_class(temporal_skip="no")
        with pytest.raises(ValueError, match="frames_per_clip"):
            config_class(frames_per_clip=0)
        with pytest.raises(ValueError, match="num_heads"):
            config_class(width=32, num_heads=3)
        with pytest.raises(ValueError, match="unknown"):
            config_class.from_dict({"no_such_field": 1})
    with pytest.raises(ValueError, match="lstm_width"):
        ViTLSTMConfig(lstm_width=0)
    with pytest.raises(ValueError, match="conv1d_width"):
        ViTConv1DConfig(conv1d_width=0)
    with pytest.raises(TypeError, match="ViTLSTMConfig"):
        ViTLSTM(ViTTSAConfig())
    assert {ViTLSTM.state_class, ViTConv1D.state_class, ViTTemporalAttention.state_class} == {
        LSTMState, Conv1DState, TSAState}
