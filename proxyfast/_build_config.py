"""How the extension is built, and the rule that it matches the torch importing it.

Pure functions of what the build machine has (no torch, no GPU needed), so that
setup.py, the import-time check in ``proxyfast._extension`` and the tests share them.
setup.py loads this file by path: it must import nothing from proxyfast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The torch releases proxyfast supports: the requirement of an sdist, whose wheel pins
# the release series of the torch it was built with.
SUPPORTED_TORCH = "torch>=2.11,<2.15"

# Default GPU architectures when none is given and none is visible, with the first CUDA
# release whose nvcc compiles each. A cubin runs on every later minor of its major
# (sm_80 code on sm_86 and sm_89, sm_100 on sm_103, sm_120 on sm_121), so one entry per
# major covers T4; A100, A10, RTX 30/40, L4, L40; H100, H200; B200, B300; RTX 50. PTX of
# the newest is added so that later GPUs can compile it at load time.
_DEFAULT_ARCHS = (
    ("7.5", (10, 0)),
    ("8.0", (11, 0)),
    ("9.0", (11, 8)),
    ("10.0", (12, 8)),
    ("12.0", (12, 8)),
)
# nvcc 13 dropped the architectures before Turing.
_OLDEST_ARCH_IN_CUDA_13 = (7, 5)


@dataclass(frozen=True)
class KernelPlan:
    """Which kernels to build. ``arch_list`` is the TORCH_CUDA_ARCH_LIST to build with;
    None lets torch pick the archs of the visible GPUs (or, for a CPU build, means
    nothing). ``reason`` is the one line the build prints."""

    cuda: bool
    arch_list: str | None
    reason: str


def parse_nvcc_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from the output of ``nvcc --version``, None if it has none."""
    match = re.search(r"release (\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def default_arch_list(nvcc_version: tuple[int, int]) -> str:
    """The TORCH_CUDA_ARCH_LIST for a build with no GPU to detect, for this nvcc."""
    archs = [
        arch
        for arch, since in _DEFAULT_ARCHS
        if nvcc_version >= since
        and (nvcc_version < (13, 0) or tuple(map(int, arch.split("."))) >= _OLDEST_ARCH_IN_CUDA_13)
    ]
    if not archs:
        raise ValueError(f"nvcc {nvcc_version[0]}.{nvcc_version[1]} is too old for proxyfast's CUDA kernels")
    return ";".join(archs) + "+PTX"


def plan_kernels(
    *,
    torch_version: str,
    torch_cuda: str | None,
    cuda_home: str | None,
    nvcc_version: tuple[int, int] | None,
    arch_list_env: str | None,
    visible_gpus: int,
    cpu_only: bool,
) -> KernelPlan:
    """Decide between the CPU build and the CPU + CUDA build.

    torch_cuda: ``torch.version.cuda`` (None for a CPU or ROCm torch); cuda_home: the
    CUDA toolkit torch found (``cpp_extension.CUDA_HOME``); nvcc_version: what its nvcc
    reports (None when it has no working nvcc); arch_list_env: TORCH_CUDA_ARCH_LIST;
    visible_gpus: ``torch.cuda.device_count()``; cpu_only: PROXYFAST_NO_CUDA=1.
    """
    if cpu_only:
        return KernelPlan(False, None, "CPU build: PROXYFAST_NO_CUDA=1")
    if torch_cuda is None:
        return KernelPlan(False, None, f"CPU build: torch {torch_version} has no CUDA")
    if cuda_home is None:
        return KernelPlan(
            False, None, f"CPU build: torch has CUDA {torch_cuda} but no CUDA toolkit was found (set CUDA_HOME)"
        )
    if nvcc_version is None:
        return KernelPlan(False, None, f"CPU build: no working nvcc in {cuda_home}/bin (set CUDA_HOME)")
    arch_list = (arch_list_env or "").strip()
    if arch_list == "native" and visible_gpus == 0:
        raise ValueError("TORCH_CUDA_ARCH_LIST=native needs a visible GPU; set the archs, e.g. TORCH_CUDA_ARCH_LIST=9.0")
    if arch_list:
        return KernelPlan(True, arch_list, f"CUDA build for TORCH_CUDA_ARCH_LIST={arch_list}")
    if visible_gpus > 0:
        return KernelPlan(True, None, f"CUDA build for the {visible_gpus} visible GPU(s)")
    default = default_arch_list(nvcc_version)
    return KernelPlan(
        True, default, f"CUDA build, no GPU visible and no TORCH_CUDA_ARCH_LIST: default archs {default}"
    )


def compile_args(*, debug: bool) -> dict[str, list[str]]:
    """Compiler flags. Release by default: -g0 overrides the -g that Python's own CFLAGS
    put on every compile line, whose debug info is most of an unstripped library."""
    # -ffp-contract=off: the sampling keys must round identically on CPU and GPU
    # (csrc/common/det_math.h). -fno-trapping-math: lets branch-free kernels vectorize.
    # -fopenmp: at::parallel_for runs in parallel only when the extension has OpenMP.
    cxx = ["-std=c++20", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp"]
    nvcc = ["-std=c++20"]
    if debug:
        return {"cxx": cxx + ["-O0", "-g"], "nvcc": nvcc + ["-O0", "-g", "-lineinfo"]}
    return {"cxx": cxx + ["-O3", "-g0"], "nvcc": nvcc + ["-O3"]}


def torch_series(version: str) -> str:
    """'2.13' for '2.13.0+cpu': releases of one series share the C++ ABI."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"unrecognised torch version {version!r}")
    return f"{match.group(1)}.{match.group(2)}"


def torch_requirement(build_torch_version: str | None) -> str:
    """The torch requirement of a wheel built with that torch (None: of an sdist)."""
    if build_torch_version is None:
        return SUPPORTED_TORCH
    return f"torch=={torch_series(build_torch_version)}.*"


def torch_mismatch(
    *, built_torch: str, built_cuda: str | None, running_torch: str, running_cuda: str | None
) -> str | None:
    """Why an extension built with one torch cannot be loaded by another, or None."""
    rebuild = "rebuild proxyfast with it: pip install --no-build-isolation --force-reinstall --no-deps <proxyfast source>"
    if torch_series(built_torch) != torch_series(running_torch):
        return f"proxyfast's extension was built with torch {built_torch}, but torch {running_torch} is installed; {rebuild}"
    if built_cuda is not None and (running_cuda is None or built_cuda.split(".")[0] != running_cuda.split(".")[0]):
        running = f"CUDA {running_cuda}" if running_cuda else "no CUDA"
        return (
            f"proxyfast's extension was built with the CUDA {built_cuda} torch {built_torch}, "
            f"but the installed torch {running_torch} has {running}; {rebuild}"
        )
    return None
