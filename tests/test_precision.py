"""Inference precisions (fp32, bf16, int8), the automatic choice, compile, the machine report,
and the accuracy bounds of bf16 and int8 against fp32 (on a briefly trained tiny classifier;
the demo model's check is ``benchmarks/run.py --only precision --demo-run DIR``)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from trecvit import TRecViT, TRecViTConfig
from trecvit.cli import main
from trecvit.tools import machine, precision
from trecvit.tools.machine import CPUFeatures, format_machine, machine_info, measure_matmul_rates
from trecvit.tools.precision import (InferenceModel, bf16_weights, compare_precisions, format_precision,
                                     prepare_model, resolve_precision, stream_drift)

from conftest import tiny_model

NUM_CLASSES = 6
COLOURS = torch.rand(NUM_CLASSES, 3, 1, 1, generator=torch.Generator().manual_seed(123))


def colour_clips(n: int, seed: int, frames: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips whose class is their mean colour, under heavy noise: an easy task a tiny model
    learns in a few steps, with predictions spread over all classes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    video = 0.45 * COLOURS[labels][:, None] + 0.55 * torch.rand(n, frames, 3, 32, 32, generator=g)
    return video, labels


@pytest.fixture(scope="module")
def trained():
    """A tiny TRecViT trained for 60 steps on :func:`colour_clips` (a few seconds; ~85% top-1)."""
    torch.manual_seed(0)
    model = TRecViT(TRecViTConfig(width=32, depth=1, num_heads=2, mlp_dim=64, image_size=32, patch_size=8,
                                  num_classes=NUM_CLASSES, rep_size=0, frames_per_clip=8, pool_type="gap"))
    videos, labels = colour_clips(320, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for step in range(60):
        idx = torch.arange(step * 32, step * 32 + 32) % len(videos)
        loss = torch.nn.functional.cross_entropy(model(videos[idx]).logits, labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One int8 cache for the whole file: the trained model is exported and quantised once."""
    return tmp_path_factory.mktemp("int8-cache")


@pytest.fixture()
def int8(trained, cache, monkeypatch):
    monkeypatch.setenv("TRECVIT_CACHE", str(cache))
    return InferenceModel(trained, "int8")


# ---------------------------------------------------------------------------- the choice, the machine
def test_explicit_precisions_and_errors():
    assert resolve_precision("fp32") == ("fp32", "as asked")
    assert resolve_precision("bf16", "cpu") == ("bf16", "as asked")
    assert resolve_precision("int8", "cpu") == ("int8", "as asked")
    with pytest.raises(ValueError, match="must be one of auto, fp32, bf16, int8"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ValueError, match="resolve auto"):
        InferenceModel(tiny_model(), "auto")


@pytest.mark.parametrize("features, chosen, words", [
    (CPUFeatures(avx2=True, fma=True), "fp32", "no AVX-512 BF16 or AMX; bf16 would be emulated"),
    (CPUFeatures(avx512=True, avx512_vnni=True), "fp32", "no AVX-512 BF16 or AMX"),
    (CPUFeatures(avx512=True, avx512_bf16=True), "bf16", "this CPU has AVX-512 BF16"),
    (CPUFeatures(avx512=True, avx512_bf16=True, amx_bf16=True, amx_tile=True), "bf16", "this CPU has AMX"),
])
def test_auto_takes_bf16_only_with_a_bf16_unit(features, chosen, words, monkeypatch):
    monkeypatch.setattr(machine, "cpu_features", lambda: features)
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    got, reason = resolve_precision("auto", "cpu")
    assert got == chosen and reason.startswith("auto: ") and words in reason
    assert format_precision(got, reason) == f"precision: {chosen} ({reason})"


def test_auto_on_this_machine_says_what_it_took():
    got, reason = resolve_precision("auto")
    unit = machine_info().bf16_unit
    assert got == ("bf16" if unit else "fp32")
    assert (unit in reason) if unit else ("bf16 would be emulated" in reason)


def test_cpu_features_from_cpuinfo(monkeypatch):
    flags = {"fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ("Intel(R) Xeon(R) Platinum 8480+", flags))
    machine.cpu_features.cache_clear()
    try:
        found = machine.cpu_features()
        assert found.source == "/proc/cpuinfo" and found.amx and found.vnni and found.bf16_unit == "AMX"
        assert found.summary() == {"AVX2": True, "FMA": True, "AVX-512": True, "VNNI": True,
                                   "AVX-512 BF16": True, "AMX": True}
        assert machine.cpu_model() == "Intel(R) Xeon(R) Platinum 8480+"
        monkeypatch.setattr(machine, "_cpuinfo", lambda: ("", {"fma", "avx2"}))
        machine.cpu_features.cache_clear()
        assert machine.cpu_features().bf16_unit is None and not machine.cpu_features().vnni
    finally:
        machine.cpu_features.cache_clear()


def test_matmul_rates_and_the_machine_report():
    rates = measure_matmul_rates(max_size=256, target_s=0.005, repeats=2)
    assert rates.fp32 > 0 and rates.bf16 > 0 and rates.int8 > 0 and rates.int8_backend
    assert set(rates.sizes) == {"fp32", "bf16", "int8"} and max(rates.sizes.values()) <= 256
    text = format_machine(machine_info(), rates)
    for words in ("machine:", "AVX-512", "VNNI", "AVX-512 BF16", "AMX", "fp32", "bf16", "int8", "GFLOP/s"):
        assert words in text
    assert json.dumps(machine_info().to_dict()) and json.dumps(rates.to_dict())


# ---------------------------------------------------------------------------- fp32, bf16, compile
def test_fp32_is_the_model_itself():
    model = tiny_model()
    runner = prepare_model(model, "fp32")
    video = torch.rand(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(runner(video).logits, model(video).logits, atol=0, rtol=0)
        state, ref = runner.init_state(2), model.init_state(2)
        for t in range(4):
            out, state = runner.step(video[:, t], state)
            want, ref = model.step(video[:, t], ref)
        torch.testing.assert_close(out.probs, want.probs, atol=0, rtol=0)
    assert runner.describe() == "fp32" and runner.reason == "as asked"


def test_bf16_weights_copy_keeps_the_eigenvalues_in_float32():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = bf16_weights(model)
    for name, param in copy.named_parameters():
        assert param.dtype == (torch.float32 if name.endswith("a_param") else torch.bfloat16), name
    torch.testing.assert_close(copy.encoder.blocks[0].temporal.rg_lru.a_param,
                               model.encoder.blocks[0].temporal.rg_lru.a_param, atol=0, rtol=0)
    for name, value in model.state_dict().items():  # the original is untouched
        assert value.dtype == torch.float32 and torch.equal(value, before[name])


@pytest.mark.parametrize("mode", ["weights", "autocast"])
def test_bf16_clip_and_stream_are_close_to_fp32_with_a_float32_state(trained, mode):
    runner = InferenceModel(trained, "bf16", bf16_mode=mode)
    video, _ = colour_clips(3, seed=5)
    with torch.no_grad():
        ref = trained(video)
        out = runner(video)
        assert out.logits.dtype == torch.float32 and out.probs.dtype == torch.float32
        assert (out.logits - ref.logits).abs().max() < 0.1
        state = runner.init_state(3)
        for t in range(video.shape[1]):
            step, state = runner.step(video[:, t], state)
    assert all(s.dtype == torch.float32 for s in state[:3]) and state.num_frames.dtype == torch.int64
    assert (step.logits - ref.logits).abs().max() < 0.1  # the stream's last prediction = the clip's
    assert runner.describe() == f"bf16 ({mode})"


@pytest.mark.slow
def test_compile_wraps_forward_and_step_once_per_shape():
    model = tiny_model(depth=1)
    runner = InferenceModel(model, "fp32", compile=True, compile_backend="eager")  # inductor: test_compile.py
    assert runner.compiled and runner.describe() == "fp32, compiled"
    video = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(runner(video).logits, model(video).logits, atol=1e-6, rtol=0)
        state = ref = model.init_state(1)
        for t in range(3):  # the same compiled step for every frame
            out, state = runner.step(video[:, t], state)
            want, ref = model.step(video[:, t], ref)
    torch.testing.assert_close(out.logits, want.logits, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="--compile applies to fp32 and bf16"):
        InferenceModel(model, "int8", compile=True)


# ---------------------------------------------------------------------------- int8
@pytest.mark.slow
def test_int8_clip_and_stream_are_close_to_fp32(trained, int8):
    video, _ = colour_clips(4, seed=6, frames=16)  # 16 frames: two clips of 8, averaged
    with torch.no_grad():
        ref = trained(video)
        out = int8(video)
        assert (out.logits - ref.logits).abs().max() < 0.2
        torch.testing.assert_close(out.probs.sum(-1), torch.ones(4), atol=1e-5, rtol=0)
        one = int8(video[:, :8])  # one clip: the stream's prediction after its last frame
        state = int8.init_state(4)
        for t in range(8):
            step, state = int8.step(video[:, t], state)
    torch.testing.assert_close(step.logits, one.logits, atol=1e-5, rtol=0)
    assert state.num_frames.tolist() == [8] * 4 and state.lru.dtype == torch.float32
    assert int8.describe() == "int8 (ONNX Runtime)"
    with pytest.raises(ValueError, match="state does not fit"):
        int8.step(video[:1, 0], state)  # 4 streams' state for 1 frame: the model's own checks


def test_int8_file_is_cached_and_quantised(trained, int8, monkeypatch):
    import onnx

    from trecvit.tools import export

    int8.warmup((32, 32))
    (path,) = int8.int8.files.values()
    graph = onnx.load(str(path))
    ops = {node.op_type for node in graph.graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["trecvit_precision"] == "int8" and json.loads(meta["trecvit_quantization"])["per_channel"]
    monkeypatch.setattr(export, "export_step_onnx", lambda *a, **k: pytest.fail("exported again"))
    again = InferenceModel(trained, "int8")
    again.warmup((32, 32))
    assert again.int8.files[(32, 32)] == path


def test_int8_needs_its_extra_and_a_streaming_trecvit(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"trecvit\[int8\]"):
        InferenceModel(tiny_model(), "int8")
    from trecvit.architectures import get_architecture

    row = get_architecture("vivit")
    vivit = row.build(row.config("Ti", image_size=32, num_classes=5, frames_per_clip=4))
    with pytest.raises(ValueError, match="has none"):
        InferenceModel(vivit, "int8")


# ---------------------------------------------------------------------------- the accuracy bounds
def test_bf16_and_int8_agree_with_fp32_on_held_out_clips(trained, cache, monkeypatch):
    monkeypatch.setenv("TRECVIT_CACHE", str(cache))
    videos, labels = colour_clips(240, seed=1)
    rows = compare_precisions(trained, videos, labels, ("bf16", ("bf16", {"bf16_mode": "autocast"}), "int8"))
    fp32_pred = trained(videos).logits.argmax(-1)
    assert len(fp32_pred.unique()) >= 4  # not a constant prediction
    assert rows[0].fp32_top1 > 0.6
    for row in rows:
        assert row.clips == 240 and row.top1_agreement >= 0.99, row
        assert 0 < row.max_logit_diff < 0.5, row  # reported; bf16 ~1e-2, int8 ~5e-2 here
        assert row.top1 >= row.fp32_top1 - 0.01


@pytest.mark.slow
def test_long_bf16_stream_state_stays_finite_and_close_to_fp32(trained):
    frames = torch.rand(16, 1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    frames[::5] = 1.0  # sudden cuts
    drift = stream_drift(trained, frames, 600, "bf16", every=100)
    assert drift.finite and drift.frames == 600 and len(drift.marks) == 6
    assert drift.relative_state_diff < 0.1, drift  # bounded (the demo model: 0.035 after 1000 frames)
    assert drift.max_prob_diff < 0.05 and drift.top1_agreement == 1.0
    late = sum(m["state_diff"] for m in drift.marks[3:])  # and not growing with the stream
    assert late <= 2 * sum(m["state_diff"] for m in drift.marks[:3])


# ---------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def folder(trained, tmp_path_factory):
    from trecvit.data.synthetic import write_synthetic_videos

    tmp = tmp_path_factory.mktemp("precision")
    trained.save_pretrained(tmp / "model")
    data = write_synthetic_videos(tmp / "data", 4, num_frames=8, image_size=32, seed=0,
                                  classes=range(NUM_CLASSES))
    (tmp / "model" / "classes.txt").write_text((data / "classes.txt").read_text())
    return tmp


def test_classify_with_each_precision(folder, cache, monkeypatch, capsys):
    monkeypatch.setenv("TRECVIT_CACHE", str(cache))
    video = str(sorted((folder / "data" / "videos").iterdir())[0])
    args = ["classify", video, "--checkpoint", str(folder / "model"), "--top-k", str(NUM_CLASSES), "--json"]

    def probs(out: str) -> torch.Tensor:  # every class's probability, in class order
        top = sorted(json.loads(out.strip())["top"], key=lambda t: t["index"])
        return torch.tensor([t["prob"] for t in top])

    assert main(args + ["--precision", "auto"]) == 0
    captured = capsys.readouterr()
    assert "precision: fp32 (auto: " in captured.err or "precision: bf16 (auto: " in captured.err
    assert main(args + ["--precision", "fp32"]) == 0
    fp32 = probs(capsys.readouterr().out)
    for name in ("bf16", "int8"):
        assert main(args + ["--precision", name]) == 0
        captured = capsys.readouterr()
        assert f"precision: {name} (as asked)" in captured.err
        assert (probs(captured.out) - fp32).abs().max() < 0.05
    assert main(args[:-1] + ["--precision", "int8", "--stream"]) == 0
    out = capsys.readouterr().out
    assert "after 8 frames (streamed)" in out and "frames/s in model.step" in out


def test_evaluate_with_int8(folder, cache, monkeypatch, capsys):
    monkeypatch.setenv("TRECVIT_CACHE", str(cache))
    args = ["evaluate", "--checkpoint", str(folder / "model"), "--data", "csv", "--val-data",
            str(folder / "data" / "labels.csv"), "--views", "1x1", "--num-workers", "0", "--json"]
    assert main(args + ["--precision", "int8"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["precision"] == "int8 (ONNX Runtime)" and result["videos"] == 4
    assert "precision: int8 (as asked)" in captured.err
    assert main(args + ["--precision", "int8", "--bf16"]) == 2
    assert "--bf16 asks for bfloat16" in capsys.readouterr().err


def test_profile_reports_the_machine_and_every_precision(tmp_path, capsys):
    js = tmp_path / "p.json"
    assert main(["profile", "--variant", "mu", "--size", "32", "--frames", "2", "--repeats", "1",
                 "--no-memory", "--precision", "auto,fp32,bf16", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    for words in ("machine:", "CPU features:", "AVX-512 BF16", "AMX", "VNNI", "matmul rates", "precision: ",
                  "per precision", "clip ms", "step ms"):
        assert words in out
    payload = json.loads(js.read_text())
    assert sorted(r["precision"] for r in payload["precisions"]) == ["bf16 (weights)", "fp32"]  # auto: once
    assert all(r["step_frames_per_s"] > 0 and r["clip_frames_per_s"] > 0 for r in payload["precisions"])
    assert payload["machine"]["features_found"].keys() >= {"AVX-512", "VNNI", "AVX-512 BF16", "AMX"}
    assert payload["matmul_rates"]["fp32"] > 0 and [r["frames"] for r in payload["rows"]] == [2]
    with pytest.raises(SystemExit):
        main(["profile", "--precision", "fp16"])
    assert "--precision" in capsys.readouterr().err


def test_export_refuses_precision_and_compile_it_cannot_do(folder, tmp_path, capsys):
    model = str(folder / "model")
    cases = [(["--precision", "bf16", "--onnx", str(tmp_path / "a.onnx")], "bf16 exports --torch-export only"),
             (["--precision", "int8", "--torch-export", str(tmp_path / "a.pt2")], "int8 is ONNX Runtime"),
             (["--compile", "--onnx", str(tmp_path / "a.onnx")], "--compile compiles the --torch-export")]
    for extra, words in cases:
        assert main(["export", model, *extra]) == 2
        assert words in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_export_int8_onnx(folder, tmp_path, capsys):
    import onnx

    path = tmp_path / "step_int8.onnx"
    assert main(["export", str(folder / "model"), "--precision", "int8", "--onnx", str(path),
                 "--check-frames", "5"]) == 0
    out = capsys.readouterr().out
    assert "precision: int8 (as asked)" in out and "int8 matmuls" in out
    assert "check: OK: onnxruntime" in out and "max abs diff of probs" in out
    assert {"MatMulInteger"} <= {n.op_type for n in onnx.load(str(path)).graph.node}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_int8.onnx"]  # no temporary left


@pytest.mark.slow
def test_export_bf16_compiled_goes_through_aot_inductor(folder, tmp_path, capsys, monkeypatch):
    import torch._inductor as inductor

    calls = []

    def fake_compile(program, package_path):  # AOTInductor itself takes minutes: record, save
        calls.append(program)
        torch.export.save(program, package_path)
        return package_path

    monkeypatch.setattr(inductor, "aoti_compile_and_package", fake_compile)
    monkeypatch.setattr(inductor, "aoti_load_package", lambda path: torch.export.load(path).module())
    path = tmp_path / "step.pt2"
    assert main(["export", str(folder / "model"), "--precision", "bf16", "--torch-export", str(path),
                 "--compile", "--check-frames", "3"]) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1 and path.is_file() and "AOTInductor package" in out
    assert "check: OK: AOTInductor" in out and "precision: bf16, compiled (as asked)" in out
    weights = [v for k, v in calls[0].state_dict.items() if k.endswith("qkv.weight")]
    assert weights and weights[0].dtype == torch.bfloat16
