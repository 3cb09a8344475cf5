"""How the extension is built (CPU or CUDA, which GPU archs, which flags) and the check
that an installed extension matches the torch importing it. The CUDA decisions are
pure functions, so every branch is checked here without a CUDA torch or a GPU."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils import cpp_extension

import proxyfast
from proxyfast import _build_config as config

NVCC = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")


def plan(**overrides):
    """The plan for a CUDA torch with nvcc 13.0, no GPU and no arch list, unless overridden."""
    machine = dict(
        torch_version="2.13.0+cu130",
        torch_cuda="13.0",
        cuda_home="/opt/cuda",
        nvcc_version=(13, 0),
        arch_list_env=None,
        visible_gpus=0,
        cpu_only=False,
    )
    machine.update(overrides)
    return config.plan_kernels(**machine)


def test_a_cpu_torch_builds_the_cpu_kernels_and_says_why():
    result = plan(torch_version="2.13.0+cpu", torch_cuda=None)
    assert not result.cuda and result.arch_list is None
    assert result.reason == "CPU build: torch 2.13.0+cpu has no CUDA"


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"cpu_only": True}, "PROXYFAST_NO_CUDA=1"),
        ({"cuda_home": None}, "no CUDA toolkit was found"),
        ({"nvcc_version": None}, "no working nvcc in /opt/cuda/bin"),
    ],
)
def test_a_cuda_torch_without_what_nvcc_needs_builds_the_cpu_kernels(overrides, reason):
    result = plan(**overrides)
    assert not result.cuda and result.arch_list is None
    assert result.reason.startswith("CPU build: ") and reason in result.reason


def test_the_given_arch_list_wins():
    result = plan(arch_list_env="9.0", visible_gpus=2)
    assert result.cuda and result.arch_list == "9.0"
    assert result.reason == "CUDA build for TORCH_CUDA_ARCH_LIST=9.0"


def test_visible_gpus_are_left_to_torch():
    result = plan(visible_gpus=2)
    assert result.cuda and result.arch_list is None
    assert "2 visible GPU(s)" in result.reason


def test_no_gpu_and_no_arch_list_takes_the_default_and_says_so():
    result = plan()
    assert result.cuda and result.arch_list == "7.5;8.0;9.0;10.0;12.0+PTX"
    assert result.reason.endswith("no GPU visible and no TORCH_CUDA_ARCH_LIST: default archs 7.5;8.0;9.0;10.0;12.0+PTX")


def test_native_needs_a_gpu():
    with pytest.raises(ValueError, match="TORCH_CUDA_ARCH_LIST=native needs a visible GPU"):
        plan(arch_list_env="native")
    assert plan(arch_list_env="native", visible_gpus=1).arch_list == "native"


@pytest.mark.parametrize(
    "nvcc, expected",
    [
        ((13, 0), "7.5;8.0;9.0;10.0;12.0+PTX"),
        ((12, 8), "7.5;8.0;9.0;10.0;12.0+PTX"),
        ((12, 6), "7.5;8.0;9.0+PTX"),
        ((11, 4), "7.5;8.0+PTX"),
    ],
)
def test_the_default_archs_follow_what_the_nvcc_compiles(nvcc, expected):
    assert config.default_arch_list(nvcc) == expected


def test_an_nvcc_older_than_every_default_arch_is_refused():
    with pytest.raises(ValueError, match="nvcc 9.2 is too old"):
        config.default_arch_list((9, 2))


def test_torch_turns_the_planned_archs_into_gencode_flags(monkeypatch):
    # Without an arch list and without a GPU, torch's own detection has nothing to pick
    # (it fails with an IndexError): the build must always hand it one.
    arch_list = plan().arch_list
    if arch_list is None:  # as setup.py does: torch would then detect
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    else:
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", arch_list)
    flags = cpp_extension._get_cuda_arch_flags()
    for sm in (75, 80, 90, 100, 120):
        assert f"-gencode=arch=compute_{sm},code=sm_{sm}" in flags
    assert "-gencode=arch=compute_120,code=compute_120" in flags  # the PTX


@pytest.mark.skipif(not os.path.exists(NVCC), reason="no nvcc here")
def test_this_nvcc_compiles_every_default_arch():
    version = config.parse_nvcc_version(subprocess.run([NVCC, "--version"], capture_output=True, text=True).stdout)
    assert version is not None
    listed = subprocess.run([NVCC, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout.split()
    for arch in config.default_arch_list(version).removesuffix("+PTX").split(";"):
        assert "compute_" + arch.replace(".", "") in listed


def test_nvcc_version_is_read_from_its_banner():
    banner = "Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0\n"
    assert config.parse_nvcc_version(banner) == (13, 0)
    assert config.parse_nvcc_version("command not found") is None


def test_release_flags_by_default_and_debug_on_request():
    release = config.compile_args(debug=False)
    assert release["cxx"][-2:] == ["-O3", "-g0"]  # after Python's own -g, so they win
    assert "-g" not in release["cxx"] + release["nvcc"]
    debug = config.compile_args(debug=True)
    assert "-g" in debug["cxx"] and "-g0" not in debug["cxx"] and "-O0" in debug["cxx"]
    for flags in (release["cxx"], debug["cxx"]):
        assert "-ffp-contract=off" in flags  # the sampling keys' rounding, on every build


def test_a_wheel_requires_the_torch_series_it_was_built_with():
    assert config.torch_requirement("2.13.0+cpu") == "torch==2.13.*"
    assert config.torch_requirement("2.14.1") == "torch==2.14.*"
    assert config.torch_requirement(None) == config.SUPPORTED_TORCH


@pytest.mark.parametrize(
    "built, built_cuda, running, running_cuda, problem",
    [
        ("2.13.0+cpu", None, "2.13.1+cpu", None, None),  # a patch release keeps the ABI
        ("2.13.0+cpu", None, "2.13.0+cu130", "13.0", None),  # CPU kernels load under a CUDA torch
        ("2.13.0+cu130", "13.0", "2.13.0+cu132", "13.2", None),
        ("2.13.0+cpu", None, "2.14.1+cpu", None, "built with torch 2.13.0+cpu, but torch 2.14.1+cpu is installed"),
        ("2.13.0+cu130", "13.0", "2.13.0+cpu", None, "the installed torch 2.13.0+cpu has no CUDA"),
        ("2.13.0+cu130", "13.0", "2.13.0+cu126", "12.6", "has CUDA 12.6"),
    ],
)
def test_an_extension_loads_only_under_a_torch_of_its_abi(built, built_cuda, running, running_cuda, problem):
    found = config.torch_mismatch(
        built_torch=built, built_cuda=built_cuda, running_torch=running, running_cuda=running_cuda
    )
    if problem is None:
        assert found is None
    else:
        assert problem in found and "pip install --no-build-isolation" in found


def test_the_installed_extension_records_this_torch():
    from proxyfast import _build_info

    assert config.torch_series(_build_info.TORCH_VERSION) == config.torch_series(torch.__version__)
    assert _build_info.KERNELS.startswith(("CPU build: ", "CUDA build"))


@pytest.mark.parametrize(
    "build_info, message",
    [
        ("TORCH_VERSION = '2.10.0'\nTORCH_CUDA = None\n", "built with torch 2.10.0, but torch"),
        (None, "proxyfast's C++ extension is not built"),
    ],
)
def test_import_refuses_an_extension_of_another_torch(tmp_path, build_info, message):
    # A copy of the installed package whose build record says otherwise.
    package = tmp_path / "proxyfast"
    shutil.copytree(os.path.dirname(proxyfast.__file__), package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "_build_info.py").unlink()
    if build_info is not None:
        (package / "_build_info.py").write_text(build_info)
    # An editable install's finder would fill in what the copy lacks from the source tree.
    only_the_copy = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if not f.__module__.startswith('__editable__')]"
    result = subprocess.run(
        [sys.executable, "-c", f"{only_the_copy}; import proxyfast"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert message in last_line and "pip install --no-build-isolation" in last_line
