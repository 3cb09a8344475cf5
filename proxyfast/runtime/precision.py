"""What the hardware runs well: the precision and memory format of training on a device.

Two defaults of every training loop depend on the processor, and a wrong answer costs
either an order of magnitude of speed or a crash:

- **bfloat16 autocast** pays only where bfloat16 is native: CUDA GPUs from Ampere on,
  and CPUs with AVX-512 BF16 or AMX (or Arm's BF16 extension). Elsewhere the CPU
  emulates it, and a training step is about 10x slower than in float32.
  :func:`native_bfloat16` answers; :func:`resolve_amp` turns ``amp=None`` into that
  answer. ``PROXYFAST_BF16=0`` or ``1`` forces the answer for the CPU.
- **channels-last** convolutions are 1.5x faster on the CPU too, but oneDNN's
  channels-last weight gradient of a strided 1x1 convolution with fewer than 8 input
  channels corrupts the heap on AVX2 code paths (torch 2.13, one thread: "corrupted
  double-linked list", SIGABRT). :func:`use_channels_last` keeps such models in the
  contiguous format on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import platform

import torch
from torch import nn

__all__ = ["autocast", "cpu_bfloat16_decision", "cpu_flags", "cpu_has_native_bfloat16",
           "native_bfloat16", "resolve_amp", "use_channels_last"]

# ONEDNN_MAX_CPU_ISA values (lower case) under which oneDNN still issues bfloat16
# instructions; any other cap (AVX2, AVX512_CORE, ...) makes it emulate bfloat16.
_ONEDNN_BF16_ISAS = frozenset({"all", "avx512_core_bf16", "avx512_core_amx", "avx512_core_amx_fp16",
                               "avx10_1_512", "avx10_1_512_amx", "avx10_1_512_amx_fp16", "avx10_2_512",
                               "avx10_2_512_amx_2"})

# oneDNN's channels-last weight gradient is wrong (heap corruption) for strided 1x1
# convolutions with fewer input channels than this on AVX2 (torch 2.13, one thread).
_CHANNELS_LAST_MIN_IN_CHANNELS = 8


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (x86 ``flags``, Arm ``Features``); empty
    where the file does not exist."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_bfloat16_decision(flags: frozenset[str], machine: str, aten_capability: str, onednn_max_isa: str | None,
                          override: str | None) -> bool:
    """Whether the CPU runs bfloat16 natively, from the facts that decide it (so that each
    answer can be forced in a test): the CPU's feature ``flags``, its ``machine`` name
    (``platform.machine()``), torch's ATen capability (``torch.backends.cpu.
    get_cpu_capability()``), the ``ONEDNN_MAX_CPU_ISA`` cap and the ``PROXYFAST_BF16``
    override ("0" or "1")."""
    if override is not None and override.strip() != "":
        if override.strip() not in ("0", "1"):
            raise ValueError(f"PROXYFAST_BF16 must be 0 or 1, got {override!r}")
        return override.strip() == "1"
    if machine.lower() in ("x86_64", "amd64", "i686", "i386"):
        if not ({"avx512_bf16", "amx_bf16"} & flags):
            return False
        if not aten_capability.upper().startswith("AVX512"):
            return False  # torch was told to take its AVX2 paths (ATEN_CPU_CAPABILITY)
        return onednn_max_isa is None or onednn_max_isa.strip().lower() in _ONEDNN_BF16_ISAS
    if machine.lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return False


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU, as torch will use it, computes in bfloat16 natively."""
    return cpu_bfloat16_decision(cpu_flags(), platform.machine(), torch.backends.cpu.get_cpu_capability(),
                                 os.environ.get("ONEDNN_MAX_CPU_ISA"), os.environ.get("PROXYFAST_BF16"))


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 natively: on CUDA, a GPU from Ampere (compute
    capability 8.0) on; on the CPU, :func:`cpu_has_native_bfloat16`."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_capability(index)[0] >= 8
    if device.type == "cpu":
        return cpu_has_native_bfloat16()
    return False


def resolve_amp(amp: bool | None, device: torch.device | str) -> bool:
    """``amp`` as given, or for None whether bfloat16 autocast pays on ``device``."""
    if amp is None:
        return native_bfloat16(device)
    if not isinstance(amp, bool):
        raise TypeError(f"amp must be True, False or None (the device's choice), got {amp!r}")
    return amp


def use_channels_last(model: nn.Module, device: torch.device | str, requested: bool | None = None) -> bool:
    """Whether to train ``model`` on ``device`` in the channels-last format: ``requested``
    when given; by default yes, except on the CPU for a model that holds a strided 1x1
    convolution with fewer than 8 input channels (the oneDNN defect above)."""
    if requested is not None:
        if not isinstance(requested, bool):
            raise TypeError(f"channels_last must be True, False or None (the device's choice), got {requested!r}")
        return requested
    if torch.device(device).type != "cpu":
        return True
    for module in model.modules():
        if (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and max(module.stride) > 1
                and module.in_channels < _CHANNELS_LAST_MIN_IN_CHANNELS):
            return False
    return True


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on ``device`` when ``amp``, else a context that does nothing.
    bfloat16 has float32's range: training needs no loss scaling, on CPU or GPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
