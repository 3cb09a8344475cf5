"""Build of the proxyfast C++/CUDA extension.

The CPU kernels are always built. The CUDA kernels are added when the installed torch
has CUDA and CUDA_HOME is set (set TORCH_CUDA_ARCH_LIST on a machine without a GPU).
"""

import glob
import os

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def want_cuda():
    if os.environ.get("PROXYFAST_NO_CUDA", "0") == "1":
        return False
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def extension():
    # -ffp-contract=off: the sampling keys must round identically on CPU and GPU
    # (csrc/common/det_math.h). -fno-trapping-math: lets branch-free kernels vectorize.
    # -fopenmp: at::parallel_for runs in parallel only when the extension has OpenMP.
    cxx_flags = ["-O3", "-std=c++20", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp"]
    cpu_sources = ["csrc/proxyfast.cpp"] + sources("csrc/cpu/*.cpp")
    if want_cuda():
        return cpp_extension.CUDAExtension(
            "proxyfast._C",
            cpu_sources + sources("csrc/cuda/*.cu"),
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++20"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "proxyfast._C", cpu_sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"]
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
