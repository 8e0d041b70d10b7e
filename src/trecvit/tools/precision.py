"""Inference in float32, bfloat16 or int8, eager or compiled: ``--precision`` and ``--compile``.

Issue "Real time on the CPUs people have" (no table of the paper behind it). One
wrapper, :class:`InferenceModel`, runs a trained model the way every inference command
(``classify``, ``classify --stream``, ``evaluate``, ``profile``) asks for:

* ``fp32``: the model as it is.
* ``bf16``: bfloat16 matrix products. Two ways, both kept: ``"weights"`` (the default: a
  bfloat16 copy of the weights, so nothing is cast per call, and the elementwise work
  between the matmuls runs in bfloat16 too) and ``"autocast"`` (``torch.autocast``:
  float32 weights cast to bfloat16 at every call, elementwise work in float32). The
  RG-LRU's eigenvalue parameter ``a_param`` stays float32 in the bfloat16 copy, and the
  recurrence and the streaming state are float32 in every precision (as in bf16 training).
  ``benchmarks/run.py --only precision`` measures the two side by side.
* ``int8``: the exported streaming step (:mod:`trecvit.tools.export`) with its matrix
  products quantised by ONNX Runtime's dynamic quantisation (int8 weights per output
  channel, activations quantised per call), run in ONNX Runtime. Chosen over torchao (not
  a dependency here, and its CPU int8 path needs ``torch.compile`` to be fast) and OpenVINO
  (a large extra runtime) because the ONNX export already exists and is tested, and ONNX
  Runtime has int8 kernels for AVX2, VNNI and Arm. On a CPU without VNNI the weights are
  quantised to 7 bits (``reduce_range``), as ONNX Runtime advises: its AVX2 kernel
  saturates with full-range int8 weights. A whole clip runs as that step over its frames
  (TRecViT's running prediction after the last frame of a clip equals the full-clip one),
  with the clips of a video as a batch of streams: one export serves clips and streams. The
  quantised file is cached (``$TRECVIT_CACHE``, default ``~/.cache/trecvit``), keyed by the
  weights, the frame size and the versions. Needs the int8 extra: ``pip install
  "trecvit[int8]"``.

``auto`` (:func:`resolve_precision`) takes bf16 where the hardware has a bfloat16 unit (AMX
or AVX-512 BF16 on x86, BF16 on Arm, or a GPU that supports it) and fp32 otherwise; int8 is
an explicit choice. ``compile`` wraps the forward and the step in ``torch.compile`` with
``dynamic=False`` (one graph per input shape, compiled on its first call and reused) and
Inductor's ``freezing`` (weights as constants: casts folded, CPU weights pre-packed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from trecvit.state import TRecViTState

PRECISIONS = ("auto", "fp32", "bf16", "int8")
BF16_MODES = ("weights", "autocast")
INT8_EXTRA = 'pip install "trecvit[int8]"'
FLOAT32_PARAMETERS = ("a_param",)  # kept float32 in the bfloat16 copy (the RG-LRU's eigenvalues)


# --------------------------------------------------------------------------- the choice

def check_precision(precision: str, flag: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"{flag} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolve_precision(precision: str = "auto", device: torch.device | str = "cpu") -> tuple[str, str]:
    """The precision to run with on ``device``, and why.

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"``.
        device: where the model runs.

    Returns:
        ``(precision, reason)``, e.g. ``("fp32", "auto: this CPU has no AVX-512 BF16 or AMX;
        bf16 would be emulated")``; an explicit choice is returned as it is (``"as asked"``).

    Raises:
        ValueError: an unknown precision, or int8 on a device other than the CPU.
    """
    from trecvit.tools.machine import machine_info

    check_precision(precision)
    device = torch.device(device)
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"precision int8 runs on the CPU (ONNX Runtime), not on {device}; use "
                         "--device cpu, or --precision bf16 on a GPU")
    if precision != "auto":
        return precision, "as asked"
    if device.type == "cuda":
        info = machine_info(device)
        if info.gpu_bf16:
            return "bf16", f"auto: {info.name} runs bfloat16 natively"
        return "fp32", f"auto: {info.name} does not support bfloat16"
    if device.type != "cpu":
        return "fp32", f"auto: no bfloat16 check for {device.type} devices"
    unit = machine_info("cpu").bf16_unit
    if unit is not None:
        return "bf16", f"auto: this CPU has {unit}"
    lacks = "Arm BF16" if platform.machine().lower() in ("aarch64", "arm64") else "AVX-512 BF16 or AMX"
    return "fp32", f"auto: this CPU has no {lacks}; bf16 would be emulated; try --precision int8"


def format_precision(precision: str, reason: str, compiled: bool = False) -> str:
    """The line the commands print: ``precision: fp32 (auto: ...)``."""
    return f"precision: {precision}{', compiled' if compiled else ''} ({reason})"


def add_precision_arguments(parser, *, what: str = "the model", default: str = "auto") -> None:
    """``--precision`` and ``--compile`` with their help (shared by the inference commands)."""
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=default,
        help=f"number format to run {what} in: fp32; bf16 (bfloat16 matmuls, float32 recurrence "
             "state); int8 (ONNX Runtime's int8 quantisation of the exported step, CPU only, needs "
             f'{INT8_EXTRA}); auto takes bf16 where the CPU has AMX or AVX-512 BF16 (or the GPU '
             f"supports it), else fp32, and prints which and why (default {default})")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the forward and the step (fp32 and bf16), compiled once per input "
             "shape and reused; the first call is slow (default: eager)")


# --------------------------------------------------------------------------- bfloat16

def bf16_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with bfloat16 weights, except :data:`FLOAT32_PARAMETERS` (float32).

    ``model`` is left as it is."""
    originals = dict(model.named_parameters())
    out = copy.deepcopy(model).to(torch.bfloat16)
    for name, param in out.named_parameters():
        if name.rsplit(".", 1)[-1] in FLOAT32_PARAMETERS:
            param.data = originals[name].data.detach().clone()
    return out


# --------------------------------------------------------------------------- int8

def default_cache_dir() -> Path:
    """``$TRECVIT_CACHE``, else ``$XDG_CACHE_HOME/trecvit``, else ``~/.cache/trecvit``."""
    if os.environ.get("TRECVIT_CACHE"):
        return Path(os.environ["TRECVIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trecvit"


def _require_int8() -> None:
    import importlib

    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(f"precision int8 needs the '{module}' package, which is not installed; "
                              f"install the int8 extra: {INT8_EXTRA}") from err


def _model_key(model: nn.Module, image_hw: tuple[int, int], settings: dict) -> str:
    """A hash of everything the quantised step depends on."""
    import onnxruntime

    from trecvit._version import __version__

    digest = hashlib.sha256(json.dumps({"config": model.config.to_dict(), "image_hw": list(image_hw),
                                        "settings": settings, "trecvit": __version__,
                                        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
                                       sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


class Int8Step:
    """ONNX Runtime sessions of ``model``'s quantised step, one per frame size, built on first use.

    Args:
        model: a float32 TRecViT on the CPU (the export bakes its weights in).
        cache_dir: where the quantised files are kept (default :func:`default_cache_dir`);
            ``False``: a temporary folder, removed with this object.
        per_channel: one int8 scale per output channel of each weight (more accurate).
        reduce_range: 7-bit weights (default: where the CPU has no VNNI, see the module docstring).
        progress: called with a message before a (slow) export.
    """

    def __init__(self, model: nn.Module, *, cache_dir: str | Path | bool | None = None,
                 per_channel: bool = True, reduce_range: bool | None = None,
                 progress: Callable[[str], None] | None = None):
        from trecvit.model import TRecViT
        from trecvit.tools.machine import cpu_features

        if not isinstance(model, TRecViT):
            arch = getattr(model, "arch", type(model).__name__)
            raise ValueError(f"precision int8 runs TRecViT's exported step; a {arch!r} model has none "
                             "(use fp32 or bf16)")
        if model.device.type != "cpu":
            raise ValueError(f"precision int8 runs on the CPU; the model is on {model.device}")
        _require_int8()
        self.model = model
        if reduce_range is None:
            reduce_range = not cpu_features().vnni
        self.settings = {"per_channel": bool(per_channel), "reduce_range": bool(reduce_range)}
        self._tmp = tempfile.TemporaryDirectory(prefix="trecvit-int8-") if cache_dir is False else None
        cache = Path(cache_dir or default_cache_dir()) / "int8" if cache_dir is not False else None
        self.cache_dir = Path(self._tmp.name) if self._tmp else cache
        self.progress = progress
        self.sessions: dict[tuple[int, int], object] = {}
        self.files: dict[tuple[int, int], Path] = {}

    def file(self, image_hw: tuple[int, int], fp32_copy: str | Path | None = None) -> Path:
        """The quantised step for ``image_hw`` frames: from the cache, else exported and quantised
        (then the float32 export is also kept as ``fp32_copy``, if given: the benchmarks run it)."""
        from trecvit.tools.export import export_step_onnx, quantize_step_onnx

        image_hw = (int(image_hw[0]), int(image_hw[1]))
        path = self.cache_dir / f"step-{_model_key(self.model, image_hw, self.settings)}.onnx"
        if not path.is_file() or (fp32_copy is not None and not Path(fp32_copy).is_file()):
            if self.progress:
                self.progress(f"int8: exporting the step for {image_hw[0]}x{image_hw[1]} frames to ONNX "
                              f"and quantising its matmuls (once per model and frame size; kept in "
                              f"{path.parent})")
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as tmp:
                fp32 = export_step_onnx(self.model, Path(tmp) / "fp32.onnx", image_size=image_hw,
                                        dynamic_batch=True)
                quantize_step_onnx(fp32, Path(tmp) / path.name, **self.settings)
                os.replace(Path(tmp) / path.name, path)  # whole or not at all
                if fp32_copy is not None:
                    os.replace(fp32, fp32_copy)
        return path

    def session(self, image_hw: tuple[int, int]):
        """The :class:`~trecvit.tools.export.OnnxStreamingSession` for ``image_hw`` frames."""
        from trecvit.tools.export import OnnxStreamingSession

        key = (int(image_hw[0]), int(image_hw[1]))
        if key not in self.sessions:
            self.files[key] = self.file(key)
            self.sessions[key] = OnnxStreamingSession(self.files[key], threads=torch.get_num_threads())
        return self.sessions[key]

    def step(self, frame: torch.Tensor, state: TRecViTState
             ) -> tuple[torch.Tensor, torch.Tensor, TRecViTState]:
        """``frame [b, 3, H, W]`` -> ``(logits [b, classes], probs, new_state)``, torch tensors."""
        out, new = self.session(tuple(frame.shape[-2:])).step(frame, state)
        as_torch = [torch.from_numpy(a) for a in (out.logits, out.probs, *new)]
        return as_torch[0], as_torch[1], TRecViTState(*as_torch[2:])


# --------------------------------------------------------------------------- the wrapper

@dataclass
class InferenceOutput:
    """Output of :class:`InferenceModel` (float32): ``logits`` and ``probs`` ``[b, classes]``;
    ``pre_logits`` and ``encoded`` where the precision has them (not int8)."""

    logits: torch.Tensor
    probs: torch.Tensor
    pre_logits: torch.Tensor | None = None
    encoded: torch.Tensor | None = None


class InferenceModel(nn.Module):
    """A trained model prepared for one precision (see the module docstring).

    Used like the model: ``forward(video [b, t, 3, H, W])`` and ``step(frame [b, 3, H, W],
    state)`` (from :meth:`init_state`), whose ``logits`` and ``probs`` are float32 and whose
    state is float32 in every precision. ``config``, ``device``, ``precision``, ``reason``
    and ``compiled`` say what it runs.

    Args:
        model: the trained model (float32; it is not modified).
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` (resolve ``"auto"`` first:
            :func:`prepare_model` does).
        reason: why this precision (printed by the commands).
        compile: ``torch.compile`` the forward and the step (not with int8).
        bf16_mode: ``"weights"`` or ``"autocast"``.
        compile_backend: the ``torch.compile`` backend (``"inductor"``; ``"eager"`` in tests).
        freezing: Inductor's ``freezing`` option (weights as constants).
        int8_options: keyword arguments of :class:`Int8Step` (``cache_dir``, ``progress``, ...).
    """

    def __init__(self, model: nn.Module, precision: str = "fp32", *, reason: str = "as asked",
                 compile: bool = False, bf16_mode: str = "weights", compile_backend: str = "inductor",
                 freezing: bool = True, int8_options: dict | None = None):
        super().__init__()
        if precision not in PRECISIONS[1:]:
            raise ValueError(f"precision must be one of fp32, bf16, int8 (resolve auto with "
                             f"resolve_precision), got {precision!r}")
        if bf16_mode not in BF16_MODES:
            raise ValueError(f"bf16_mode must be one of {', '.join(BF16_MODES)}, got {bf16_mode!r}")
        if compile and precision == "int8":
            raise ValueError("--compile applies to fp32 and bf16; int8 runs in ONNX Runtime, which "
                             "optimises its graph itself (drop --compile)")
        from trecvit.model import TRecViT

        self.config = model.config
        self.precision, self.reason, self.compiled = precision, reason, bool(compile)
        # bfloat16 weights for TRecViT (its recurrence and state stay float32); autocast elsewhere
        self.bf16_mode = bf16_mode if isinstance(model, TRecViT) else "autocast"
        weights = precision == "bf16" and self.bf16_mode == "weights"
        self.model = (bf16_weights(model) if weights else model).eval()
        self._autocast = precision == "bf16" and self.bf16_mode == "autocast"
        self.int8 = Int8Step(model, **(int8_options or {})) if precision == "int8" else None
        self._forward, self._step = self._run_forward, self._run_step
        if compile:
            options = {"freezing": True} if freezing and compile_backend == "inductor" else None
            self._forward = torch.compile(self._run_forward, dynamic=False, backend=compile_backend,
                                          options=options)
            self._step = torch.compile(self._run_step, dynamic=False, backend=compile_backend,
                                       options=options)

    # -- what the commands read
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def arch(self) -> str:
        return self.model.arch

    def describe(self) -> str:
        """``fp32``, ``bf16 (weights), compiled``, ``int8 (ONNX Runtime)``."""
        what = {"fp32": "fp32", "bf16": f"bf16 ({self.bf16_mode})", "int8": "int8 (ONNX Runtime)"}
        return what[self.precision] + (", compiled" if self.compiled else "")

    def require_streaming(self, what: str) -> None:
        self.model.require_streaming(what)

    def num_clips(self, num_frames: int) -> int:
        return self.model.num_clips(num_frames)

    def init_state(self, batch_size: int, image_size=None, device=None) -> TRecViTState:
        """A fresh float32 state (:meth:`TRecViT.init_state`)."""
        return self.model.init_state(batch_size, image_size=image_size, device=device)

    # -- running
    def _amp(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast)

    def _run_forward(self, video: torch.Tensor):
        with self._amp():
            return self.model(video)

    def _run_step(self, frame: torch.Tensor, state: TRecViTState):
        with self._amp():
            return self.model.step(frame, state)

    def forward(self, video: torch.Tensor) -> InferenceOutput:
        """Classify ``video [b, t, 3, H, W]`` (float, RGB in [0, 1])."""
        with torch.no_grad():
            if self.int8 is not None:
                return self._int8_forward(video)
            out = self._forward(video)
        return InferenceOutput(out.logits.float(), out.probs.float(), out.pre_logits.float(), out.encoded)

    def step(self, frame: torch.Tensor, state: TRecViTState) -> tuple[InferenceOutput, TRecViTState]:
        """One frame ``[b, 3, H, W]`` of ``b`` streams -> ``(output, new_state)``."""
        with torch.no_grad():
            if self.int8 is not None:
                self.model.encoder.check_stream_input(frame, state, "frame", "B3HW",
                                                      self.model.head.feature_dim)
                logits, probs, new_state = self.int8.step(frame, state)
                return InferenceOutput(logits, probs), new_state
            out, new_state = self._step(frame, state)
        return InferenceOutput(out.logits.float(), out.probs.float(), out.pre_logits.float(),
                               out.encoded), new_state

    def _int8_forward(self, video: torch.Tensor) -> InferenceOutput:
        """The clips of ``video`` as a batch of streams through the int8 step: each clip's
        prediction after its last frame, averaged over clips (as :meth:`TRecViT.forward`)."""
        num_clips = self.model.encoder.check_clips(video)
        b, t = video.shape[:2]
        clips = video.reshape(b * num_clips, t // num_clips, *video.shape[2:])  # (b c, t/c, 3, H, W)
        state = self.model.init_state(b * num_clips, image_size=tuple(video.shape[-2:]))
        for i in range(clips.shape[1]):
            logits, _, state = self.int8.step(clips[:, i], state)
        clip_logits = logits.view(b, num_clips, -1)  # (b, c, classes)
        return InferenceOutput(clip_logits.mean(dim=1), clip_logits.softmax(dim=-1).mean(dim=1))

    def warmup(self, image_size: tuple[int, int], num_frames: int | None = None, *,
               stream: bool = False) -> None:
        """Run once on zeros of the shapes to come: compiles, or builds the int8 session."""
        h, w = image_size
        if self.int8 is not None:
            self.int8.session((h, w))
            return
        with torch.no_grad():
            if stream:
                self.step(torch.zeros(1, 3, h, w, device=self.device), self.init_state(1, (h, w)))
            else:
                self(torch.zeros(1, num_frames or 1, 3, h, w, device=self.device))


def prepare_model(model: nn.Module, precision: str = "auto", *, device: torch.device | str | None = None,
                  compile: bool = False, **options) -> InferenceModel:
    """:func:`resolve_precision`, then :class:`InferenceModel` (``options`` are its keywords)."""
    chosen, reason = resolve_precision(precision, device if device is not None else model.device)
    return InferenceModel(model, chosen, reason=reason, compile=compile, **options)


# --------------------------------------------------------------------------- accuracy bounds

@dataclass
class Agreement:
    """One precision against fp32 on a set of clips."""

    precision: str
    clips: int
    top1_agreement: float  #: fraction of clips whose top-1 class equals fp32's
    max_logit_diff: float  #: largest |logit - fp32 logit| over clips and classes
    top1: float | None = None  #: accuracy against the labels, if given
    fp32_top1: float | None = None


def clip_logits(runner: InferenceModel, videos: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """``runner``'s logits ``[N, classes]`` of ``videos [N, t, 3, H, W]``, in batches."""
    return torch.cat([runner(videos[i:i + batch_size]).logits for i in range(0, len(videos), batch_size)])


def compare_precisions(model: nn.Module, videos: torch.Tensor, labels: torch.Tensor | None = None,
                       precisions=("bf16", "int8"), *, batch_size: int = 64,
                       options: dict | None = None) -> list[Agreement]:
    """Top-1 agreement with fp32 and the largest |logit difference| of each of ``precisions``
    (a name, or ``(name, InferenceModel keywords)``) on ``videos [N, t, 3, H, W]``."""
    reference = clip_logits(InferenceModel(model, "fp32"), videos, batch_size)
    top = reference.argmax(-1)
    fp32_top1 = None if labels is None else float((top == labels).float().mean())
    rows = []
    for item in precisions:
        name, extra = (item, {}) if isinstance(item, str) else item
        logits = clip_logits(InferenceModel(model, name, **{**(options or {}), **extra}), videos, batch_size)
        pred = logits.argmax(-1)
        rows.append(Agreement(name if not extra else f"{name} {extra}", len(videos),
                              float((pred == top).float().mean()), float((logits - reference).abs().max()),
                              None if labels is None else float((pred == labels).float().mean()), fp32_top1))
    return rows


@dataclass
class StreamDrift:
    """A long stream in one precision against the same stream in fp32."""

    precision: str
    frames: int
    finite: bool  #: the state and the logits stayed finite
    max_state_diff: float  #: largest |state - fp32 state| (lru and conv states) over the marks
    max_state_abs: float  #: largest |fp32 state| over the marks, for scale
    max_prob_diff: float  #: largest |prob - fp32 prob| over the marks
    top1_agreement: float  #: fraction of the marks whose running top-1 equals fp32's
    marks: list  #: per mark: frame, state diff, prob diff

    @property
    def relative_state_diff(self) -> float:
        return self.max_state_diff / max(self.max_state_abs, 1e-12)


def _absmax(t: torch.Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0  # the conv state is empty without the conv


def stream_drift(model: nn.Module, frames: torch.Tensor, num_frames: int, precision: str = "bf16", *,
                 every: int = 100, options: dict | None = None) -> StreamDrift:
    """Stream ``num_frames`` frames (``frames [k, b, 3, H, W]``, cycled) through ``model.step``
    in fp32 and in ``precision`` side by side, comparing states and predictions every
    ``every`` frames."""
    ref, other = InferenceModel(model, "fp32"), InferenceModel(model, precision, **(options or {}))
    hw = tuple(frames.shape[-2:])
    s32 = s = ref.init_state(frames.shape[1], hw)
    finite, marks, agree = True, [], []
    worst = scale = prob = 0.0
    for i in range(1, num_frames + 1):
        frame = frames[(i - 1) % len(frames)]
        o32, s32 = ref.step(frame, s32)
        o, s = other.step(frame, s)
        if i % every == 0 or i == num_frames:
            diff = max(_absmax(s.lru - s32.lru), _absmax(s.conv - s32.conv))
            pdiff = float((o.probs - o32.probs).abs().max())
            finite &= bool(torch.isfinite(s.lru).all() and torch.isfinite(s.conv).all()
                           and torch.isfinite(o.logits).all())
            worst, prob = max(worst, diff), max(prob, pdiff)
            scale = max(scale, _absmax(s32.lru), _absmax(s32.conv))
            agree.append(float((o.probs.argmax(-1) == o32.probs.argmax(-1)).float().mean()))
            marks.append({"frame": i, "state_diff": diff, "prob_diff": pdiff})
    return StreamDrift(precision, num_frames, finite, worst, scale, prob, sum(agree) / len(agree), marks)


__all__ = ["BF16_MODES", "FLOAT32_PARAMETERS", "INT8_EXTRA", "PRECISIONS", "Agreement", "InferenceModel",
           "InferenceOutput", "Int8Step", "StreamDrift", "add_precision_arguments", "bf16_weights",
           "check_precision", "clip_logits", "compare_precisions", "default_cache_dir", "format_precision",
           "prepare_model", "resolve_precision", "stream_drift"]
