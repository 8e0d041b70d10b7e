"""Export the streaming :meth:`TRecViT.step` to ONNX and to ``torch.export``.

The exported graph is one step of the stream: a frame and the state in, the
prediction and the new state out, all plain tensors. Calling it once per frame
and feeding each call's state outputs back in as the next call's inputs gives
what :meth:`TRecViT.step` gives::

    inputs:  frame        [b, 3, H, W]             float32, RGB in [0, 1]
             conv_state   [depth, b, K-1, N, L]    float32
             lru_state    [depth, b, N, L]         float32
             feature_sum  [b, R]                   float32
             num_frames   [b]                      int64
    outputs: logits       [b, classes]             float32 (running prediction)
             probs        [b, classes]             float32 (softmax of logits)
             conv_state_out, lru_state_out, feature_sum_out, num_frames_out

A fresh stream starts from all-zero state tensors (``model.init_state``);
where ``num_frames`` is 0, the next frame starts a new stream whatever the
other tensors hold, so a stream is restarted by zeroing its ``num_frames``.
The frame size (and so ``N``) is fixed at export time; the batch axis ``b`` is
dynamic unless ``dynamic_batch=False``.

ONNX export goes through ``torch.onnx.export(..., dynamo=True)``, the
``torch.export``-based exporter (the default since torch 2.9; the TorchScript
exporter is deprecated). It needs ``onnx`` and ``onnxscript``; running the
ONNX file (:func:`run_onnx_stream`, the checks) needs ``onnxruntime``. Install
them with ``pip install "trecvit[export]"``.

:func:`quantize_step_onnx` quantises an exported step to int8 with ONNX Runtime's
dynamic quantisation (the ``int8`` precision of :mod:`trecvit.tools.precision`);
:func:`export_step_onnx_int8` exports and quantises in one go (``trecvit export
--precision int8``). The inputs and outputs stay float32, as above.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from trecvit.model import TRecViT
from trecvit.state import STATE_BATCH_AXIS, TRecViTState
from trecvit.validation import size_hw

INPUT_NAMES = ("frame", "conv_state", "lru_state", "feature_sum", "num_frames")
OUTPUT_NAMES = ("logits", "probs", "conv_state_out", "lru_state_out", "feature_sum_out", "num_frames_out")
# Outputs 2.. are the new state, in the order of the state inputs 1..
STATE_NAMES = INPUT_NAMES[1:]

# Above this many bytes of weights the ONNX file keeps them in a side file
# ``<name>.data`` (a protobuf file cannot exceed 2 GiB).
_EXTERNAL_DATA_BYTES = 1_800_000_000

_INSTALL_HINT = 'install the export extra: pip install "trecvit[export]"'
_INT8_HINT = 'install the int8 extra: pip install "trecvit[int8]"'


class StepOutputs(NamedTuple):
    """The outputs of one exported step, as plain tensors."""

    logits: torch.Tensor
    probs: torch.Tensor
    conv: torch.Tensor
    lru: torch.Tensor
    feature_sum: torch.Tensor
    num_frames: torch.Tensor

    @property
    def state(self) -> TRecViTState:
        return TRecViTState(self.conv, self.lru, self.feature_sum, self.num_frames)


class StreamingStep(nn.Module):
    """:meth:`TRecViT.step` with plain tensors in and out, for export.

    ``forward(frame, conv, lru, feature_sum, num_frames)`` ->
    ``(logits, probs, conv, lru, feature_sum, num_frames)``; see the module
    docstring for the shapes. The wrapped model is shared, not copied.
    """

    def __init__(self, model: TRecViT):
        super().__init__()
        if not isinstance(model, TRecViT):
            raise TypeError(f"model must be a TRecViT, got {type(model).__name__}")
        self.model = model
        self.training = model.training  # not .train(): that would change the model's mode too

    def forward(self, frame: torch.Tensor, conv: torch.Tensor, lru: torch.Tensor,
                feature_sum: torch.Tensor, num_frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, state = self.model.step(frame, TRecViTState(conv, lru, feature_sum, num_frames))
        return (out.logits, out.probs.float(), state.conv, state.lru, state.feature_sum,
                state.num_frames)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def _require(module: str, purpose: str, hint: str = _INSTALL_HINT):
    """Import an optional dependency or raise an ImportError saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{purpose} needs the '{module}' package, which is not installed; "
                          f"{hint}") from err


def _check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {path} is a directory; give a file name, e.g. {path / 'model.onnx'}")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _example_inputs(model: TRecViT, batch_size: int, image_size) -> tuple[torch.Tensor, ...]:
    """A random frame and a fresh state (init_state validates the sizes)."""
    state = model.init_state(batch_size, image_size=image_size)
    h, w = _image_hw(model, image_size)
    frame = torch.rand(batch_size, 3, h, w, generator=torch.Generator().manual_seed(0))
    return (frame.to(state.conv.device), *state)


def _image_hw(model: TRecViT, image_size) -> tuple[int, int]:
    if image_size is None:
        return model.config.image_hw
    h, w = size_hw(image_size, "image_size")
    return int(h), int(w)


def _dynamic_shapes(dynamic_batch: bool):
    if not dynamic_batch:
        return None
    batch = torch.export.Dim("batch", min=1)
    # frame [b, ...], then the state's fields with their batch axes (trecvit.state)
    return ({0: batch}, *({STATE_BATCH_AXIS[f]: batch} for f in TRecViTState._fields))


def _trace_batch(batch_size: int, dynamic_batch: bool) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    # torch.export specialises a size-1 axis to the constant 1, so a dynamic
    # batch is traced with 2 streams; the result runs with any batch size.
    return max(batch_size, 2) if dynamic_batch else batch_size


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' harmless chatter (missing torchvision ops, pytree deprecations,
    the optimiser's INFO log of every rewrite)."""
    levels = {"torch.onnx._internal.exporter._registration": logging.ERROR,
              "onnxscript": logging.WARNING, "onnx_ir": logging.WARNING}
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _export_program(model: TRecViT, batch_size: int, image_size, dynamic_batch: bool
                    ) -> torch.export.ExportedProgram:
    wrapper = StreamingStep(model)
    args = _example_inputs(model, _trace_batch(batch_size, dynamic_batch), image_size)
    with torch.no_grad(), _quiet_export():
        return torch.export.export(wrapper, args, dynamic_shapes=_dynamic_shapes(dynamic_batch))


# ----------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------
def export_step_torch(model: TRecViT, path: str | os.PathLike | None = None, *, batch_size: int = 1,
                      image_size: int | tuple[int, int] | None = None, dynamic_batch: bool = True,
                      overwrite: bool = False) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`StreamingStep` (the model's streaming step).

    Args:
        model: the model (its weights are baked into the program).
        path: if given, also save the program there with ``torch.export.save``
            (a ``.pt2`` file, written atomically; reload with ``torch.export.load``).
        batch_size: the batch of the example inputs; with ``dynamic_batch=False``
            the only batch size the program accepts.
        image_size: frame size, an int or ``(H, W)`` (default: the model's).
        dynamic_batch: make the batch axis dynamic (any size >= 1).
        overwrite: replace an existing ``path``.

    Returns:
        The ``ExportedProgram``; ``program.module()(frame, conv, lru, feature_sum,
        num_frames)`` returns ``(logits, probs, conv, lru, feature_sum, num_frames)``.
    """
    out = _check_output_path(path, overwrite) if path is not None else None
    program = _export_program(model, batch_size, image_size, dynamic_batch)
    if out is not None:
        # torch.export.save wants a name ending in .pt2
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.pt2", dir=out.parent)
        os.close(fd)
        try:
            torch.export.save(program, tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; use the usual mode
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return program


def export_step_onnx(model: TRecViT, path: str | os.PathLike, *, batch_size: int = 1,
                     image_size: int | tuple[int, int] | None = None, opset: int | None = None,
                     dynamic_batch: bool = True, overwrite: bool = False,
                     external_data: bool | None = None) -> Path:
    """Export the model's streaming step to an ONNX file.

    Inputs ``frame, conv_state, lru_state, feature_sum, num_frames``; outputs
    ``logits, probs, conv_state_out, lru_state_out, feature_sum_out,
    num_frames_out`` (shapes in the module docstring). The file is written to a
    temporary folder beside ``path``, checked with ``onnx.checker``, then moved
    into place: an interrupted or failed export leaves nothing behind.

    Args:
        model: the model (float32 weights are baked into the file).
        path: the ``.onnx`` file to write (its folder is created if needed).
        batch_size: the batch of the example inputs; with ``dynamic_batch=False``
            the only batch size the file accepts.
        image_size: frame size, an int or ``(H, W)`` (default: the model's).
        opset: ONNX opset (default: the exporter's, 20 with torch 2.13).
        dynamic_batch: make the batch axis dynamic (named ``batch``).
        overwrite: replace an existing file.
        external_data: keep the weights in a side file ``<name>.data``
            (default: only when they exceed ~1.8 GB, the protobuf limit being 2 GiB).

    Returns:
        ``path``.

    Raises:
        ValueError: ``path`` exists (without ``overwrite``) or is a folder; bad sizes.
        ImportError: ``onnx`` or ``onnxscript`` is not installed.
    """
    from trecvit._version import __version__

    onnx = _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise RuntimeError(f"ONNX export needs torch's torch.export-based ONNX exporter (torch >= 2.5; "
                           f"tested with 2.13); this is torch {torch.__version__}")
    out = _check_output_path(path, overwrite)
    if external_data is None:
        weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        external_data = weight_bytes > _EXTERNAL_DATA_BYTES
    wrapper = StreamingStep(model)
    args = _example_inputs(model, _trace_batch(batch_size, dynamic_batch), image_size)
    with torch.no_grad(), _quiet_export():
        program = torch.onnx.export(
            wrapper, args, dynamo=True, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            opset_version=opset, dynamic_shapes=_dynamic_shapes(dynamic_batch), verbose=False)
    h, w = _image_hw(model, image_size)
    program.model.metadata_props.update({
        "trecvit_version": __version__,
        "trecvit_config": json.dumps(model.config.to_dict()),
        "trecvit_image_hw": f"{h}x{w}",
        "trecvit_dynamic_batch": str(bool(dynamic_batch)).lower(),
        "trecvit_usage": "one call per frame; feed *_out back as the next call's state inputs; "
                         "start from zeros; num_frames == 0 restarts a stream",
    })
    program.model.doc_string = "TRecViT streaming step (trecvit.tools.export.export_step_onnx)"

    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp = tmp_dir / out.name
        program.save(str(tmp), external_data=external_data)
        onnx.checker.check_model(str(tmp), full_check=True)
        # Side files (external weights) first, the .onnx file last.
        for item in sorted(tmp_dir.iterdir(), key=lambda p: p.name == out.name):
            os.replace(item, out.parent / item.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------
# int8
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence the quantiser's advice to pre-process the model (logged on the root logger)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_step_onnx(src: str | os.PathLike, dst: str | os.PathLike, *, per_channel: bool = True,
                       reduce_range: bool = True, overwrite: bool = False) -> Path:
    """Quantise the matrix products of an exported step (:func:`export_step_onnx`) to int8.

    ONNX Runtime's dynamic quantisation (``onnxruntime.quantization.quantize_dynamic``):
    the weights of every ``MatMul`` with a constant weight become int8 (one scale per
    output channel with ``per_channel``), the activations are quantised to uint8 per call.
    Attention's two products (no constant weight), the block-diagonal gates (``Einsum``),
    the patch embedding, the norms and the recurrence stay float32, and so do the inputs,
    the outputs and the state.

    Args:
        src: the float32 ``.onnx`` file.
        dst: the int8 ``.onnx`` file to write (atomically).
        per_channel: per-output-channel weight scales (more accurate; default).
        reduce_range: 7-bit weights, for CPUs without VNNI (ONNX Runtime's AVX2 u8s8
            kernel saturates with full-range int8 weights); harmless, a little less
            precise, with VNNI. Default on, so a file runs well anywhere.
        overwrite: replace an existing ``dst``.

    Returns:
        ``dst``. Raises ImportError naming the int8 extra without onnx / onnxruntime.
    """
    onnx = _require("onnx", "int8 quantisation", _INT8_HINT)
    _require("onnxruntime", "int8 quantisation", _INT8_HINT)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(src)
    out = _check_output_path(dst, overwrite)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model {src} not found")
    external = any(src.parent.glob(f"{src.name}.data")) or src.stat().st_size > _EXTERNAL_DATA_BYTES
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp = tmp_dir / out.name
        with _quiet_quantizer():
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel,
                             reduce_range=reduce_range, op_types_to_quantize=["MatMul"],
                             use_external_data_format=external,
                             extra_options={"MatMulConstBOnly": True})
        model = onnx.load(str(tmp), load_external_data=False)
        props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
        props.update({"trecvit_precision": "int8", "trecvit_quantization": json.dumps(
            {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8", "activations": "uint8",
             "per_channel": per_channel, "reduce_range": reduce_range, "ops": ["MatMul"]})})
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        if not external:  # a file with external weights keeps the quantiser's metadata
            onnx.save(model, str(tmp))
        for item in sorted(tmp_dir.iterdir(), key=lambda p: p.name == out.name):
            os.replace(item, out.parent / item.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out


def export_step_onnx_int8(model: TRecViT, path: str | os.PathLike, *, batch_size: int = 1,
                          image_size: int | tuple[int, int] | None = None, opset: int | None = None,
                          dynamic_batch: bool = True, overwrite: bool = False, per_channel: bool = True,
                          reduce_range: bool = True) -> Path:
    """:func:`export_step_onnx` then :func:`quantize_step_onnx`: the int8 step in ``path``
    (the float32 export is made in a temporary folder and removed). Same arguments."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        _require(module, "int8 export", _INT8_HINT)
    out = _check_output_path(path, overwrite)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        fp32 = export_step_onnx(model, Path(tmp) / "fp32.onnx", batch_size=batch_size, image_size=image_size,
                                opset=opset, dynamic_batch=dynamic_batch)
        return quantize_step_onnx(fp32, out, per_channel=per_channel, reduce_range=reduce_range,
                                  overwrite=overwrite)


# ----------------------------------------------------------------------------
# running the ONNX file
# ----------------------------------------------------------------------------
class OnnxStreamingSession:
    """An onnxruntime session of an exported step, used like :meth:`TRecViT.step`.

    Example::

        session = OnnxStreamingSession("trecvit_step.onnx")
        state = session.init_state(batch_size=1)
        for frame in frames:                       # [b, 3, H, W] float32
            out, state = session.step(frame, state)
            out.logits                             # [b, classes] (numpy)
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None):
        ort = _require("onnxruntime", "running an ONNX model")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path} not found")
        self.path = path
        options = ort.SessionOptions()
        if threads:  # default: ONNX Runtime's own choice (one thread per physical core)
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(path), options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        inputs = {i.name: i for i in self.session.get_inputs()}
        missing = [name for name in INPUT_NAMES if name not in inputs]
        if missing:
            raise ValueError(f"{path} is not a TRecViT step export: it lacks input(s) {missing} "
                             f"(expected {list(INPUT_NAMES)})")
        self.input_shapes = {name: list(inputs[name].shape) for name in INPUT_NAMES}
        self.image_hw = tuple(self.input_shapes["frame"][2:])
        fixed = self.input_shapes["frame"][0]
        self.fixed_batch = fixed if isinstance(fixed, int) else None

    def init_state(self, batch_size: int = 1) -> TRecViTState:
        """All-zero state tensors (numpy) for ``batch_size`` new streams."""
        self._check_batch(batch_size)
        arrays = []
        for name in STATE_NAMES:
            shape = self.input_shapes[name]
            batch_axis = 1 if name in ("conv_state", "lru_state") else 0
            shape = [batch_size if i == batch_axis else d for i, d in enumerate(shape)]
            dtype = np.int64 if name == "num_frames" else np.float32
            arrays.append(np.zeros(shape, dtype=dtype))
        return TRecViTState(*arrays)

    def _check_batch(self, batch_size: int) -> None:
        if self.fixed_batch is not None and batch_size != self.fixed_batch:
            raise ValueError(f"{self.path} was exported for batch size {self.fixed_batch} only "
                             f"(export with a dynamic batch to run {batch_size} streams)")

    def step(self, frame, state: TRecViTState) -> tuple[StepOutputs, TRecViTState]:
        """One frame ``[b, 3, H, W]`` (numpy or torch) -> ``(outputs, new_state)``, numpy arrays."""
        frame = _to_numpy(frame, np.float32)
        if frame.ndim != 4 or frame.shape[1] != 3 or tuple(frame.shape[2:]) != self.image_hw:
            raise ValueError(f"frame must be [b, 3, {self.image_hw[0]}, {self.image_hw[1]}] for "
                             f"{self.path}, got shape {tuple(frame.shape)}")
        self._check_batch(frame.shape[0])
        feeds = {"frame": frame}
        for name, value in zip(STATE_NAMES, state):
            feeds[name] = _to_numpy(value, np.int64 if name == "num_frames" else np.float32)
        outputs = StepOutputs(*self.session.run(list(OUTPUT_NAMES), feeds))
        return outputs, outputs.state


def _to_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


@dataclass
class OnnxStreamOutput:
    """Result of :func:`run_onnx_stream` (torch tensors, on the CPU).

    Attributes:
        logits: ``[b, t, classes]``, the running prediction after every frame.
        probs: ``[b, t, classes]``, its softmax.
        state: the state after the last frame (pass it back in to continue).
    """

    logits: torch.Tensor
    probs: torch.Tensor
    state: TRecViTState


def run_onnx_stream(path: str | os.PathLike | OnnxStreamingSession, frames,
                    state: TRecViTState | None = None, *, providers: Sequence[str] | None = None
                    ) -> OnnxStreamOutput:
    """Run ``frames`` through an exported step with onnxruntime, carrying the state.

    Args:
        path: the ``.onnx`` file from :func:`export_step_onnx` (or an open session).
        frames: a video batch ``[b, t, 3, H, W]`` (torch or numpy, float, RGB in [0, 1]).
        state: the state to start from (default: fresh streams).
        providers: onnxruntime execution providers (default: CPU).

    Returns:
        :class:`OnnxStreamOutput` with the per-frame logits and probabilities.
    """
    session = path if isinstance(path, OnnxStreamingSession) else OnnxStreamingSession(path, providers)
    video = _to_numpy(frames, np.float32)
    if video.ndim != 5:
        raise ValueError(f"frames must be [b, t, 3, H, W], got shape {tuple(video.shape)} (a single "
                         f"stream [t, 3, H, W] needs a batch axis: frames[None])")
    if video.shape[1] == 0:
        raise ValueError("frames is empty: no frames to run")
    current = session.init_state(video.shape[0]) if state is None else state
    logits, probs = [], []
    for t in range(video.shape[1]):
        out, current = session.step(video[:, t], current)
        logits.append(out.logits)
        probs.append(out.probs)
    return OnnxStreamOutput(
        logits=torch.from_numpy(np.stack(logits, axis=1)),
        probs=torch.from_numpy(np.stack(probs, axis=1)),
        state=TRecViTState(*(torch.from_numpy(np.asarray(a)) for a in current)),
    )


# ----------------------------------------------------------------------------
# checking an export against the eager model
# ----------------------------------------------------------------------------
StepFn = Callable[..., Sequence]


def compare_step(model: TRecViT, step: StepFn, *, num_frames: int = 20, batch_size: int = 1,
                 image_size: int | tuple[int, int] | None = None, seed: int = 0) -> dict[str, float]:
    """Run ``num_frames`` random frames through ``model.step`` and through ``step``
    (a callable ``(frame, conv, lru, feature_sum, num_frames) -> 6 outputs``,
    each carrying its own state) and return the largest absolute difference of
    every output over all frames, keyed by the ONNX output names (``inf`` where
    ``step`` gave NaN)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    h, w = _image_hw(model, image_size)
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    eager_state = model.init_state(batch_size, image_size=(h, w))
    other_state = tuple(eager_state)
    diffs = dict.fromkeys(OUTPUT_NAMES, 0.0)
    with torch.no_grad():
        for _ in range(num_frames):
            frame = torch.rand(batch_size, 3, h, w, generator=generator).to(device)
            eager, eager_state = model.step(frame, eager_state)
            outputs = step(frame, *other_state)
            expected = (eager.logits, eager.probs, *eager_state)
            for name, got, want in zip(OUTPUT_NAMES, outputs, expected):
                got = got if isinstance(got, torch.Tensor) else torch.from_numpy(np.asarray(got))
                if got.shape != want.shape:
                    raise ValueError(f"exported step output {name} has shape {tuple(got.shape)}, "
                                     f"model.step gives {tuple(want.shape)}")
                diff = float((got.to("cpu", torch.float64) - want.to("cpu", torch.float64)).abs().max())
                diffs[name] = max(diffs[name], float("inf") if math.isnan(diff) else diff)
            other_state = tuple(outputs[2:])
    return diffs


def compare_onnx_step(model: TRecViT, path: str | os.PathLike, *, num_frames: int = 20,
                      batch_size: int = 1, seed: int = 0, providers: Sequence[str] | None = None
                      ) -> dict[str, float]:
    """:func:`compare_step` for an ONNX file run with onnxruntime."""
    session = OnnxStreamingSession(path, providers)

    def onnx_step(frame, *state):
        out, _ = session.step(frame, TRecViTState(*state))
        return out

    return compare_step(model, onnx_step, num_frames=num_frames, batch_size=batch_size,
                        image_size=session.image_hw, seed=seed)


def compare_exported_step(model: TRecViT, program: torch.export.ExportedProgram, *, num_frames: int = 20,
                          batch_size: int = 1, image_size: int | tuple[int, int] | None = None,
                          seed: int = 0) -> dict[str, float]:
    """:func:`compare_step` for a program from :func:`export_step_torch`."""
    return compare_step(model, program.module(), num_frames=num_frames, batch_size=batch_size,
                        image_size=image_size, seed=seed)
