"""What this machine can do for inference: its CPU, the ISA features found, measured matmul rates.

Used by ``--precision auto`` (:func:`trecvit.tools.precision.resolve_precision`: bfloat16 only
where the CPU has a bfloat16 unit, AMX or AVX-512 BF16, or the GPU supports it), by
``trecvit profile`` (which prints :func:`format_machine`) and by ``benchmarks/run.py --only
precision`` (whose targets say which feature a machine lacks). Issue "Real time on the CPUs
people have"; there is no table of the paper behind it.

The ISA features come from ``/proc/cpuinfo`` (Linux; x86 ``flags`` or Arm ``Features``),
else from PyTorch's own CPU probes. The matmul rates are measured now, in this process,
because the machines we run on are shared and noisy: float32 and bfloat16 ``torch.mm``, and
int8 through ONNX Runtime's ``MatMulInteger`` (uint8 x int8, the kernel of the int8 path) or,
without ONNX Runtime, ``torch._int_mm``. Each rate takes a fraction of a second: the matrix
size is chosen from a first small run so that one product lasts about ``target_s``, which
matters where bfloat16 is emulated (50x slower than float32 on an AVX2 CPU).
"""

from __future__ import annotations

import functools
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

# The features we report, and the /proc/cpuinfo flags (x86 "flags", Arm "Features") of each.
_FLAGS = {
    "avx2": ("avx2",), "fma": ("fma",), "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"), "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",), "amx_bf16": ("amx_bf16",), "amx_int8": ("amx_int8",),
    "amx_tile": ("amx_tile",), "avx512_fp16": ("avx512_fp16",),
    "neon": ("asimd", "neon"), "arm_bf16": ("bf16",), "arm_i8mm": ("i8mm",), "arm_dotprod": ("asimddp",),
}


@dataclass(frozen=True)
class CPUFeatures:
    """The ISA features of this CPU that matter for inference (``True`` where found)."""

    avx2: bool = False
    fma: bool = False
    avx512: bool = False  #: AVX-512 F
    avx512_vnni: bool = False
    avx_vnni: bool = False  #: the 256-bit VNNI of newer cores without AVX-512
    avx512_bf16: bool = False
    amx_bf16: bool = False
    amx_int8: bool = False
    amx_tile: bool = False
    avx512_fp16: bool = False
    neon: bool = False
    arm_bf16: bool = False  #: Arm BF16 (BFMMLA)
    arm_i8mm: bool = False
    arm_dotprod: bool = False
    source: str = "none"  #: where the flags came from: "/proc/cpuinfo", "torch" or "none"

    @property
    def vnni(self) -> bool:
        """An int8 dot-product instruction (x86 VNNI, AMX-INT8, Arm dot product / i8mm)."""
        return self.avx512_vnni or self.avx_vnni or self.amx_int8 or self.arm_dotprod or self.arm_i8mm

    @property
    def amx(self) -> bool:
        return self.amx_bf16 and self.amx_tile

    @property
    def bf16_unit(self) -> str | None:
        """The bfloat16 matrix unit found (``"AMX"``, ``"AVX-512 BF16"``, ``"Arm BF16"``), else None."""
        if self.amx:
            return "AMX"
        if self.avx512_bf16:
            return "AVX-512 BF16"
        if self.arm_bf16:
            return "Arm BF16"
        return None

    def summary(self) -> dict[str, bool]:
        """The four the issue asks about, and the two beneath them: name -> found."""
        return {"AVX2": self.avx2, "FMA": self.fma, "AVX-512": self.avx512, "VNNI": self.vnni,
                "AVX-512 BF16": self.avx512_bf16, "AMX": self.amx}


def _cpuinfo() -> tuple[str, set[str]]:
    """``(model name, flags)`` from /proc/cpuinfo (empty where there is none)."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not name:
                    name = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name, flags


def _torch_probe(name: str) -> bool:
    fn = getattr(torch.cpu, f"_is_{name}_supported", None)  # private, but present since torch 2.3
    try:
        return bool(fn()) if fn is not None else False
    except Exception:  # noqa: BLE001 - a probe that fails means "not found"
        return False


@functools.lru_cache(maxsize=1)
def cpu_features() -> CPUFeatures:
    """The features of this CPU (read once): /proc/cpuinfo, else PyTorch's CPU probes."""
    _, flags = _cpuinfo()
    if flags:
        found = {key: any(f in flags for f in names) for key, names in _FLAGS.items()}
        return CPUFeatures(**found, source="/proc/cpuinfo")
    amx = _torch_probe("amx_tile")
    return CPUFeatures(avx2=_torch_probe("avx2"), avx512=_torch_probe("avx512"),
                       avx512_vnni=_torch_probe("vnni"), avx512_bf16=_torch_probe("avx512_bf16"),
                       amx_bf16=amx, amx_tile=amx, source="torch")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    name, _ = _cpuinfo()
    return name or platform.processor() or platform.machine() or "unknown CPU"


@dataclass
class MachineInfo:
    """The device inference runs on: its name, threads and features."""

    device: str  #: "cpu" or "cuda:0", ...
    name: str  #: the CPU model or the GPU name
    threads: int
    torch_cpu_capability: str  #: the kernels PyTorch dispatches to (``DEFAULT``, ``AVX2``, ``AVX512``)
    features: CPUFeatures
    gpu_bf16: bool | None = None  #: on a GPU, whether it runs bfloat16 natively

    def to_dict(self) -> dict:
        out = asdict(self)
        out["features_found"] = self.features.summary()
        out["bf16_unit"] = self.bf16_unit
        return out

    @property
    def bf16_unit(self) -> str | None:
        if self.device.startswith("cuda"):
            return "GPU" if self.gpu_bf16 else None
        return self.features.bf16_unit


def machine_info(device: torch.device | str = "cpu") -> MachineInfo:
    """:class:`MachineInfo` of ``device`` (for a GPU, also the host CPU's features)."""
    device = torch.device(device)
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - older builds
        capability = "unknown"
    if device.type == "cuda":
        return MachineInfo(str(device), torch.cuda.get_device_name(device), torch.get_num_threads(),
                           capability, cpu_features(), gpu_bf16=bool(torch.cuda.is_bf16_supported()))
    return MachineInfo(str(device), cpu_model(), torch.get_num_threads(), capability, cpu_features())


# --------------------------------------------------------------------------- matmul rates

@dataclass
class MatmulRates:
    """Measured matrix-product rates: GFLOP/s (GOP/s for int8; one multiply-add = 2)."""

    fp32: float
    bf16: float | None
    int8: float | None
    sizes: dict = field(default_factory=dict)  #: the square size each rate was measured at
    int8_backend: str | None = None  #: "onnxruntime MatMulInteger" or "torch._int_mm"
    runs: dict = field(default_factory=dict)  #: every run's rate
    notes: list = field(default_factory=list)  #: why a rate is missing

    def to_dict(self) -> dict:
        return asdict(self)


def _timed_rate(make_run, *, max_size: int, target_s: float, repeats: int) -> tuple[float, int, list[float]]:
    """Median rate of ``make_run(n)()`` (a square product of side ``n``), at the largest
    ``n <= max_size`` (from 128 up, doubling) whose product lasts about ``target_s``."""
    n = 128
    run = make_run(n)
    run()  # warm-up (allocations, kernel selection)
    start = time.perf_counter()
    run()
    seconds = max(time.perf_counter() - start, 1e-6)
    while n * 2 <= max_size and seconds * 8 <= target_s:  # doubling n costs 8x
        n *= 2
        seconds *= 8
    if n != 128:
        run = make_run(n)
        run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(2 * n ** 3 / max(time.perf_counter() - start, 1e-9) / 1e9)
    return float(statistics.median(rates)), n, rates


def _torch_mm(dtype: torch.dtype, device: torch.device):
    def make(n: int):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)

        def run():
            torch.mm(a, b, out=out)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return run
    return make


def _ort_int8_mm():
    """``make(n)`` for ONNX Runtime's MatMulInteger (uint8 x int8 -> int32), or None without it."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None

    def make(n: int):
        rng = np.random.default_rng(0)
        weight = numpy_helper.from_array(rng.integers(-64, 64, (n, n), dtype=np.int8), "B")
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "int8_matmul",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])], [weight])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {"A": rng.integers(0, 256, (n, n), dtype=np.uint8)}
        return lambda: session.run(None, feeds)
    return make


def _torch_int8_mm():
    def make(n: int):
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        return lambda: torch._int_mm(a, b)
    return make


def measure_matmul_rates(device: torch.device | str = "cpu", *, max_size: int = 1024,
                         target_s: float = 0.05, repeats: int = 5, bf16: bool = True,
                         int8: bool = True) -> MatmulRates:
    """The float32, bfloat16 and int8 matmul rates of ``device`` (see the module docstring).

    Args:
        device: where to measure (int8 is measured on the CPU only).
        max_size: the largest square side to use (1024 is a fraction of a second per rate;
            the benchmarks use 2048).
        target_s: how long one product should last (sets the size, up to ``max_size``).
        repeats: timed products per rate, of which the median is reported.
        bf16, int8: measure those rates too.

    Returns:
        :class:`MatmulRates` (``None`` for a rate not measured, with a note why).
    """
    device = torch.device(device)
    rates = MatmulRates(fp32=0.0, bf16=None, int8=None)
    rates.fp32, rates.sizes["fp32"], rates.runs["fp32"] = _timed_rate(
        _torch_mm(torch.float32, device), max_size=max_size, target_s=target_s, repeats=repeats)
    if bf16:
        rates.bf16, rates.sizes["bf16"], rates.runs["bf16"] = _timed_rate(
            _torch_mm(torch.bfloat16, device), max_size=max_size, target_s=target_s, repeats=repeats)
    if int8 and device.type == "cpu":
        make = _ort_int8_mm()
        rates.int8_backend = "onnxruntime MatMulInteger"
        if make is None:
            make, rates.int8_backend = _torch_int8_mm(), "torch._int_mm"
            rates.notes.append('int8 rate from torch._int_mm: the int8 path runs in ONNX Runtime, '
                               'not installed (pip install "trecvit[int8]")')
        try:
            rates.int8, rates.sizes["int8"], rates.runs["int8"] = _timed_rate(
                make, max_size=max_size, target_s=target_s, repeats=repeats)
        except (RuntimeError, NotImplementedError) as err:
            rates.int8_backend = None
            rates.notes.append(f"int8 rate not measured: {err}")
    elif int8:
        rates.notes.append("int8 rate: measured on the CPU only (the int8 path is ONNX Runtime's CPU one)")
    return rates


def format_machine(info: MachineInfo, rates: MatmulRates | None = None) -> str:
    """The machine lines of ``trecvit profile``: CPU/GPU, ISA features found, matmul rates."""
    found = info.features.summary()
    lines = [f"machine: {info.name}, {info.threads} threads on {info.device} (PyTorch CPU kernels: "
             f"{info.torch_cpu_capability})",
             "CPU features: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in found.items())
             + f" (from {info.features.source})"]
    if info.device.startswith("cuda"):
        lines.append(f"GPU bfloat16: {'yes' if info.gpu_bf16 else 'no'}")
    if rates is not None:
        parts = [f"fp32 {rates.fp32:.1f} GFLOP/s"]
        if rates.bf16 is not None:
            ratio = rates.bf16 / rates.fp32
            note = "" if info.bf16_unit else ", emulated: no bf16 unit" if ratio < 1 else ""
            parts.append(f"bf16 {rates.bf16:.1f} GFLOP/s ({ratio:.2f}x fp32{note})")
        if rates.int8 is not None:
            parts.append(f"int8 {rates.int8:.1f} GOP/s ({rates.int8 / rates.fp32:.2f}x fp32, "
                         f"{rates.int8_backend})")
        sizes = ", ".join(f"{k} {v}" for k, v in rates.sizes.items())
        lines.append(f"matmul rates (square sides {sizes}): " + ", ".join(parts))
        lines += [f"  note: {n}" for n in rates.notes]
    return "\n".join(lines)
