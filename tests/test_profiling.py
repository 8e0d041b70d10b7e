"""FLOP counts, the profiler, and long bfloat16 streams."""

from __future__ import annotations

import json

import pytest
import torch

from trecvit import TRecViT, TRecViTConfig
from trecvit.cli import main
from trecvit.tools.profiling import analytic_flops, count_flops, format_table, profile_model

from conftest import tiny_model


@pytest.mark.parametrize("overrides", [
    {}, {"pool_type": "gap", "rep_size": 0, "posemb": "sincos2d"}, {"frames_per_clip": 2},
])
@pytest.mark.parametrize("frames", [1, 4, 6])
def test_counted_flops_equal_the_analytic_count(overrides, frames):
    model = tiny_model(image_size=(32, 48), **overrides).eval()
    video = torch.rand(2, frames, 3, 32, 48)
    with torch.inference_mode():
        counted = count_flops(lambda: model(video))
    assert counted == analytic_flops(model.config, frames, batch_size=2)


def test_analytic_flops_of_trecvit_b():
    # 8 frames of 224 x 224: 197 tokens, 12 layers; every matmul, the attention and the head.
    config = TRecViTConfig.from_variant("B", num_classes=400)
    assert analytic_flops(config, 8) == 429_779_189_760
    classifier = 2 * 3072 * 400  # once per clip: 8 and 16 frames are both one clip
    assert analytic_flops(config, 16) - classifier == 2 * (analytic_flops(config, 8) - classifier)


def test_profile_rows_and_table():
    rows = profile_model("mu", [2, 4], size=32, repeats=1, memory=False)
    assert [r.frames for r in rows] == [2, 4]
    config = TRecViTConfig.from_variant("mu", image_size=32, num_classes=400, frames_per_clip=32)
    assert rows[1].gflops * 1e9 == pytest.approx(analytic_flops(config, 4))
    assert rows[0].params == TRecViT(config).num_parameters()
    stream = profile_model("mu", [5], size=32, repeats=2, stream=True, memory=False)
    assert stream[0].state_mb > 0 and len(stream[0].latency_runs) == 2
    assert "frames/s" in format_table(rows, stream=False)


@pytest.mark.slow
def test_profile_cli_prints_a_table_and_saves_a_plot(tmp_path, capsys):
    png, js = tmp_path / "cost.png", tmp_path / "cost.json"
    assert main(["profile", "--variant", "mu", "--frames", "2,4", "--size", "32", "--repeats", "1",
                 "--plot", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "peak MB" in out and "GFLOPs" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(js.read_text())["rows"]
    assert [r["frames"] for r in rows] == [2, 4] and all(r["peak_memory_mb"] is not None for r in rows)


def test_profile_cli_rejects_bad_frames(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--variant", "mu", "--frames", "2,x"])
    assert exit_info.value.code == 2
    assert "--frames" in capsys.readouterr().err


@pytest.mark.slow
def test_long_bfloat16_stream_keeps_a_float32_state_and_stays_finite():
    model = tiny_model().eval()
    frames = torch.rand(8, 1, 3, 32, 32)
    with torch.inference_mode():
        f32 = bf16 = model.init_state(1)
        for t in range(3000):
            frame = frames[t % 8] if t % 500 else torch.ones_like(frames[0])  # with sudden cuts
            out32, f32 = model.step(frame, f32)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out16, bf16 = model.step(frame, bf16)
            if t % 250 == 0:
                assert bf16.lru.dtype == torch.float32 and bf16.conv.dtype == torch.float32
                assert torch.isfinite(bf16.lru).all() and torch.isfinite(out16.logits).all()
    assert bf16.lru.abs().max() < 1e3  # bounded: |h| <= max|x| / (1 - a) with a < 1
    torch.testing.assert_close(out16.probs.float(), out32.probs, atol=0.05, rtol=0)


def test_profile_refuses_bad_device_and_existing_outputs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--variant", "mu", "--device", "nonsense"])
    assert exit_info.value.code == 2 and "not a torch device" in capsys.readouterr().err
    existing = tmp_path / "cost.json"
    existing.write_text("keep me")
    assert main(["profile", "--variant", "mu", "--size", "32", "--json", str(existing)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert existing.read_text() == "keep me"
    assert main(["profile", "--variant", "mu", "--size", "32", "--plot", str(tmp_path / "no" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
