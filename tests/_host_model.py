"""Builds and loads the host model of the CUDA sources (csrc/cuda/host_model.h): every
csrc/cuda/*.cu compiled as host C++, its kernels run one block at a time with the threads
of a block as fibers, its ops registered as ``torch.ops.proxyfast_host_model.*`` (the
schemas of ``torch.ops.proxyfast.*``, on CPU tensors). docs/cuda.md says what it covers.

The build (about a minute on two cores) is cached in build/host_model and redone when a
source changes.
"""

import os
import sys
from pathlib import Path

import torch
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["entropy", "histogram", "mixed_edge", "weighted_sample"]
FLAGS = [
    "-O2", "-std=c++20", "-DPF_HOST_MODEL", f"-I{ROOT / 'csrc'}",
    # As for the extension (setup.py): sampling keys round identically on every device.
    "-ffp-contract=off", "-fno-trapping-math", "-Wall", "-Wno-unknown-pragmas",
]
_loaded = False


def host_ops():
    """The ``torch.ops.proxyfast_host_model`` namespace, building it first if needed."""
    global _loaded
    if not _loaded:
        build = ROOT / "build" / "host_model"
        build.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MAX_JOBS", "2")
        if not cpp_extension.is_ninja_available():  # the one installed beside this interpreter
            os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        cpp_extension.load(
            name="proxyfast_host_model",
            sources=[str(ROOT / "tests" / "cpp" / "host_model" / f"{name}.cpp") for name in SOURCES],
            extra_cflags=FLAGS,
            extra_include_paths=[str(ROOT / "csrc"), str(ROOT / "csrc" / "cuda")],
            build_directory=str(build),
            is_python_module=False,
            verbose=False,
        )
        _loaded = True
    return torch.ops.proxyfast_host_model
