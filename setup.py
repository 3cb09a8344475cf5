"""Build of the proxyfast C++/CUDA extension, against the torch that is installed.

The CPU kernels are always built; the CUDA kernels too when torch has CUDA and a CUDA
toolkit is found (proxyfast/_build_config.py decides; the build prints one line saying
what it builds and why). torch is not a build requirement: an extension works only
with the torch release it was compiled against, so it is built with the user's own
torch, `pip install --no-build-isolation .` or `python -m build --no-isolation`.

Environment: TORCH_CUDA_ARCH_LIST (GPU archs; default: the visible GPUs, or a list of
current ones), CUDA_HOME, PROXYFAST_NO_CUDA=1 (CPU build only), PROXYFAST_DEBUG=1
(-O0 -g), MAX_JOBS (parallel compiles; default: every CPU this process may use).
"""

import glob
import importlib.util
import os
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
EXTENSION = "proxyfast._C"
# setup.py commands that compile the extension or write a wheel's metadata.
BUILD_COMMANDS = {"build", "build_ext", "bdist", "bdist_wheel", "editable_wheel", "dist_info", "install", "develop"}
NO_TORCH = (
    "proxyfast builds against the torch you have installed, which pip's isolated build environment hides: "
    "install torch, then run `pip install --no-build-isolation .` (or `python -m build --no-isolation`)"
)


def load_build_config():
    path = os.path.join(ROOT, "proxyfast", "_build_config.py")
    spec = importlib.util.spec_from_file_location("proxyfast_build_config", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


config = load_build_config()

try:
    import torch
except ModuleNotFoundError as error:
    if error.name != "torch":
        raise
    torch = None

if torch is None and BUILD_COMMANDS.intersection(sys.argv[1:]):
    sys.exit(NO_TORCH)


def sources(*patterns):
    found = (glob.glob(os.path.join(ROOT, pattern), recursive=True) for pattern in patterns)
    return sorted(os.path.relpath(path, ROOT) for paths in found for path in paths)


def usable_cpus():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def nvcc_version(cuda_home):
    try:
        result = subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True, timeout=60
        )
    except OSError:
        return None
    return config.parse_nvcc_version(result.stdout) if result.returncode == 0 else None


def kernel_plan(cpp_extension):
    cuda_home = cpp_extension.CUDA_HOME
    has_cuda = torch.version.cuda is not None
    return config.plan_kernels(
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_home=cuda_home,
        nvcc_version=nvcc_version(cuda_home) if has_cuda and cuda_home else None,
        arch_list_env=os.environ.get("TORCH_CUDA_ARCH_LIST"),
        visible_gpus=torch.cuda.device_count() if has_cuda else 0,
        cpu_only=os.environ.get("PROXYFAST_NO_CUDA", "0") == "1",
    )


def torch_build_ext():
    """build_ext for the installed torch: when the build is configured, the real
    extension (CPU or CUDA, its sources and flags) replaces the placeholder that lets
    egg_info and sdist run without torch."""
    from torch.utils import cpp_extension

    class BuildExtension(cpp_extension.BuildExtension):
        def finalize_options(self):
            try:
                self.plan = kernel_plan(cpp_extension)
            except ValueError as error:
                raise SystemExit(f"proxyfast: {error}") from None
            self.debug_flags = os.environ.get("PROXYFAST_DEBUG", "0") == "1"
            self.jobs = int(os.environ.setdefault("MAX_JOBS", str(usable_cpus())))
            # The ninja installed beside this Python, also when its environment is not activated.
            os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
            self.distribution.ext_modules[:] = [self.extension(cpp_extension, self.plan, self.debug_flags, self.jobs)]
            super().finalize_options()
            if self.editable_mode:
                # setuptools compiles editable installs in a fresh temporary directory;
                # a fixed one lets ninja recompile only what changed.
                tag = f"{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
                self.build_temp = os.path.join(ROOT, "build", f"temp-editable.{tag}")

        def run(self):
            if self.plan.arch_list is not None:
                os.environ["TORCH_CUDA_ARCH_LIST"] = self.plan.arch_list
            parallel = f"{self.jobs} parallel jobs" if cpp_extension.is_ninja_available() else "one at a time (no ninja)"
            flags = "debug flags" if self.debug_flags else "release flags"
            count = len(self.extensions[0].sources)
            print(f"proxyfast: {self.plan.reason}; {count} files, {flags}, {parallel}", flush=True)
            super().run()
            self.write_build_info(self.plan, self.debug_flags)

        @staticmethod
        def extension(cpp_extension, plan, debug, jobs):
            args = config.compile_args(debug=debug)
            # Headers too, so that changing one is never taken for an up-to-date build.
            depends = sources("csrc/**/*.h", "csrc/**/*.cuh")
            cpu_sources = ["csrc/proxyfast.cpp"] + sources("csrc/cpu/*.cpp")
            if not plan.cuda:
                return cpp_extension.CppExtension(
                    EXTENSION,
                    cpu_sources,
                    extra_compile_args={"cxx": args["cxx"]},
                    extra_link_args=["-fopenmp"],
                    depends=depends,
                )
            cuda_sources = sources("csrc/cuda/*.cu")
            archs = len(plan.arch_list.split(";")) if plan.arch_list else 1
            # nvcc compiles the archs of one file in parallel with the jobs left over.
            threads = max(1, min(archs, jobs // max(1, len(cuda_sources))))
            return cpp_extension.CUDAExtension(
                EXTENSION,
                cpu_sources + cuda_sources,
                extra_compile_args={"cxx": args["cxx"], "nvcc": args["nvcc"] + [f"--threads={threads}"]},
                extra_link_args=["-fopenmp"],
                depends=depends,
            )

        def build_info_paths(self):
            """(in the build directory, in the source tree) for proxyfast/_build_info.py."""
            package_dir = self.get_finalized_command("build_py").get_package_dir("proxyfast")
            return (
                os.path.join(self.build_lib, "proxyfast", "_build_info.py"),
                os.path.join(package_dir, "_build_info.py"),
            )

        def write_build_info(self, plan, debug):
            """What the extension was built with, which proxyfast checks on import."""
            built, in_source = self.build_info_paths()
            values = {
                "TORCH_VERSION": torch.__version__,
                "TORCH_CUDA": torch.version.cuda if plan.cuda else None,
                "CUDA_ARCH_LIST": plan.arch_list,
                "DEBUG": debug,
                "KERNELS": plan.reason,
            }
            text = '"""What the extension was built with (written by setup.py)."""\n\n' + "".join(
                f"{name} = {value!r}\n" for name, value in values.items()
            )
            os.makedirs(os.path.dirname(built), exist_ok=True)
            for path in [built, in_source] if self.inplace else [built]:
                with open(path, "w") as file:
                    file.write(text)

        def get_outputs(self):
            if self.inplace:  # listed through get_output_mapping
                return super().get_outputs()
            return super().get_outputs() + [self.build_info_paths()[0]]

        def get_output_mapping(self):
            mapping = super().get_output_mapping()
            if self.inplace:
                built, in_source = self.build_info_paths()
                mapping[built] = in_source
            return mapping

    return BuildExtension


# A wheel requires the torch release series it was built with; an sdist, any supported one.
building_sdist = "sdist" in sys.argv[1:]
torch_requirement = config.torch_requirement(None if torch is None or building_sdist else torch.__version__)

setup(
    install_requires=[torch_requirement, "numpy>=1.24", "tqdm>=4.60"],
    # The real extension is made by build_ext; this one names it and makes wheels platform wheels.
    ext_modules=[Extension(EXTENSION, sources=[])],
    cmdclass={"build_ext": torch_build_ext()} if torch is not None else {},
)
