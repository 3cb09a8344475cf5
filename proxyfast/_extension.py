"""Loads the compiled operators, ``proxyfast._C``, once they are known to fit this torch.

A C++ extension works only with the torch release it was compiled against; loaded by
another it fails with an undefined symbol or worse. setup.py records what it built with
in ``proxyfast/_build_info.py``; this module compares that with the running torch
first and says in one line what to do.
"""

from __future__ import annotations

import importlib

import torch

from ._build_config import torch_mismatch

_BUILD = "pip install --no-build-isolation -e ."


def _load():
    try:
        build_info = importlib.import_module(f"{__package__}._build_info")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}._build_info":
            raise
        # The name tells callers that can do without the operators what is missing.
        raise ModuleNotFoundError(
            f"proxyfast's C++ extension is not built; in the source tree run: {_BUILD}", name=f"{__package__}._C"
        ) from None
    problem = torch_mismatch(
        built_torch=build_info.TORCH_VERSION,
        built_cuda=build_info.TORCH_CUDA,
        running_torch=torch.__version__,
        running_cuda=torch.version.cuda,
    )
    if problem is not None:
        raise ImportError(problem)
    try:
        return importlib.import_module(f"{__package__}._C")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}._C":
            raise
        raise ModuleNotFoundError(
            f"proxyfast's C++ extension is missing beside its build record; rebuild it: {_BUILD}",
            name=f"{__package__}._C",
        ) from None


_C = _load()
