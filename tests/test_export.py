"""Export of the streaming step: ONNX (run with onnxruntime) and torch.export."""

from __future__ import annotations

import contextlib
import io
import sys
import types

import numpy as np
import pytest
import torch
from conftest import tiny_model

from trecvit.tools import export
from trecvit.cli import main
from trecvit.tools.export import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    OnnxStreamingSession,
    StreamingStep,
    compare_onnx_step,
    export_step_onnx,
    export_step_torch,
    run_onnx_stream,
)

ATOL = 1e-4


def need_onnx():
    """Skip unless the export extra (onnx, onnxscript, onnxruntime) is installed."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def cli_export(model, tmp_path_factory):
    """``trecvit export`` of the saved tiny model to ONNX and .pt2 (run once: exports are slow).

    Returns ``(exit code, stdout, checkpoint folder, onnx file, pt2 file)``; the ONNX
    file (dynamic batch, traced with 2 streams) is used by the ONNX tests below."""
    need_onnx()
    tmp = tmp_path_factory.mktemp("export")
    model.save_pretrained(tmp / "m")
    onnx_file, pt2_file = tmp / "out" / "step.onnx", tmp / "out" / "step.pt2"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", str(tmp / "m"), "--onnx", str(onnx_file), "--torch-export", str(pt2_file)])
    return code, stdout.getvalue(), tmp / "m", onnx_file, pt2_file


@pytest.fixture(scope="module")
def onnx_path(cli_export):
    code, _, _, onnx_file, _ = cli_export
    assert code == 0
    return onnx_file


def assert_step_close(got, eager_out, eager_state, atol=ATOL):
    expected = (eager_out.logits, eager_out.probs, *eager_state)
    for name, g, e in zip(OUTPUT_NAMES, got, expected):
        g = torch.as_tensor(np.asarray(g)) if not isinstance(g, torch.Tensor) else g
        assert g.shape == e.shape and g.dtype == e.dtype, name
        torch.testing.assert_close(g, e, atol=atol, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


# ---------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnx_step_matches_pytorch_for_20_frames(model, onnx_path, batch_size):
    """From a fresh state, 20 frames: logits, probs and every state tensor within 1e-4;
    batch 1 and 3 from a file traced with 2 streams (dynamic batch); with 3 streams,
    stream 0 is restarted half-way (num_frames = 0) in both."""
    session = OnnxStreamingSession(onnx_path)
    assert session.fixed_batch is None
    torch.manual_seed(1)
    state = model.init_state(batch_size)
    onnx_state = session.init_state(batch_size)
    for a, b in zip(onnx_state, state):
        assert a.shape == tuple(b.shape) and not a.any()
    with torch.no_grad():
        for t in range(20):
            if t == 10 and batch_size > 1:
                mask = torch.tensor([True] + [False] * (batch_size - 1))
                state = state.reset(mask)
                onnx_state = onnx_state._replace(num_frames=np.where(mask.numpy(), 0, onnx_state.num_frames))
            frame = torch.rand(batch_size, 3, 32, 32)
            eager, state = model.step(frame, state)
            got, onnx_state = session.step(frame, onnx_state)
            assert_step_close(got, eager, state)
    expected_counts = [20] if batch_size == 1 else [10] + [20] * (batch_size - 1)
    assert state.num_frames.tolist() == onnx_state.num_frames.tolist() == expected_counts


def test_compare_onnx_step_reports_small_differences(model, onnx_path):
    diffs = compare_onnx_step(model, onnx_path, num_frames=20, batch_size=2)
    assert set(diffs) == set(OUTPUT_NAMES)
    assert max(diffs.values()) < ATOL and diffs["num_frames_out"] == 0.0


def test_run_onnx_stream_gives_per_frame_logits_and_continues(model, onnx_path):
    torch.manual_seed(2)
    video = torch.rand(2, 6, 3, 32, 32)
    first = run_onnx_stream(onnx_path, video[:, :4])
    assert first.logits.shape == (2, 4, model.config.num_classes) == first.probs.shape
    with torch.no_grad():
        # after the 4 frames of a one-clip video, the running prediction is the full-clip one
        torch.testing.assert_close(first.logits[:, -1], model(video[:, :4]).logits, atol=ATOL, rtol=0)
        state = model.init_state(2)
        logits = []
        for t in range(6):
            out, state = model.step(video[:, t], state)
            logits.append(out.logits)
    rest = run_onnx_stream(onnx_path, video[:, 4:].numpy(), first.state)  # numpy frames work too
    torch.testing.assert_close(torch.cat([first.logits, rest.logits], 1), torch.stack(logits, 1),
                               atol=ATOL, rtol=0)
    assert rest.state.num_frames.tolist() == [6, 6]
    with pytest.raises(ValueError, match="batch axis"):
        run_onnx_stream(onnx_path, video[0])
    with pytest.raises(ValueError, match=r"frame must be \[b, 3, 32, 32\]"):
        run_onnx_stream(onnx_path, torch.rand(1, 2, 3, 16, 16))


def test_onnx_file_has_named_io_dynamic_batch_and_metadata(model, onnx_path):
    import onnx

    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    cfg = model.config
    n = (32 // cfg.patch_size) ** 2 + 1
    assert dims == {"frame": ["batch", 3, 32, 32],
                    "conv_state": [cfg.depth, "batch", cfg.conv1d_width - 1, n, cfg.lru_width],
                    "lru_state": [cfg.depth, "batch", n, cfg.lru_width],
                    "feature_sum": ["batch", cfg.rep_size],
                    "num_frames": ["batch"]}
    assert proto.graph.input[4].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert {o.domain: o.version for o in proto.opset_import}[""] >= 18
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["trecvit_image_hw"] == "32x32" and '"width": 32' in meta["trecvit_config"]
    assert not [p for p in onnx_path.parent.iterdir() if p.name.startswith(".")]  # no temporary left over


def test_fixed_batch_export(model, tmp_path):
    need_onnx()
    path = export_step_onnx(model, tmp_path / "fixed.onnx", batch_size=1, dynamic_batch=False, opset=18)
    session = OnnxStreamingSession(path)
    assert session.fixed_batch == 1
    diffs = compare_onnx_step(model, path, num_frames=5, batch_size=1)
    assert max(diffs.values()) < ATOL
    with pytest.raises(ValueError, match="batch size 1 only"):
        session.init_state(2)


def test_onnx_refuses_to_overwrite_and_leaves_no_partial_file(model, tmp_path, monkeypatch):
    need_onnx()
    path = tmp_path / "step.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="already exists.*overwrite"):
        export_step_onnx(model, path)
    with pytest.raises(ValueError, match="is a directory"):
        export_step_onnx(model, tmp_path)
    assert path.read_bytes() == b"keep me"

    class BrokenProgram:  # an export that dies half-way through writing the file
        def __init__(self):
            self.model = types.SimpleNamespace(metadata_props={}, doc_string="")

        def save(self, dest, external_data=False):
            with open(dest, "wb") as f:
                f.write(b"partial")
            raise OSError("disk full")

    def broken_export(model, args, f=None, *, dynamo=True, **kwargs):
        return BrokenProgram()

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(OSError, match="disk full"):
        export_step_onnx(model, path, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        export_step_onnx(model, tmp_path / "new.onnx")
    assert path.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.onnx"]


def test_missing_onnx_packages_say_how_to_install(model, onnx_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match=r'pip install "trecvit\[export\]"'):
        run_onnx_stream(onnx_path, torch.rand(1, 1, 3, 32, 32))
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"'onnx' package.*pip install \"trecvit\[export\]\""):
        export_step_onnx(model, tmp_path / "x.onnx")
    model.save_pretrained(tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_bad_export_arguments(model, tmp_path):
    with pytest.raises(ValueError, match="multiples of the patch size"):
        export_step_torch(model, image_size=30)
    with pytest.raises(ValueError, match="batch_size must be"):
        export_step_torch(model, batch_size=0)
    with pytest.raises(TypeError, match="must be a TRecViT"):
        StreamingStep(torch.nn.Linear(2, 2))


def test_compare_step_reports_nan_as_inf(model):
    wrapper = StreamingStep(model)

    def nan_logits(*args):
        logits, *rest = wrapper(*args)
        return (torch.full_like(logits, float("nan")), *rest)

    diffs = export.compare_step(model, nan_logits, num_frames=2)
    assert diffs["logits"] == float("inf") and diffs["lru_state_out"] == 0.0


def test_onnx_session_errors(tmp_path):
    need_onnx()
    with pytest.raises(FileNotFoundError, match="not found"):
        OnnxStreamingSession(tmp_path / "missing.onnx")


# ---------------------------------------------------------------------------- torch.export
def test_torch_export_step_equals_eager(model, tmp_path):
    path = tmp_path / "step.pt2"
    program = export_step_torch(model, path)
    assert isinstance(program, torch.export.ExportedProgram)
    assert [p.name for p in tmp_path.iterdir()] == ["step.pt2"]
    step = program.module()
    loaded = torch.export.load(str(path)).module()
    torch.manual_seed(3)
    with torch.no_grad():
        for batch_size in (1, 3):  # traced with 2 streams: the batch is dynamic
            state = model.init_state(batch_size)
            exported_state = tuple(state)
            for _ in range(20):
                frame = torch.rand(batch_size, 3, 32, 32)
                eager, state = model.step(frame, state)
                got = step(frame, *exported_state)
                assert_step_close(got, eager, state, atol=1e-6)
                exported_state = got[2:]
        frame = torch.rand(2, 3, 32, 32)
        state = model.init_state(2)
        torch.testing.assert_close(loaded(frame, *state), step(frame, *state), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="already exists"):
        export_step_torch(model, path)


# ---------------------------------------------------------------------------- command line
def test_cli_export_end_to_end(model, cli_export, tmp_path, capsys):
    code, out, checkpoint, onnx_file, pt2_file = cli_export
    assert code == 0, out
    assert out.count("check: OK") == 2 and "20 random frames" in out and "dynamic batch" in out
    assert "onnxruntime vs PyTorch step" in out and "torch.export vs PyTorch step" in out
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == ["step.onnx", "step.pt2"]
    assert max(compare_onnx_step(model, onnx_file, num_frames=3).values()) < ATOL
    with torch.no_grad():
        frame, state = torch.rand(2, 3, 32, 32), model.init_state(2)
        torch.testing.assert_close(torch.export.load(str(pt2_file)).module()(frame, *state)[0],
                                   model.step(frame, state)[0].logits, atol=1e-6, rtol=0)

    # never overwrites silently, and says so before loading anything
    args = ["export", str(checkpoint), "--onnx", str(onnx_file)]
    before = onnx_file.read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert onnx_file.read_bytes() == before
    # a missing checkpoint folder, nothing to export, bad sizes
    assert main(["export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "n.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["export", str(checkpoint)]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "n.onnx"), "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "n.onnx"), "--image-size", "24"]) == 2
    assert "multiples of the patch size" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()


def test_cli_export_fails_when_outputs_differ(model, tmp_path, capsys, monkeypatch):
    model.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(export, "export_step_torch", lambda *a, **k: None)  # the export itself is tested above
    monkeypatch.setattr(export, "compare_exported_step", lambda *a, **k: {"logits": 1.0})
    assert main(["export", str(tmp_path / "m"), "--torch-export", str(tmp_path / "s.pt2"),
                 "--check-frames", "1"]) == 1
    assert "check: FAILED" in capsys.readouterr().out


def test_cli_export_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--onnx", "--torch-export", "--batch-size", "--static-batch", "--image-size",
                   "--opset", "--overwrite", "--check-frames", "--tolerance"):
        assert option in text
