"""The efficiency study: its traced figures equal real runs, the options and outputs of the command."""

from __future__ import annotations

import json

import pytest
import torch

from trecvit.cli import main
from trecvit.tools import efficiency as eff
from trecvit.tools.profiling import TensorMemoryTracker, count_flops

SMALL = dict(size=32)


def real_costs(model, frames, size, attention):
    """What trace_costs measures, on real tensors."""
    from trecvit.layers.attention import use_attention

    video = torch.rand(1, frames, 3, size, size)
    with use_attention(attention):
        model.eval()
        with torch.inference_mode():
            flops = count_flops(lambda: model(video))
            with TensorMemoryTracker() as mem:
                model(video)
            inference = mem.peak_bytes
        model.train()
        with TensorMemoryTracker() as mem:
            model(video).logits.float().logsumexp(-1).mean().backward()
    return {"gflops": flops / 1e9, "inference_peak_bytes": inference, "train_peak_bytes": mem.peak_bytes}


@pytest.mark.parametrize("label", ["trecvit:mu", "frame_average:mu"])
@pytest.mark.parametrize("attention", ["naive", "fused"])
def test_fake_tensor_trace_equals_a_real_run(label, attention):
    spec = eff.parse_arch_specs(label)[0]
    traced = eff.trace_costs(spec.build(4, 32), 4, 32, attention)
    real = real_costs(spec.build(4, 32), 4, 32, attention)
    assert traced == real


def test_naive_attention_holds_the_scores_and_fused_does_not():
    spec = eff.parse_arch_specs("trecvit:mu:patch_size=2")[0]  # 256 patches a frame
    naive = eff.trace_costs(spec.build(2, 32), 2, 32, "naive")
    fused = eff.trace_costs(spec.build(2, 32), 2, 32, "fused")
    assert naive["gflops"] == fused["gflops"]
    scores = 2 * 2 * 257 * 257 * 4  # one layer's [b t, h, n, n] float32 scores
    assert naive["inference_peak_bytes"] >= fused["inference_peak_bytes"] + scores


def test_arch_specs_are_parsed_and_bad_ones_named():
    spec = eff.parse_arch_specs("trecvit:B, frame_average:S:rep_size=0")[1]
    assert (spec.arch, spec.variant, spec.overrides) == ("frame_average", "S", (("rep_size", 0),))
    assert spec.label == "frame_average:S:rep_size=0"
    assert spec.config(8, 64).rep_size == 0
    for bad, words in [("nonsense:B", "unknown architecture"), ("trecvit", "ARCH:VARIANT"),
                       ("trecvit:Q", "variant"), ("trecvit:B:depth", "FIELD=VALUE"),
                       ("trecvit:B:colour=3", "colour"), ("", "no architecture")]:
        with pytest.raises(ValueError, match=words):
            eff.parse_arch_specs(bad)


def test_compare_efficiency_rows_and_ratios():
    specs = eff.parse_arch_specs("trecvit:mu,frame_average:mu")
    rows = eff.compare_efficiency(specs, [2, 4], size=32, attentions=["fused"], latency_gflops=100)
    assert [(r.label, r.frames) for r in rows] == [("trecvit:mu", 2), ("trecvit:mu", 4),
                                                   ("frame_average:mu", 2), ("frame_average:mu", 4)]
    assert all(r.latency_s is not None and r.latency_s > 0 and not r.estimated for r in rows)
    assert 1.3 * rows[0].gflops < rows[1].gflops < 2 * rows[0].gflops  # per frame, plus one head
    q = eff.ratios(rows, "trecvit:mu")
    assert [(x["baseline"], x["frames"]) for x in q] == [("frame_average:mu", 2), ("frame_average:mu", 4)]
    assert q[0]["flops"] == pytest.approx(rows[2].gflops / rows[0].gflops)
    assert "frame_average:mu" in eff.format_rows(rows) and "x |" in eff.format_ratios(rows, "trecvit:mu")
    skipped = eff.compare_efficiency(specs[:1], [2], size=32, attentions=["fused"], latency_gflops=1e-9)
    assert skipped[0].latency_s is None and "latency not measured" in skipped[0].note


def test_trecvit_analytic_flops_is_what_the_trace_counts():
    spec = eff.parse_arch_specs("trecvit:mu")[0]
    traced = eff.trace_costs(spec.build(4, 32), 4, 32)
    assert eff.analytic_estimate(spec, 4, 32) == pytest.approx(traced["gflops"], rel=1e-9)


def test_stream_costs_of_trecvit_are_constant_in_state():
    spec = eff.parse_arch_specs("trecvit:mu")[0]
    (cost,) = eff.stream_costs([spec], 6, size=32)
    assert len(cost.latency_s) == len(cost.state_mb) == 6
    assert len(set(cost.state_mb)) == 1
    with pytest.raises(ValueError, match="frame by frame"):
        eff.stream_costs(eff.parse_arch_specs("frame_average:mu"), 2, size=32)


def test_the_command_writes_its_table_plot_and_stream_plot(tmp_path, capsys):
    out = {k: tmp_path / f"e.{k}" for k in ("json", "csv")}
    plot, stream = tmp_path / "e.png", tmp_path / "s.png"
    argv = ["compare-efficiency", "--archs", "trecvit:mu,frame_average:mu", "--reference", "trecvit:mu",
            "--frames", "2,4", "--size", "32", "--attention", "naive,fused", "--json", str(out["json"]),
            "--csv", str(out["csv"]), "--plot", str(plot), "--stream-plot", str(stream), "--stream-archs",
            "trecvit:mu", "--stream-frames", "4", "--stream-size", "32"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "ratios (baseline / trecvit:mu)" in text and "state MB" in text
    rows = json.loads(out["json"].read_text())
    assert len(rows) == 8
    for key in ("arch", "variant", "frames", "attention", "params", "gflops", "inference_peak_mb",
                "train_peak_mb", "latency_s", "estimated"):
        assert key in rows[0]
    assert out["csv"].read_text().startswith("arch,variant,settings,frames,attention,params,gflops")
    assert plot.read_bytes()[:4] == b"\x89PNG" and stream.read_bytes()[:4] == b"\x89PNG"
    # an existing output is refused before any measurement
    capsys.readouterr()
    assert main(argv) != 0
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--attention", "quick"], "naive"),
    (["--frames", "0"], "frame counts"),
])
def test_bad_options_are_refused(argv, words, capsys):
    with pytest.raises(SystemExit):
        main(["compare-efficiency", *argv])
    assert words in capsys.readouterr().err
