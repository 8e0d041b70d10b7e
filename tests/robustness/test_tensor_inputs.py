"""Hostile tensors at the API boundary, property-based over input shapes and model configs.

For ``model(video)``, ``model.embed``, ``model.forward_features``, ``model.step``,
``model.step_chunk``, ``model.init_state`` and the baseline ``FrameAverageViT``:

* every bad input (NaN/inf anywhere, absurd magnitudes, wrong rank, wrong channel
  count, channels-last, an empty batch, zero frames, frames smaller than a patch,
  sides that are not multiples of the patch, a non-float dtype, a non-tensor, a frame
  size that the learnt position embedding does not fit, a state of the wrong type,
  shape, batch, dtype or with NaN in it) raises a ``ValueError`` whose message names
  the problem;
* every valid input (any float dtype, with or without bfloat16 autocast) gives finite
  outputs of the documented shapes.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from conftest import tiny_config, tiny_model
from trecvit import TRecViTState
from trecvit.baselines import FrameAverageViT

SEED = os.environ.get("TRECVIT_FUZZ_SEED")  # another seed: other cases (default: derandomized, fixed)
SETTINGS = dict(deadline=None, derandomize=SEED is None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


@st.composite
def configs(draw) -> dict:
    """Small TRecViT configs: patch 2-8, 1x1 to 3x3 patch grids, width 8-32, depth 1-2."""
    patch = draw(st.sampled_from([2, 4, 8]))
    grid = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    width = draw(st.sampled_from([8, 16, 32]))
    return dict(patch_size=patch, image_size=(grid[0] * patch, grid[1] * patch), width=width,
                num_heads=draw(st.sampled_from([1, 2])), mlp_dim=2 * width,
                depth=draw(st.integers(1, 2)), posemb=draw(st.sampled_from(["learn", "sincos2d"])),
                pool_type=draw(st.sampled_from(["tok", "gap"])), frames_per_clip=draw(st.integers(1, 4)),
                rep_size=draw(st.sampled_from([0, 8])), num_classes=draw(st.integers(2, 5)))


@functools.lru_cache(maxsize=64)
def _build(kind: str, key: tuple):
    cfg = dict(key)
    if kind == "baseline":
        torch.manual_seed(0)
        return FrameAverageViT(tiny_config(**cfg)).eval()
    return tiny_model(**cfg)


def build(cfg: dict, kind: str = "trecvit"):
    return _build(kind, tuple(sorted(cfg.items())))


def frame_hw(draw, cfg: dict) -> tuple[int, int]:
    """A valid frame size: the config's, or (sin-cos position embedding) any patch grid."""
    if cfg["posemb"] == "learn" or draw(st.booleans()):
        return cfg["image_size"]
    p = cfg["patch_size"]
    return draw(st.integers(1, 3)) * p, draw(st.integers(1, 3)) * p


def tokens_per_frame(cfg: dict, hw: tuple[int, int]) -> int:
    p = cfg["patch_size"]
    return (hw[0] // p) * (hw[1] // p) + (cfg["pool_type"] == "tok")


def pixels(shape, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) * scale).to(dtype)


def finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t.float()).all()) for t in tensors)


# ------------------------------------------------------------------------------ valid inputs
@settings(max_examples=150, **SETTINGS)
@hypothesis_seed(int(SEED or 0))
@given(data=st.data(), cfg=configs(), b=st.integers(1, 3), t=st.integers(1, 8),
       dtype=st.sampled_from(FLOAT_DTYPES), autocast=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_valid_inputs_give_finite_outputs_of_the_documented_shapes(data, cfg, b, t, dtype, autocast, seed):
    model = build(cfg)
    hw = frame_hw(data.draw, cfg)
    c = model.num_clips(t)
    assume(t % c == 0)
    # frames are RGB in [0, 1]; values up to 255 (forgotten / 255) or 1e6 are accepted too
    scale = data.draw(st.sampled_from([1.0, 255.0] if dtype in (torch.float16, torch.bfloat16)
                                      else [1.0, 255.0, 1e6]))
    video = pixels((b, t, 3, *hw), dtype, seed, scale)
    n, d = tokens_per_frame(cfg, hw), cfg["width"]
    r, k = cfg["rep_size"] or d, cfg["num_classes"]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(video)
        assert out.logits.shape == (b, k) and out.probs.shape == (b, k)
        assert out.pre_logits.shape == (b, c, r) and out.encoded.shape == (b * c, t // c, n, d)
        assert finite(out.logits, out.probs, out.pre_logits, out.encoded)
        torch.testing.assert_close(out.probs.sum(-1), torch.ones(b), atol=1e-3, rtol=0)
        tokens = model.embed(video)
        assert tokens.shape == (b * c, t // c, n, d) and finite(tokens)
        features = model.forward_features(video)
        assert features.shape == (b * c, t // c, n, d) and finite(features)

        state = model.init_state(b, image_size=hw)
        shapes = [s.shape for s in state]
        assert shapes == [(cfg["depth"], b, 3, n, 2 * d), (cfg["depth"], b, n, 2 * d), (b, r), (b,)]
        for i in range(min(t, 3)):
            step, state = model.step(video[:, i], state)
            assert step.encoded.shape == (b, n, d) and step.logits.shape == (b, k)
            assert step.probs.shape == (b, k) and step.pre_logits.shape == (b, r)
            assert finite(step.encoded, step.logits, step.probs, step.pre_logits, *state)
            assert [s.shape for s in state] == shapes and state.num_frames.tolist() == [i + 1] * b
        chunk, chunk_state = model.step_chunk(video, model.init_state(b, image_size=hw))
        assert chunk.encoded.shape == (b, t, n, d) and chunk.logits.shape == (b, t, k)
        assert chunk.probs.shape == (b, t, k) and chunk.pre_logits.shape == (b, t, r)
        assert finite(chunk.encoded, chunk.logits, *chunk_state)
        assert [s.shape for s in chunk_state] == shapes and chunk_state.num_frames.tolist() == [t] * b

        base = build(cfg, "baseline")(video)
        assert base.logits.shape == (b, k) and base.encoded.shape == (b, t, n, d)
        assert finite(base.logits, base.probs, base.encoded)


@settings(max_examples=25, **SETTINGS)
@hypothesis_seed(int(SEED or 0))
@given(cfg=configs(), b=st.integers(1, 3), t=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_step_chunk_equals_step_and_one_clip_forward(cfg, b, t, seed):
    """step_chunk is t calls of step; on a fresh state, its last logits are the one-clip forward's."""
    model = build(cfg)
    video = pixels((b, t, 3, *cfg["image_size"]), torch.float32, seed)
    with torch.inference_mode():
        state = model.init_state(b)
        for i in range(t):
            step, state = model.step(video[:, i], state)
            chunk, _ = model.step_chunk(video[:, : i + 1], model.init_state(b))
            torch.testing.assert_close(chunk.encoded[:, -1], step.encoded, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(chunk.logits[:, -1], step.logits, atol=1e-5, rtol=1e-5)
        _, chunk_state = model.step_chunk(video, model.init_state(b))
        for ours, theirs in zip(chunk_state, state):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        if model.num_clips(t) == 1:
            torch.testing.assert_close(chunk.logits[:, -1], model(video).logits, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ bad tensors
ENTRY_POINTS = ["forward", "embed", "forward_features", "step", "step_chunk", "baseline"]
# corruption -> the words the error must contain (a regular expression)
CORRUPTIONS = {
    "nan": r"holds \d+ NaN or infinite",
    "inf": r"holds \d+ NaN or infinite",
    "huge": r"holds \d+ (NaN or infinite value|value\(s\) beyond \+-1e\+06)",
    "rank_up": r"must have [45] dimensions",
    "rank_down": r"must have [45] dimensions",
    "channels": r"must have 3 \(RGB\) channels .* got \d+",
    "channels_last": r"channels-last",
    "empty_batch": r"is empty: .*0 batch",
    "zero_frames": r"is empty: .*0 frames",
    "zero_height": r"is empty: .*0 height",
    "smaller_than_patch": r"smaller than one \d+x\d+ patch",
    "not_multiple": r"multiples of the patch size",
    "int_dtype": r"must be a float tensor",
    "complex_dtype": r"must be a float tensor",
    "not_a_tensor": r"must be a torch\.Tensor",
    "learnt_posemb_size": r"position embedding",
    "clip_split": r"do not split into \d+ equal clips",
}


def corrupt(draw, kind: str, cfg: dict, x: torch.Tensor) -> object:
    """``x`` (``[b, t, 3, h, w]`` or ``[b, 3, h, w]``, valid) made bad in the way ``kind`` says."""
    p = cfg["patch_size"]
    if kind in ("nan", "inf", "huge"):
        x = x.clone()
        index = tuple(draw(st.integers(0, s - 1)) for s in x.shape)
        value = {"nan": float("nan"), "inf": draw(st.sampled_from([float("inf"), float("-inf")])),
                 "huge": draw(st.sampled_from([-1e30, -2e6, 1e7, 1e20, 3e38]))}[kind]
        x[index] = value
        return x
    if kind == "rank_up":
        return x[None]
    if kind == "rank_down":
        return x[0] if draw(st.booleans()) else x.flatten(0, 1)
    if kind == "channels":
        c = draw(st.sampled_from([1, 2, 4, 6]))
        return torch.rand(*x.shape[:-3], c, *x.shape[-2:], dtype=x.dtype)
    if kind == "channels_last":
        return x.movedim(-3, -1)
    if kind == "empty_batch":
        return x[:0]
    if kind == "zero_frames":
        return x[:, :0]
    if kind == "zero_height":
        return x[..., :0, :]
    if kind == "smaller_than_patch":
        assume(p > 1)
        side = draw(st.integers(1, p - 1))
        return x[..., :side, :] if draw(st.booleans()) else x[..., :, :side]
    if kind == "not_multiple":
        extra = draw(st.integers(1, p - 1))
        return torch.rand(*x.shape[:-1], x.shape[-1] + extra, dtype=x.dtype)
    if kind == "int_dtype":
        return (x.float() * 255).to(draw(st.sampled_from([torch.uint8, torch.int64, torch.int32, torch.bool])))
    if kind == "complex_dtype":
        return x.float().to(torch.complex64)
    if kind == "not_a_tensor":
        return draw(st.sampled_from([x.float().numpy(), x.tolist(), None, 0.5]))
    if kind == "learnt_posemb_size":
        assume(cfg["posemb"] == "learn")
        h, w = cfg["image_size"]
        return torch.rand(*x.shape[:-2], h + p, w, dtype=x.dtype)
    if kind == "clip_split":
        bad = [n for n in range(2, 13) if n % max(n // cfg["frames_per_clip"], 1)]
        assume(bad)
        return x[:, :1].expand(-1, draw(st.sampled_from(bad)), -1, -1, -1).clone()
    raise AssertionError(kind)


def call(entry: str, cfg: dict, x: object, hw: tuple[int, int]):
    """Feed ``x`` to ``entry``; ``x`` is a video except for ``step`` (a frame batch)."""
    if entry == "baseline":
        return build(cfg, "baseline")(x)
    model = build(cfg)
    if entry == "step":
        return model.step(x, model.init_state(1, image_size=hw))
    if entry == "step_chunk":
        return model.step_chunk(x, model.init_state(1, image_size=hw))
    return getattr(model, {"forward": "__call__"}.get(entry, entry))(x)


@settings(max_examples=600, **SETTINGS)
@hypothesis_seed(int(SEED or 0))
@given(data=st.data(), cfg=configs(), entry=st.sampled_from(ENTRY_POINTS),
       kind=st.sampled_from(sorted(CORRUPTIONS)), t=st.integers(1, 4),
       dtype=st.sampled_from(FLOAT_DTYPES), autocast=st.booleans())
def test_bad_tensors_raise_value_errors_naming_the_problem(data, cfg, entry, kind, t, dtype, autocast):
    if kind == "clip_split":  # only the full-clip entry points cut videos into clips
        assume(entry in ("forward", "embed", "forward_features"))
    if kind == "zero_frames":
        assume(entry != "step")
    model = build(cfg)
    t -= t % model.num_clips(t)  # a valid video, then made bad
    video = pixels((1, t, 3, *cfg["image_size"]), dtype, seed=t)
    x = corrupt(data.draw, kind, cfg, video[:, 0] if entry == "step" else video)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with pytest.raises(ValueError, match=CORRUPTIONS[kind]):
            call(entry, cfg, x, cfg["image_size"])


def test_channels_last_and_rank_hints_for_step():
    model = tiny_model(patch_size=8, image_size=16)
    state = model.init_state(2, image_size=16)
    with pytest.raises(ValueError, match="channels-last"):
        model.step(torch.rand(2, 16, 16, 3), state)
    with pytest.raises(ValueError, match=r"smaller than one 8x8 patch"):
        model.step(torch.rand(2, 3, 4, 16), state)
    with pytest.raises(ValueError, match=r"smaller than one 8x8 patch"):
        model(torch.rand(1, 2, 3, 16, 4))


def test_values_too_large_for_the_model_dtype_are_refused():
    """A float64 frame whose finite values float32 cannot hold would turn into inf inside the
    model; so would a float32 value beyond float16 for a half-precision model."""
    model = tiny_model(patch_size=8, image_size=16)
    video = torch.rand(1, 2, 3, 16, 16, dtype=torch.float64)
    video[0, 1, 2, 3, 4] = 1e300
    with pytest.raises(ValueError, match=r"holds 1 value\(s\) beyond"):
        model(video)
    half = tiny_model(patch_size=8, image_size=16).half()
    frame = torch.rand(1, 3, 16, 16)
    frame[0, 0, 0, 0] = 1e5
    with pytest.raises(ValueError, match=r"too large for torch.float16"):
        half.step(frame, half.init_state(1))


# ------------------------------------------------------------------------------ bad states
STATE_CORRUPTIONS = {
    "dict": r"state must be a TRecViTState .*got dict",
    "plain_tuple": r"state must be a TRecViTState .*TRecViTState\(\*state\)",
    "none": r"state must be a TRecViTState .*got NoneType",
    "field_not_tensor": r"state\.\w+ must be a torch\.Tensor",
    "batch": r"state does not fit .*holds \d+ streams but frames? has \d+",
    "frame_size": r"state does not fit .*state\.conv is .*expected",
    "other_model": r"state does not fit .*expected",
    "feature_sum_shape": r"state\.feature_sum is .*expected",
    "num_frames_shape": r"state\.num_frames is .*expected",
    "float_dtype": r"state\.(conv|lru|feature_sum) must be torch\.float32, got",
    "count_dtype": r"state\.num_frames must be torch\.int64, got",
    "nan": r"state\.(conv|lru|feature_sum) holds \d+ NaN or infinite",
    "negative_count": r"state\.num_frames holds negative frame counts",
}


def corrupt_state(draw, kind: str, cfg: dict, model, b: int, hw: tuple[int, int]) -> object:
    state = model.init_state(b, image_size=hw)
    field = draw(st.sampled_from(["conv", "lru", "feature_sum"]))
    if kind == "dict":
        return state._asdict()
    if kind == "plain_tuple":
        return tuple(state)
    if kind == "none":
        return None
    if kind == "field_not_tensor":
        return state._replace(**{draw(st.sampled_from(TRecViTState._fields)): draw(
            st.sampled_from([None, 0.0, np.zeros(3)]))})
    if kind == "batch":
        return model.init_state(b + draw(st.integers(1, 2)), image_size=hw)
    if kind == "frame_size":
        assume(cfg["posemb"] == "sincos2d")
        p = cfg["patch_size"]
        return model.init_state(b, image_size=(hw[0] + p, hw[1]))
    if kind == "other_model":
        change = draw(st.sampled_from([dict(depth=3 - cfg["depth"]), dict(width=2 * cfg["width"]),
                                       dict(conv1d_width=2)]))
        return build({**cfg, **change}).init_state(b, image_size=hw)
    if kind == "feature_sum_shape":
        return state._replace(feature_sum=torch.zeros(b, model.head.feature_dim + 1))
    if kind == "num_frames_shape":
        return state._replace(num_frames=torch.zeros(b, 1, dtype=torch.int64))
    if kind == "float_dtype":
        to = draw(st.sampled_from([torch.float64, torch.bfloat16, torch.float16]))
        return state._replace(**{field: getattr(state, field).to(to)})
    if kind == "count_dtype":
        return state._replace(num_frames=state.num_frames.to(draw(st.sampled_from(
            [torch.int32, torch.float32, torch.bool]))))
    if kind == "nan":
        value = getattr(state, field).clone()
        flat = value.view(-1)
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from(
            [float("nan"), float("inf"), float("-inf")]))
        # a stream in the middle of its sequence (at num_frames == 0 the state would be ignored)
        return state._replace(**{field: value, "num_frames": torch.full((b,), 5)})
    if kind == "negative_count":
        counts = state.num_frames.clone()
        counts[draw(st.integers(0, b - 1))] = -draw(st.integers(1, 10))
        return state._replace(num_frames=counts)
    raise AssertionError(kind)


@settings(max_examples=300, **SETTINGS)
@hypothesis_seed(int(SEED or 0))
@given(data=st.data(), cfg=configs(), kind=st.sampled_from(sorted(STATE_CORRUPTIONS)),
       b=st.integers(1, 3), chunk=st.booleans())
def test_bad_states_raise_value_errors_naming_the_problem(data, cfg, kind, b, chunk):
    model = build(cfg)
    hw = frame_hw(data.draw, cfg)
    state = corrupt_state(data.draw, kind, cfg, model, b, hw)
    video = pixels((b, 2, 3, *hw), torch.float32, seed=b)
    with torch.inference_mode(), pytest.raises(ValueError, match=STATE_CORRUPTIONS[kind]):
        if chunk:
            model.step_chunk(video, state)
        else:
            model.step(video[:, 0], state)


# ------------------------------------------------------------------------------ init_state
@settings(max_examples=60, **SETTINGS)
@hypothesis_seed(int(SEED or 0))
@given(cfg=configs(), batch_size=st.sampled_from([0, -1, 1.5, "2", True, None, [2]]))
def test_init_state_refuses_bad_batch_sizes(cfg, batch_size):
    with pytest.raises(ValueError, match=r"batch_size must be"):
        build(cfg).init_state(batch_size)


@settings(max_examples=80, **SETTINGS)
@hypothesis_seed(int(SEED or 0))
@given(cfg=configs(), data=st.data())
def test_init_state_refuses_bad_image_sizes(cfg, data):
    p = cfg["patch_size"]
    h, w = cfg["image_size"]
    cases = [(0, r"image_size must be >= 1"), (-p, r"image_size must be >= 1"),
             ((h, 0), r"image_size\[1\] must be >= 1"), (2.5, r"image_size must be an integer"),
             ("16", r"image_size must be an integer"), ((h,), r"an int or an \(H, W\) pair"),
             ((h, w, 3), r"an int or an \(H, W\) pair"), ((h, w + 1), r"multiples of the patch size"),
             ((h + p, w) if cfg["posemb"] == "learn" else (h, w + 1),
              r"position embedding" if cfg["posemb"] == "learn" else r"multiples of the patch size")]
    if p > 1:
        cases.append(((p - 1, w), r"smaller than one \d+x\d+ patch"))
    image_size, message = data.draw(st.sampled_from(cases))
    with pytest.raises(ValueError, match=message):
        build(cfg).init_state(1, image_size=image_size)


@settings(max_examples=30, **SETTINGS)
@hypothesis_seed(int(SEED or 0))
@given(cfg=configs(), batch_size=st.sampled_from([1, 2, np.int64(3), torch.tensor(2)]))
def test_init_state_accepts_integer_likes(cfg, batch_size):
    state = build(cfg).init_state(batch_size, image_size=torch.Size(cfg["image_size"]))
    assert state.batch_size == int(batch_size)
    assert state.conv.dtype == state.lru.dtype == state.feature_sum.dtype == torch.float32
