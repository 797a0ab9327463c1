"""The precision a CPU computes in: bf16 autocast only where the CPU has native bf16.

bf16 autocast pays on CPUs with native bf16 instructions (Intel AVX512-BF16 since Cooper Lake, AMX since
Sapphire Rapids; AMD Zen 4 and later) and is many times slower where they are missing (the CPU emulates
it: a 512 x 512 matmul was 56x slower than fp32 on an AVX2-only AMD EPYC). ``train.cpu_bf16 = "auto"``
(the default) and ``zoo eval --precision auto`` therefore autocast to bf16 on the CPU only where
:func:`cpu_bf16_support` finds native support; ``true``/``false`` force it. CUDA always autocasts to bf16.

On x86 the decision reads torch's CPU capability and instruction-set flags; elsewhere (ARM, POWER) a
one-off probe times a small bf16 against an fp32 matmul, and its verdict is cached per machine.
``ZOO_CPU_BF16=native|none`` overrides the detection (a machine it gets wrong; fp32 everywhere, as the
test suite does, so that scores compare across machines); it reaches every run a launcher starts.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import dataclass
from typing import Literal

import torch

from zoo.cache import atomic_write_text, cache_root, content_hash
from zoo.errors import RunError

AUTO = "auto"
CpuBf16 = bool | Literal["auto"]
PRECISIONS = ("auto", "fp32", "bf16")  # `zoo eval --precision`
_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}
#: bf16 counts as native when the probe's bf16 matmul takes at most this share of the fp32 one
PROBE_RATIO = 1.0
#: overrides the detection: ``native`` (bf16 where ``auto``) or ``none`` (fp32 where ``auto``)
CPU_BF16_ENV = "ZOO_CPU_BF16"
_ENV_VALUES = {"native": True, "none": False}


@dataclass(frozen=True)
class Bf16Support:
    """Whether this CPU computes bf16 natively, and what that was decided from (one line, for logs)."""

    native: bool
    why: str


@dataclass(frozen=True)
class CpuReport:
    """What torch says of this CPU: the architecture, its vector capability (``AVX2``, ``AVX512``, …) and,
    on x86, its bf16 instruction sets (``None`` elsewhere)."""

    machine: str
    capability: str
    bf16_flags: dict[str, bool] | None


def _cpu_report() -> CpuReport:
    machine = platform.machine().lower()
    capability = torch.backends.cpu.get_cpu_capability()
    flags = None
    cpu = torch.cpu
    if machine in _X86 and hasattr(cpu, "_is_avx512_bf16_supported") and hasattr(cpu, "_is_amx_tile_supported"):
        flags = {"AVX512-BF16": bool(cpu._is_avx512_bf16_supported()), "AMX": bool(cpu._is_amx_tile_supported())}
    return CpuReport(machine, capability, flags)


def _decide(report: CpuReport) -> Bf16Support | None:
    """The verdict from torch's report alone, or None where only a probe can tell."""
    if "BF16" in report.capability.upper() or "AMX" in report.capability.upper():
        return Bf16Support(True, f"torch reports CPU capability {report.capability}")
    if report.bf16_flags is None:
        return None
    flags = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in report.bf16_flags.items())
    native = any(report.bf16_flags.values())
    return Bf16Support(native, f"{report.capability} CPU, {flags}")


def _time_matmul(dtype: torch.dtype, size: int = 256, repeats: int = 5) -> float:
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


def _probe(report: CpuReport) -> Bf16Support:
    """Time a bf16 against an fp32 matmul once per machine (cached under the cache root)."""
    key = content_hash("bf16-probe/1", report.machine, report.capability, platform.processor(), torch.__version__)[:16]
    path = cache_root() / "precision" / f"{key}.json"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        return Bf16Support(bool(cached["native"]), str(cached["why"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    fp32, bf16 = _time_matmul(torch.float32), _time_matmul(torch.bfloat16)
    native = bf16 <= PROBE_RATIO * fp32
    support = Bf16Support(native, f"{report.machine} {report.capability} CPU, probe: bf16 matmul "
                                  f"{bf16 * 1e3:.2f} ms vs fp32 {fp32 * 1e3:.2f} ms")
    try:
        atomic_write_text(path, json.dumps({"native": native, "why": support.why}))
    except OSError:  # a read-only cache only costs the probe next time
        pass
    return support


def detect_cpu_bf16() -> Bf16Support:
    """Whether this machine's CPU has native bf16: ``$ZOO_CPU_BF16`` where set, else torch's report,
    else the (cached) probe."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced:
        if forced not in _ENV_VALUES:
            raise RunError(f"{CPU_BF16_ENV}={os.environ[CPU_BF16_ENV]!r}: expected one of {', '.join(_ENV_VALUES)}")
        return Bf16Support(_ENV_VALUES[forced], f"{CPU_BF16_ENV}={forced}")
    report = _cpu_report()
    return _decide(report) or _probe(report)


#: :func:`detect_cpu_bf16`, decided once per process
cpu_bf16_support = functools.cache(detect_cpu_bf16)


def resolve_cpu_bf16(setting: CpuBf16) -> bool:
    """Whether to autocast to bf16 on the CPU: ``true``/``false`` as given, ``"auto"`` where it is native."""
    if isinstance(setting, bool):
        return setting
    if setting != AUTO:
        raise ValueError(f"cpu_bf16 must be true, false or {AUTO!r}, got {setting!r}")
    return cpu_bf16_support().native


def precision_name(device: torch.device, cpu_bf16: bool) -> str:
    """``"bf16"`` where models run under bf16 autocast (always on CUDA), else ``"fp32"``."""
    return "bf16" if device.type == "cuda" or cpu_bf16 else "fp32"


def describe_precision(setting: CpuBf16, device: torch.device) -> tuple[bool, str]:
    """The resolved CPU bf16 switch for ``setting`` on ``device`` and one line saying which precision is
    used and why (``zoo run`` prints it first)."""
    if device.type == "cuda":  # always bf16 autocast: the CPU's support does not matter
        return False, "precision: bf16 (autocast on CUDA)"
    use = resolve_cpu_bf16(setting)
    name = precision_name(device, use)
    if isinstance(setting, bool):
        return use, f"precision: {name} (train.cpu_bf16={str(setting).lower()})"
    return use, f"precision: {name} (train.cpu_bf16=auto: {cpu_bf16_support().why})"
