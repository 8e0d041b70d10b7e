"""The ablation switches of TRecViTConfig (the paper's Table 1 and the issue's extras).

Off, each keeps the official model (the parity tests cover the numbers; here: the same
parameters, and official checkpoints never load with one on). On, each makes the change it
names, streams exactly like the full clip, stays causal, trains every parameter and is
recorded by a checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from trecvit import TRecViT, TRecViTConfig
from trecvit.architectures import get_architecture
from trecvit.checkpoints.auto import from_pretrained
from trecvit.checkpoints.official import load_official_checkpoint, model_from_official_params
from trecvit.config import ABLATION_DEFAULTS
from trecvit.layers import TemporalBlock
from trecvit.layers.rglru import RGLRU
from trecvit.tools.profiling import count_flops

from conftest import FIXTURES, tiny_config, tiny_model

SWITCHES = {
    "no-gates": dict(lru_gates=False),
    "no-conv": dict(temporal_conv=False),
    "no-skip": dict(temporal_skip=False),
    "space-time": dict(block_order="space_time"),
    "last-frame": dict(readout="last"),
    "all": dict(lru_gates=False, temporal_conv=False, temporal_skip=False, block_order="space_time",
                readout="last"),
}


def video(t: int = 6, b: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, t, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_the_defaults_are_the_official_model():
    config = TRecViTConfig()
    assert config.ablations() == {}
    assert {k: getattr(config, k) for k in ABLATION_DEFAULTS} == ABLATION_DEFAULTS
    official = {k for k, _ in TRecViT(tiny_config()).named_parameters()}
    explicit = {k for k, _ in TRecViT(tiny_config(**ABLATION_DEFAULTS)).named_parameters()}
    assert official == explicit


@pytest.mark.parametrize("npz", ["tiny_tok_learn.ckpt.npz", "tiny_gap_sincos_2clips.ckpt.npz"])
def test_an_official_checkpoint_never_loads_with_a_switch_on(npz):
    model = load_official_checkpoint(FIXTURES / npz)
    assert model.config.ablations() == {}
    params = dict(np.load(FIXTURES / npz))
    params = {k: v for k, v in params.items() if not k.startswith(("config/", "out/", "video"))}
    for fields in SWITCHES.values():
        with pytest.raises(ValueError, match="ablation switches"):
            model_from_official_params(params, model.config.replace(**fields))


@pytest.mark.parametrize("name", list(SWITCHES))
def test_step_equals_the_full_clip_and_the_model_is_causal(name):
    model = tiny_model(frames_per_clip=6, **SWITCHES[name])
    clip = video()
    with torch.no_grad():
        full = model(clip)
        state = model.init_state(2)
        steps = []
        for frame in clip.unbind(1):
            out, state = model.step(frame, state)
            steps.append(out.encoded)
        torch.testing.assert_close(torch.stack(steps, 1), full.encoded, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.logits, full.logits, atol=1e-5, rtol=0)
        changed = clip.clone()
        changed[:, 4:] = torch.rand_like(changed[:, 4:])
        later = model(changed).encoded
    torch.testing.assert_close(later[:, :4], full.encoded[:, :4], atol=0, rtol=0)
    assert not torch.allclose(later[:, 4:], full.encoded[:, 4:])


@pytest.mark.parametrize("name", list(SWITCHES))
def test_gradients_reach_every_parameter(name):
    model = tiny_model(**SWITCHES[name]).train()
    model(video(t=4)).logits.square().sum().backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_no_gates_removes_both_gates_and_runs_the_plain_recurrence():
    model = tiny_model(lru_gates=False)
    names = [k for k, _ in model.named_parameters()]
    assert not any("input_gate" in k or "a_gate" in k for k in names)
    assert any("a_param" in k for k in names)
    lru = RGLRU(8, 2, 0.6, 0.9, gates=False)
    c = torch.randn(2, 5, 3, 8)
    with torch.no_grad():
        h, last = lru(c)
    a = torch.exp(-F.softplus(lru.a_param))  # the learnt eigenvalue, in [0.6, 0.9] at init
    assert bool(((a >= 0.6 - 1e-6) & (a <= 0.9 + 1e-6)).all())
    expected, prev = [], torch.zeros(2, 3, 8)
    for t in range(5):
        prev = a * prev + (1.0 if t == 0 else torch.sqrt(1 - a ** 2)) * c[:, t]
        expected.append(prev)
    torch.testing.assert_close(h, torch.stack(expected, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, expected[-1], atol=1e-5, rtol=1e-5)


def test_no_conv_removes_the_convolution_and_its_state():
    model = tiny_model(temporal_conv=False)
    assert not any("conv1d" in k for k, _ in model.named_parameters())
    state = model.init_state(2)
    assert state.conv.shape[2] == 0
    block = TemporalBlock(32, 64, 2, conv=False)
    x = torch.randn(1, 3, 2, 32)
    with torch.no_grad():
        y, conv_state, _ = block(x)
        u = block.norm(x)
        h, _ = block.rg_lru(block.linear_x(u))
        expected = x + block.linear_out(h * F.gelu(block.linear_y(u), approximate="tanh"))
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-6)
    assert conv_state.shape == (1, 0, 2, 64)


def test_no_skip_drops_exactly_the_residual():
    torch.manual_seed(0)
    with_skip = TemporalBlock(32, 64, 2)
    without = TemporalBlock(32, 64, 2, skip=False)
    without.load_state_dict(with_skip.state_dict())
    x = torch.randn(2, 4, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(with_skip(x)[0] - without(x)[0], x, atol=1e-6, rtol=0)


def test_space_time_runs_the_spatial_block_first():
    model = tiny_model(block_order="space_time")
    layer = model.encoder.blocks[0]
    x = torch.randn(2, 4, model.config.num_tokens, 32)
    with torch.no_grad():
        y, _, _ = layer(x)
        expected, _, _ = layer.temporal(layer.spatial(x))
    torch.testing.assert_close(y, expected, atol=0, rtol=0)
    official = tiny_model()  # same seed, same weights, other order
    with torch.no_grad():
        assert not torch.allclose(official(video()).logits, model(video()).logits)


def test_last_frame_readout_classifies_from_the_last_frame_of_each_clip():
    model = tiny_model(readout="last", frames_per_clip=3)
    clip = video(t=6)
    with torch.no_grad():
        out = model(clip)  # two clips of 3 frames
        features = model.head.frame_features(out.encoded)  # (b c, t, r)
        torch.testing.assert_close(out.pre_logits.flatten(0, 1), features[:, -1])
        expected = model.head(features[:, -1]).view(2, 2, -1).mean(1)
        torch.testing.assert_close(out.logits, expected)
        state = model.init_state(2)
        for t, frame in enumerate(clip[:, :3].unbind(1)):
            step, state = model.step(frame, state)
            torch.testing.assert_close(step.pre_logits, features[0::2, t].float(), atol=1e-6, rtol=0)


def test_a_checkpoint_records_the_switches(tmp_path):
    model = tiny_model(**SWITCHES["all"])
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in ABLATION_DEFAULTS} == SWITCHES["all"]
    loaded = from_pretrained(tmp_path)
    assert loaded.config.ablations() == SWITCHES["all"]
    clip = video()
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip).logits, model(clip).logits, atol=0, rtol=0)


def test_analytic_flops_count_the_gates_only_when_they_exist():
    for fields in ({}, dict(lru_gates=False)):
        model = tiny_model(**fields)
        clip = video(t=4, b=1)
        with torch.no_grad():
            counted = count_flops(lambda: model(clip))
        assert TRecViT.analytic_flops(model.config, 4) == counted


@pytest.mark.parametrize("field, value", [("lru_gates", "no"), ("temporal_conv", 0), ("temporal_skip", None),
                                          ("block_order", "spacetime"), ("readout", "max")])
def test_bad_switch_values_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_the_other_architectures_take_the_switches_that_apply_to_them():
    small = dict(width=32, depth=1, num_heads=2, mlp_dim=64, image_size=32, num_classes=5, rep_size=0,
                 frames_per_clip=4)
    clip = video(t=4)
    for arch, fields in [("vit_lstm", dict(temporal_skip=False, block_order="space_time", readout="last")),
                         ("vit_conv1d", dict(block_order="space_time")),
                         ("pure_lru", dict(lru_gates=False, temporal_conv=False, temporal_skip=False,
                                           readout="last")),
                         ("frame_average", dict(readout="last"))]:
        entry = get_architecture(arch)
        model = entry.model_class(entry.model_class.config_class(**small, **fields)).eval()
        with torch.no_grad():
            assert model(clip).logits.shape == (2, 5)
    refused = [("vit_lstm", "lru_gates", False, "RG-LRU"), ("vit_tsa", "temporal_conv", False, "RG-LRU"),
               ("pure_lru", "block_order", "space_time", "spatial"),
               ("frame_average", "temporal_skip", False, "no temporal block")]
    for arch, field, value, why in refused:
        entry = get_architecture(arch)
        with pytest.raises(ValueError, match=f"{field}.*{why}"):
            entry.model_class(entry.model_class.config_class(**small, **{field: value}))
