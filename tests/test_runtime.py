"""The hardware-dependent defaults of training: precision, memory format, progress output."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from proxyfast import runtime
from proxyfast.data import ImageArrayDataset
from proxyfast.runtime import Progress
from proxyfast.models import resnet20
from proxyfast.pretrain import train

AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AMX = frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"})
AVX2_ONLY = frozenset({"avx", "avx2", "fma"})


@pytest.mark.parametrize("flags, machine, capability, onednn_isa, override, native", [
    (AVX512_BF16, "x86_64", "AVX512", None, None, True),
    (AMX, "x86_64", "AVX512", None, None, True),
    (AVX2_ONLY, "x86_64", "AVX2", None, None, False),  # bfloat16 emulated: 10x slower
    (AVX2_ONLY, "x86_64", "AVX512", None, None, False),
    (AVX512_BF16, "x86_64", "AVX2", None, None, False),  # ATEN_CPU_CAPABILITY=avx2
    (AVX512_BF16, "x86_64", "AVX512", "AVX2", None, False),  # ONEDNN_MAX_CPU_ISA=AVX2
    (AVX512_BF16, "x86_64", "AVX512", "avx512_core", None, False),
    (AVX512_BF16, "x86_64", "AVX512", "AVX512_CORE_BF16", None, True),
    (AVX512_BF16, "x86_64", "AVX512", "ALL", None, True),
    (frozenset({"fp", "asimd", "bf16"}), "aarch64", "DEFAULT", None, None, True),
    (frozenset({"fp", "asimd"}), "aarch64", "DEFAULT", None, None, False),
    (frozenset(), "ppc64le", "DEFAULT", None, None, False),
    (AVX2_ONLY, "x86_64", "AVX2", None, "1", True),  # PROXYFAST_BF16 forces either answer
    (AVX512_BF16, "x86_64", "AVX512", None, "0", False),
    (AVX512_BF16, "x86_64", "AVX512", None, "", True),  # empty: not set
])
def test_native_bfloat16_decision(flags, machine, capability, onednn_isa, override, native):
    assert runtime.cpu_bfloat16_decision(flags, machine, capability, onednn_isa, override) is native


def test_a_bad_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PROXYFAST_BF16", "yes")
    with pytest.raises(ValueError, match="PROXYFAST_BF16 must be 0 or 1, got 'yes'"):
        runtime.cpu_has_native_bfloat16()


def test_this_machine_follows_its_flags(monkeypatch):
    monkeypatch.delenv("PROXYFAST_BF16", raising=False)
    flags = runtime.cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo here")
    capability = torch.backends.cpu.get_cpu_capability()
    expected = runtime.cpu_bfloat16_decision(flags, __import__("platform").machine(), capability,
                                             __import__("os").environ.get("ONEDNN_MAX_CPU_ISA"), None)
    assert runtime.native_bfloat16("cpu") is expected
    assert runtime.resolve_amp(None, "cpu") is expected


def test_resolve_amp_keeps_an_explicit_choice():
    assert runtime.resolve_amp(True, "cpu") is True and runtime.resolve_amp(False, "cpu") is False
    with pytest.raises(TypeError, match="amp must be True, False or None"):
        runtime.resolve_amp(1, "cpu")


def tiny_dataset(rng, n=64):
    labels = rng.integers(0, 2, size=n)
    images = (rng.integers(0, 100, size=(n, 8, 8, 1)) + 150 * labels[:, None, None, None]).astype(np.uint8)
    return ImageArrayDataset(images, labels, "tiny")


@pytest.mark.parametrize("forced, dtype", [("1", torch.bfloat16), ("0", torch.float32)])
def test_training_takes_the_precision_the_cpu_runs_natively(rng, monkeypatch, forced, dtype):
    """amp=None follows the hardware answer (forced here each way): the logits the model
    produced while training are bfloat16 exactly when the CPU is said to run it natively."""
    monkeypatch.setenv("PROXYFAST_BF16", forced)
    torch.manual_seed(0)
    model = resnet20(2, 1, width=8)
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype) if module.training else None)
    train(model, tiny_dataset(rng), epochs=1, batch_size=32, progress=False, log=None, device="cpu")
    assert seen and set(seen) == {dtype}


def test_channels_last_avoids_the_onednn_strided_1x1_defect():
    # A strided 1x1 convolution with fewer than 8 input channels: contiguous on the CPU.
    for channels in (1, 4, 7):
        model = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.Conv2d(channels, 16, 1, stride=2))
        assert runtime.use_channels_last(model, "cpu") is False, channels
        assert runtime.use_channels_last(model, "cuda") is True
    for model in (nn.Sequential(nn.Conv2d(8, 16, 1, stride=2)),  # 8 input channels: safe
                  nn.Sequential(nn.Conv2d(3, 4, 3, stride=2)),  # 3x3: safe
                  nn.Sequential(nn.Conv2d(3, 4, 1, stride=1))):  # stride 1: safe
        assert runtime.use_channels_last(model, "cpu") is True
    assert runtime.use_channels_last(resnet20(10, 1, width=16), "cpu") is True
    assert runtime.use_channels_last(resnet20(10, 1, width=4), "cpu") is False  # its shortcuts: 4 -> 8, stride 2
    assert runtime.use_channels_last(resnet20(10, 1, width=4), "cpu", requested=True) is True
    with pytest.raises(TypeError, match="channels_last must be True, False or None"):
        runtime.use_channels_last(resnet20(10, 1, width=4), "cpu", requested="yes")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_width_4_baseline_trains_in_process_on_one_thread(rng, one_thread):
    """The training loop that aborted the test run on AVX2 CPUs (oneDNN's channels-last
    weight gradient of ResNet-20 width 4's strided 1x1 shortcuts, one thread), run in
    this process with the library's defaults; CI repeats it under ONEDNN_MAX_CPU_ISA=AVX2
    ATEN_CPU_CAPABILITY=avx2, where the heap corruption would kill the test run."""
    assert torch.get_num_threads() == 1
    torch.manual_seed(0)
    model = resnet20(2, 1, width=4)
    result = train(model, tiny_dataset(rng, n=96), epochs=3, batch_size=16, lr=0.1, track_forgetting=True,
                   progress=False, log=None, device="cpu")
    assert model.conv1.weight.is_contiguous()  # the contiguous format was chosen
    assert np.isfinite(result.history[-1]["loss"])
    assert result.history[-1]["train_accuracy"] >= 0.8


def test_progress_in_a_log_writes_plain_lines_now_and_then():
    stream = io.StringIO()  # not a terminal
    times = iter([0.0, 10.0, 31.0, 32.0, 65.0, 70.0, 71.0])
    bar = Progress(600, "epoch 1/3", unit="img", stream=stream, log_interval=30.0, clock=lambda: next(times))
    for _ in range(5):
        bar.update(100, postfix="loss 0.5")
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 3  # at 31 s and 65 s, and when it closes
    assert all(line.startswith("epoch 1/3") and "loss 0.5" in line and "img/s" in line for line in lines)
    assert ["200/600" in lines[0], "400/600" in lines[1], "500/600" in lines[2]] == [True] * 3


def test_progress_disabled_writes_nothing():
    stream = io.StringIO()
    with Progress(10, "x", enabled=False, stream=stream) as bar:
        bar.update(10)
    assert stream.getvalue() == ""
