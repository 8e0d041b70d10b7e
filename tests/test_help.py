"""Every option of every ``trecvit`` command is documented: a sentence and its default; ``train``'s
help is the ``TrainConfig`` field metadata, which also generates the class docstring."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from trecvit.cli import build_parser, main
from trecvit.training.config import TrainConfig

SKIPPED = {"-h", "--help", "--version"}
ONLY_DEFAULT = re.compile(r"^\(?default:? [^)]*\)?$", re.IGNORECASE)
WORD = re.compile(r"[A-Za-z][\w.'/-]*")


def _commands(parser: argparse.ArgumentParser, prefix: str = "trecvit"):
    """``(name, parser)`` of ``parser`` and of every sub-command below it."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if SKIPPED & set(action.option_strings):
            continue
        yield "/".join(action.option_strings) or action.dest, action


COMMANDS = dict(_commands(build_parser()))
OPTIONS = [(command, name, action) for command, parser in COMMANDS.items()
           for name, action in _options(parser)]


def _squash(text: str) -> str:
    """``text`` without whitespace, so that argparse's line wrapping does not matter."""
    return "".join(text.split())


def test_every_command_is_walked():
    for name in ("convert", "verify", "classify", "profile", "export", "train", "evaluate", "demo",
                 "synthetic", "ablate", "memorise", "compare-efficiency"):
        assert f"trecvit {name}" in COMMANDS
    assert len(OPTIONS) > 100


@pytest.mark.parametrize("command, option, action", OPTIONS,
                         ids=[f"{c}:{o}" for c, o, _ in OPTIONS])
def test_option_help_is_a_sentence(command, option, action):
    text = " ".join((action.help or "").split())
    assert text, f"`{command}` {option}: no help"
    assert not ONLY_DEFAULT.match(text), f"`{command}` {option}: the help is only a default: {text!r}"
    before_default = re.split(r"\(?\bdefault\b", text, maxsplit=1, flags=re.IGNORECASE)[0]
    assert len(WORD.findall(before_default)) >= 3, (
        f"`{command}` {option}: no sentence of at least 3 words before the default: {text!r}")


@pytest.mark.parametrize("command, option, action", OPTIONS,
                         ids=[f"{c}:{o}" for c, o, _ in OPTIONS])
def test_option_help_states_its_default(command, option, action):
    default = action.default
    if default is None or default is False or default is argparse.SUPPRESS:
        return
    assert "default" in (action.help or "").lower(), (
        f"`{command}` {option}: the default {default!r} is not in the help {action.help!r}")


def test_train_help_is_the_config_metadata():
    train_help = _squash(COMMANDS["trecvit train"].format_help())
    doc = _squash(TrainConfig.__doc__)
    for f in dataclasses.fields(TrainConfig):
        text = f.metadata.get("help")
        assert text and len(text.split()) >= 3, f"TrainConfig.{f.name}: no metadata help"
        flag = "--" + f.name.replace("_", "-")
        assert _squash(f"{flag}") in train_help, f"trecvit train: no {flag}"
        assert _squash(text) in train_help, f"trecvit train {flag}: not documented by its metadata"
        assert _squash(text) in doc, f"TrainConfig.{f.name}: not in the generated docstring"
        assert _squash(f"{f.name} (default:") in doc, f"TrainConfig.{f.name}: no default in the docstring"


def test_train_help_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "peak learning rate of the cosine schedule (default: 0.001)" in out
    assert "(default: on)" in out and "(default: off)" in out
    assert "KEY=VALUE" in out
    assert "docstring" not in out


def test_docstring_groups_fields_by_section():
    doc = TrainConfig.__doc__
    headings = ["Run", "Data", "Model", "Optimisation", "Logging and checkpoints"]
    positions = [doc.index(f"\n{h}\n") for h in headings]
    assert positions == sorted(positions)
    assert "\nOther\n" not in doc  # every field is in a section
    assert doc.index("    lr (default: 0.001):") > positions[3]
