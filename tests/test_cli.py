"""The ``trecvit`` command line, end to end on the real demo clip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from trecvit import TRecViTConfig
from trecvit.assets import example_video
from trecvit.cli import main

from conftest import FIXTURES, write_official_npz


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted random-weight checkpoint: 224 x 224, 400 classes, official layout."""
    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = TRecViTConfig.from_variant("mu", rep_size=64)
    npz = write_official_npz(tmp / "random_k400.npz", cfg, scale=0.5)
    assert main(["convert", str(npz), str(tmp / "converted")]) == 0
    return tmp / "converted"


@pytest.mark.parametrize("command", [[], ["convert"], ["classify"], ["verify"]])
def test_help_documents_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parser_options = {"convert": ["--variant", "--frames-per-clip", "--image-size", "--overwrite"],
                      "classify": ["--checkpoint", "--top-k", "--labels", "--stream", "--frames",
                                   "--sampling", "--stride", "--offset", "--print-every", "--json",
                                   "--device"],
                      "verify": ["--checkpoint", "--variant"]}
    for option in parser_options.get(command[0] if command else "", ["convert", "classify", "verify"]):
        assert option in text


def test_console_script_is_installed():
    exe = shutil.which("trecvit") or str(__import__("pathlib").Path(sys.executable).parent / "trecvit")
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "trecvit" in result.stdout


def test_convert_prints_parameter_count_and_check(tmp_path, capsys):
    assert main(["convert", str(FIXTURES / "tiny_tok_learn.ckpt.npz"), str(tmp_path / "out"),
                 "--frames-per-clip", "8"]) == 0
    out = capsys.readouterr().out
    assert "parameters: " in out and "check: OK" in out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["width"] == 64 and config["frames_per_clip"] == 8
    # never overwrites silently
    assert main(["convert", str(FIXTURES / "tiny_tok_learn.ckpt.npz"), str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_convert_refuses_the_wrong_variant(tmp_path, capsys):
    assert main(["convert", str(FIXTURES / "tiny_tok_learn.ckpt.npz"), str(tmp_path / "o"), "--variant", "B"]) == 2
    err = capsys.readouterr().err
    assert "width: file 64" in err and not (tmp_path / "o").exists()


def test_classify_the_demo_clip(converted, capsys):
    assert main(["classify", str(example_video()), "--checkpoint", str(converted), "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    kinetics = set((example_video().parent / "kinetics400_labels.txt").read_text().splitlines())
    lines = [line for line in out.splitlines() if line.strip()[:2].strip(".").isdigit()]
    assert len(lines) == 3
    assert any(name in out for name in kinetics), "Kinetics-400 names are used for 400 classes"
    assert "32 frames" in out


def test_classify_stream_prints_running_top1_and_fps(converted, capsys):
    assert main(["classify", str(example_video()), "--checkpoint", str(converted), "--stream"]) == 0
    out = capsys.readouterr().out
    assert out.count("top-1:") == 32 and "frames/s in model.step" in out


def test_stream_and_full_agree_on_the_demo_clip(converted, capsys):
    main(["classify", str(example_video()), "--checkpoint", str(converted), "--json", "--top-k", "1"])
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    main(["classify", str(example_video()), "--checkpoint", str(converted), "--json", "--stream"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["frame"] == 31 and last["index"] == full["top"][0]["index"]
    assert abs(last["prob"] - full["top"][0]["prob"]) < 1e-5


def test_labels_file_and_a_bad_video_among_good_ones(converted, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"action {i}" for i in range(400)))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(example_video().read_bytes()[:5000])
    code = main(["classify", str(broken), str(example_video()), "--checkpoint", str(converted),
                 "--labels", str(labels)])
    captured = capsys.readouterr()
    assert code == 1  # one failure, reported, the other video still classified
    assert "broken.mp4" in captured.err and "action " in captured.out
    labels.write_text("just one\n")
    assert main(["classify", str(example_video()), "--checkpoint", str(converted), "--labels", str(labels)]) == 2
    assert "1 names but the model has 400 classes" in capsys.readouterr().err


def test_missing_checkpoint_says_where_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TRECVIT_CHECKPOINT", raising=False)
    assert main(["classify", str(example_video())]) == 2
    err = capsys.readouterr().err
    assert "storage.googleapis.com/trecvit/model_checkpoints/trecvit_B_k400.npz" in err
    assert "trecvit convert trecvit_B_k400.npz" in err
    assert main(["classify", str(example_video()), "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_official_npz_can_be_used_directly(tmp_path, capsys):
    cfg = TRecViTConfig.from_variant("mu", rep_size=16, num_classes=7)
    npz = write_official_npz(tmp_path / "m.npz", cfg)
    assert main(["classify", str(example_video()), "--checkpoint", str(npz), "--frames", "4"]) == 0
    assert "class " in capsys.readouterr().out


@pytest.mark.slow
def test_verify_passes(capsys):
    assert main(["verify", "--variant", "mu"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and out.count("PASS") >= 6


def test_weights_file_of_a_converted_folder_is_accepted(converted, capsys):
    assert main(["classify", str(example_video()), "--checkpoint", str(converted / "model.safetensors"),
                 "--frames", "4", "--top-k", "1"]) == 0
    assert "4 frames" in capsys.readouterr().out
