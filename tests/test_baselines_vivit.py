"""The ViViT baselines (Arnab et al. 2021): model 1 (``vivit``), the factorised encoder (``vivit_fe``),
factorised self-attention (``vivit_fsa``) and the causal cViViT (``cvivit``).

Checks shapes, the architecture table, gradients, saving and loading, both attention modes, the
FLOP formulas, the config checks, the temporal position embedding resampled for another video
length, the frame count refused when it does not cut into tubelets; for cViViT causality, that
streaming with its key/value cache equals the full forward (also past the learnt embedding's
length), the cache growing by ``n`` tokens per frame, ``state.reset(mask)`` and the refusal to
stream with longer tubelets.
"""

from __future__ import annotations

import pytest
import torch

from trecvit.architectures import build_model, get_architecture
from trecvit.baselines.cvivit import CausalViViT, CausalViViTConfig, CausalViViTState
from trecvit.baselines.vivit import SpaceTimePositionEmbedding, ViViT, ViViTConfig
from trecvit.baselines.vivit_fe import ViViTFactorisedEncoder
from trecvit.baselines.vivit_fsa import ViViTFactorisedSelfAttention, ViViTFSAConfig
from trecvit.checkpoints.auto import from_pretrained as load_pretrained
from trecvit.layers.attention import use_attention
from trecvit.tools.profiling import count_flops

FPC = 4  # frames_per_clip: the learnt temporal embedding's length in frames
N = 4  # tokens per tubelet-frame: a 2x2 grid of 16x16 patches on 32x32 frames
MODELS = {"vivit": (ViViT, ViViTConfig), "vivit_fe": (ViViTFactorisedEncoder, ViViTConfig),
          "vivit_fsa": (ViViTFactorisedSelfAttention, ViViTFSAConfig),
          "cvivit": (CausalViViT, CausalViViTConfig)}
ARCHS = list(MODELS)


def _config(arch: str, **overrides):
    fields = dict(width=32, depth=2, num_heads=2, mlp_dim=64, patch_size=16, image_size=32, num_classes=5,
                  rep_size=16, frames_per_clip=FPC, temporal_depth=1)
    fields.update(overrides)
    return MODELS[arch][1](**fields)


def _model(arch: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = MODELS[arch][0](_config(arch, **overrides))
    with torch.no_grad():  # move zero-initialised parameters away from zero so they all matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def _stream(model: CausalViViT, video: torch.Tensor, state: CausalViViTState | None = None):
    state = model.init_state(video.shape[0]) if state is None else state
    outs = []
    for frame in video.unbind(1):
        out, state = model.step(frame, state)
        outs.append(out)
    return outs, state


# expected encoded shape [b, frames, tokens, d] for a 2-video batch of FPC frames
ENCODED = {("vivit", "tok"): (2, 1, 1 + 2 * N, 32), ("vivit", "gap"): (2, 1, 2 * N, 32),
           ("vivit_fe", "tok"): (2, 1, 1 + 2, 32), ("vivit_fe", "gap"): (2, 1, 2, 32),
           ("vivit_fsa", "gap"): (2, 2, N, 32), ("cvivit", "gap"): (2, FPC, N, 32)}


@pytest.mark.parametrize("arch, pool", list(ENCODED))
def test_shapes_and_registration(arch, pool):
    model = _model(arch, pool_type=pool)
    with torch.no_grad():
        out = model(torch.rand(2, FPC, 3, 32, 32))
    assert out.logits.shape == out.probs.shape == (2, 5)
    assert out.pre_logits.shape == (2, 1, 16)
    assert out.encoded.shape == ENCODED[arch, pool]
    assert get_architecture(arch).model_class is MODELS[arch][0]
    built = build_model(arch, "mu", patch_size=16, image_size=32, frames_per_clip=4, num_classes=7)
    assert type(built) is MODELS[arch][0] and built.config.width == 32
    assert built(torch.rand(1, 4, 3, 32, 32)).logits.shape == (1, 7)
    with pytest.raises(ValueError, match="video"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(1, FPC, 3, 48, 32))
    if arch != "cvivit":
        with pytest.raises(ValueError, match="step"):
            model.require_streaming("streaming")


@pytest.mark.parametrize("arch", ARCHS)
def test_a_frame_count_that_does_not_cut_into_tubelets_is_refused(arch):
    model = _model(arch, tubelet_frames=2)
    with pytest.raises(ValueError, match="tubelet"):
        model(torch.rand(1, 3, 3, 32, 32))
    assert model(torch.rand(1, 2, 3, 32, 32)).logits.shape == (1, 5)


def test_temporal_position_embedding_resampling():
    torch.manual_seed(0)
    pe = SpaceTimePositionEmbedding(8, 2, 3, resample="nearest")
    nearest = pe.resampled(4)  # 2x longer: each temporal embedding twice
    assert nearest.shape == (1, 4, 3, 8)
    for i in range(2):
        torch.testing.assert_close(nearest[:, 2 * i], pe.pos_embed[:, i], atol=0, rtol=0)
        torch.testing.assert_close(nearest[:, 2 * i + 1], pe.pos_embed[:, i], atol=0, rtol=0)
    assert pe.resampled(2) is pe.pos_embed
    pe.resample = "linear"  # align_corners=False: half-pixel centres, clamped at the ends
    linear, (a, b) = pe.resampled(4), pe.pos_embed.unbind(1)
    for i, expected in enumerate((a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b)):
        torch.testing.assert_close(linear[:, i], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("arch", ["vivit", "vivit_fe", "vivit_fsa"])
@pytest.mark.parametrize("resample", ["nearest", "linear"])
def test_a_model_built_for_4_frames_runs_on_8(arch, resample):
    model = _model(arch, posemb_resample=resample)
    with torch.no_grad():
        out = model(torch.rand(1, 2 * FPC, 3, 32, 32))
    assert out.logits.shape == (1, 5) and torch.isfinite(out.logits).all()


def test_vivit_is_not_causal_and_cvivit_is():
    video = torch.rand(1, FPC, 3, 32, 32)
    changed = video.clone()
    changed[:, -1] = torch.rand_like(changed[:, -1])  # only the last frame differs
    with torch.no_grad():
        vivit = _model("vivit", pool_type="gap")
        a, b = vivit.forward_features(video), vivit.forward_features(changed)
    assert not torch.allclose(a[:, :, :N], b[:, :, :N], atol=1e-4)  # the first tubelet-frame sees it
    model = _model("cvivit")
    with torch.no_grad():
        a, b = model.forward_features(video), model.forward_features(changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1], atol=1e-6, rtol=1e-6)  # frames <= t unchanged
    assert not torch.allclose(a[:, -1], b[:, -1], atol=1e-4)
    early = video.clone()
    early[:, 0] = torch.rand_like(early[:, 0])
    with torch.no_grad():
        c = model.forward_features(early)
    assert not torch.allclose(a[:, -1], c[:, -1], atol=1e-4)  # later frames see earlier ones


def test_cvivit_with_two_frame_tubelets_is_causal_per_tubelet_but_does_not_stream():
    model = _model("cvivit", tubelet_frames=2)
    video = torch.rand(1, FPC, 3, 32, 32)
    changed = video.clone()
    changed[:, 2:] = torch.rand_like(changed[:, 2:])  # the second tubelet-frame
    with torch.no_grad():
        a, b = model.forward_features(video), model.forward_features(changed)
    assert a.shape == (1, 2, N, 32)
    torch.testing.assert_close(a[:, 0], b[:, 0], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="tubelet_frames = 1"):
        model.init_state(1)
    state = _model("cvivit").init_state(1)
    with pytest.raises(ValueError, match="tubelet_frames = 1"):
        model.step(video[:, 0], state)


@torch.no_grad()
@pytest.mark.parametrize("num_frames", [3, FPC + 2])  # shorter than, and past, the learnt embedding
def test_cvivit_step_equals_forward(num_frames):
    model = _model("cvivit")
    video = torch.rand(2, num_frames, 3, 32, 32)
    full = model(video)
    outs, state = _stream(model, video)
    for t, out in enumerate(outs):
        torch.testing.assert_close(out.encoded, full.encoded[:, t], atol=1e-5, rtol=1e-5)
        prefix = model(video[:, : t + 1])  # the running-mean logits are the prefix's logits
        torch.testing.assert_close(out.logits, prefix.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[-1].logits, full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[-1].pre_logits, full.pre_logits[:, 0], atol=1e-5, rtol=1e-5)
    assert state.num_frames.tolist() == [num_frames] * 2


@torch.no_grad()
def test_cvivit_cache_grows_by_n_tokens_per_frame():
    model = _model("cvivit")
    state = model.init_state(2)
    assert state.keys.shape == state.values.shape == (2, 2, 2, 0, 16)  # (depth, b, h, s, e)
    assert state.feature_sum.shape == (2, 16) and state.num_frames.dtype == torch.int64
    assert state.keys.dtype == state.feature_sum.dtype == torch.float32
    sizes = [state.nbytes()]
    for t in range(1, 4):
        _, state = model.step(torch.rand(2, 3, 32, 32), state)
        assert state.keys.shape == (2, 2, 2, t * N, 16) and state.num_cached == t * N
        sizes.append(state.nbytes())
    per_frame = 2 * 2 * 2 * 2 * N * 16 * 4  # keys and values, depth 2, b 2, h 2, e 16, float32
    assert [b - a for a, b in zip(sizes, sizes[1:])] == [per_frame] * 3
    with pytest.raises(ValueError, match="state"):
        model.step(torch.rand(3, 3, 32, 32), state)  # 3 frames for a state of 2 streams
    with pytest.raises(ValueError, match="CausalViViTState"):
        model.step(torch.rand(2, 3, 32, 32), tuple(state))
    assert state.reset().num_cached == 0 and state.reset().num_frames.tolist() == [0, 0]


@torch.no_grad()
def test_cvivit_reset_mask_restarts_only_the_selected_streams():
    model = _model("cvivit")
    before, after = torch.rand(2, 2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32)
    _, state = _stream(model, before)
    reset = state.reset(torch.tensor([True, False]))
    assert reset.num_frames.tolist() == [0, 2] and reset.num_cached == 2 * N
    outs, _ = _stream(model, after, reset)  # stream 0 fresh (its old tokens masked out)
    fresh, _ = _stream(model, after[:1])
    kept, _ = _stream(model, after[1:], CausalViViTState(state.keys[:, 1:], state.values[:, 1:],
                                                         state.feature_sum[1:], state.num_frames[1:]))
    for t in range(2):
        torch.testing.assert_close(outs[t].encoded[:1], fresh[t].encoded, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outs[t].logits[:1], fresh[t].logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(outs[t].logits[1:], kept[t].logits, atol=1e-5, rtol=1e-5)
    assert state.reset(torch.tensor([True, True])).num_cached == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_every_parameter(arch):
    model = _model(arch).train()
    model(torch.rand(2, FPC, 3, 32, 32)).logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(torch.rand(2, FPC, 3, 32, 32)).logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_through_save_pretrained(tmp_path, arch):
    model = _model(arch)
    model.save_pretrained(tmp_path / arch)
    loaded = load_pretrained(tmp_path / arch)
    assert type(loaded) is type(model) and loaded.config == model.config
    video = torch.rand(1, FPC, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video).logits, model(video).logits, atol=0, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("arch", ARCHS)
def test_naive_and_fused_attention_agree(arch):
    model = _model(arch)
    video = torch.rand(1, FPC, 3, 32, 32)
    with use_attention("naive"):
        naive = model(video)
    with use_attention("fused"):
        fused = model(video)
    torch.testing.assert_close(naive.encoded, fused.encoded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(naive.logits, fused.logits, atol=1e-5, rtol=1e-5)
    if arch == "cvivit":  # the cached step too
        with use_attention("naive"):
            a, _ = _stream(model, video)
        b, _ = _stream(model, video)
        torch.testing.assert_close(a[-1].encoded, b[-1].encoded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch, overrides", [(a, o) for a in ARCHS for o in ({}, {"rep_size": 0})]
                         + [("vivit", {"pool_type": "gap"}), ("vivit_fe", {"pool_type": "gap"}),
                            ("vivit", {"tubelet_frames": 1})])
@pytest.mark.parametrize("num_frames, batch", [(FPC, 1), (2 * FPC, 2)])
def test_analytic_flops_equal_count_flops(arch, overrides, num_frames, batch):
    model = _model(arch, **overrides)
    video = torch.rand(batch, num_frames, 3, 32, 32)
    for mode in ("fused", "naive"):
        with torch.no_grad(), use_attention(mode):
            counted = count_flops(lambda: model(video))
        assert MODELS[arch][0].analytic_flops(model.config, num_frames, batch) == counted


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_config_is_refused_naming_the_field(arch):
    for field, value in [("tubelet_frames", 0), ("frames_per_clip", 0), ("width", 31), ("posemb", "sincos2d"),
                         ("posemb_resample", "cubic"), ("rep_size", -1), ("temporal_depth", 0),
                         ("depth", True), ("image_size", 40)]:
        with pytest.raises(ValueError, match=field):
            _config(arch, **{field: value})
    with pytest.raises(ValueError, match="frames_per_clip"):
        _config(arch, tubelet_frames=3)  # 4 frames do not cut into 3-frame tubelets
    with pytest.raises(ValueError, match="pool_type"):
        _config(arch, pool_type="cls")
    config = _config(arch)
    assert config.replace() == config and MODELS[arch][1].from_dict(config.to_dict()) == config


def test_factorised_attention_and_cvivit_configs_pool_by_average():
    assert ViViTConfig().pool_type == "tok" and ViViTConfig().tubelet_frames == 2
    assert ViViTFSAConfig().pool_type == "gap"
    assert CausalViViTConfig().pool_type == "gap" and CausalViViTConfig().tubelet_frames == 1
    for cls in (ViViTFSAConfig, CausalViViTConfig):
        with pytest.raises(ValueError, match="pool_type"):
            cls(pool_type="tok")
        with pytest.raises(ValueError, match="pool_type"):
            cls.from_variant("mu", pool_type="tok")
        assert cls.from_variant("mu").pool_type == "gap"
