"""The search-cost timing suite: the step arithmetic against simple references, the
settings and published figures, the report's schema, table, JSON and chart, the
``proxyfast bench search`` command on a tiny CPU configuration, the validation run,
the ImageNet ResNet-50, and clear errors for bad input."""

import json
import math

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast import bench
from proxyfast.bench.report import JSON_NAME, PLOT_NAME
from proxyfast.cli import main
from proxyfast.loaders import torch_loader
from proxyfast.models.resnet_imagenet import ImageNetResNet, resnet50
from proxyfast.nas.search import SearchConfig
from proxyfast.scoring import Scores

PNG = b"\x89PNG\r\n\x1a\n"
# A supernet small enough for a step in well under a second on one CPU thread.
TINY = dict(steps=1, warmup=0, batch_size=4, channels=4, layers=3, image_size=8, score_images=8)
TINY_ARGS = ["--steps", "1", "--warmup", "0", "--batch-size", "4", "--channels", "4", "--layers", "3",
             "--image-size", "8", "--score-images", "8", "--device", "cpu", "--quiet"]


def reference_steps_per_epoch(train_examples, batch_size):
    """Chunks the weight half into batches; a step is a batch of at least two."""
    sizes = [len(range(train_examples)[i:i + batch_size]) for i in range(0, train_examples, batch_size)]
    return sum(size >= 2 for size in sizes)


def reference_search_seconds(plan, step, weight_step, eval_batch):
    """The search's loop, step by step."""
    total = 0.0
    for epoch in range(plan.epochs):
        for _ in range(plan.steps_per_epoch):
            total += weight_step if epoch < plan.warmup_epochs else step
        total += eval_batch * math.ceil(plan.val_examples / plan.batch_size)
    return total


# --- the arithmetic ----------------------------------------------------------------------


def test_proxy_size_and_halves_match_the_selection_and_the_proxy_split(rng):
    for _ in range(5):
        n = int(rng.integers(10, 5000))
        fraction = float(rng.uniform(0.05, 1.0))
        proxy = proxyfast.select(Scores.from_log10_entropy(rng.normal(-2, 1, size=n)), fraction=fraction,
                                 method="p1", seed=int(rng.integers(1000)), bin_width=0.5)
        assert bench.proxy_size(n, fraction) == proxy.k
        portion = float(rng.uniform(0.1, 0.9))
        weights, arch = proxy.split(portion)
        assert bench.split_halves(proxy.k, portion) == (len(weights), len(arch))


def test_steps_per_epoch_match_the_reference_and_the_search_loader(rng):
    for _ in range(30):
        examples, batch_size = int(rng.integers(0, 3000)), int(rng.integers(2, 300))
        assert bench.steps_per_epoch(examples, batch_size) == reference_steps_per_epoch(examples, batch_size)
    # The loader the search iterates: every batch of two or more examples is a step.
    n, batch_size = int(rng.integers(20, 400)), int(rng.integers(2, 40))
    loader = torch_loader(list(range(n)), np.arange(n), batch_size=batch_size, seed=0)
    assert bench.steps_per_epoch(n, batch_size) == sum(len(b) >= 2 for b in loader)


def test_the_papers_step_counts():
    # DARTS on CIFAR-10: 25,000 images per half, batch 64 (the paper's 0.26 GPU-days).
    full = bench.plan_search(50_000, 64, 50)
    assert (full.train_examples, full.val_examples, full.steps_per_epoch, full.total_steps) == (25_000, 25_000, 391,
                                                                                                 19_550)
    proxy = bench.plan_search(bench.proxy_size(50_000, 0.1), 64, 50)
    assert (proxy.examples, proxy.train_examples, proxy.steps_per_epoch) == (5_000, 2_500, 40)
    # The 10% ImageNet proxy: 128,116 images, halves of 64,058, batch 256.
    imagenet = bench.plan_search(bench.proxy_size(1_281_167, 0.1), 256, 50)
    assert (imagenet.examples, imagenet.train_examples, imagenet.steps_per_epoch) == (128_116, 64_058, 251)


def test_plan_counts_and_search_seconds_match_the_loop(rng):
    for _ in range(10):
        epochs = int(rng.integers(1, 60))
        warmup = int(rng.integers(0, epochs))
        plan = bench.plan_search(int(rng.integers(4, 20_000)), int(rng.integers(2, 512)), epochs, warmup,
                                 float(rng.uniform(0.2, 0.8)))
        assert plan.train_examples + plan.val_examples == plan.examples
        assert plan.total_steps == plan.epochs * plan.steps_per_epoch == plan.arch_steps + plan.weight_only_steps
        assert plan.weight_only_steps == warmup * plan.steps_per_epoch
        step, weight_step, eval_batch = rng.uniform(0.001, 2.0, size=3)
        seconds = bench.search_seconds(plan, step, weight_step, eval_batch)
        # The reference adds step by step: rounding grows with the number of steps.
        assert seconds == pytest.approx(reference_search_seconds(plan, step, weight_step, eval_batch), rel=1e-9)
        assert bench.hours(seconds) * 3600 == pytest.approx(seconds)
        assert bench.days(seconds) * 24 == pytest.approx(bench.hours(seconds))
        counts = plan.to_dict()
        assert counts["total_steps"] == plan.total_steps and counts["eval_batches"] == plan.eval_batches


def test_the_proxy_costs_the_ratio_of_the_step_counts(rng):
    n, batch_size, epochs = int(rng.integers(10_000, 2_000_000)), int(rng.integers(16, 512)), 50
    fraction = float(rng.uniform(0.02, 0.5))
    full = bench.plan_search(n, batch_size, epochs)
    proxy = bench.plan_search(bench.proxy_size(n, fraction), batch_size, epochs)
    step = float(rng.uniform(0.01, 1.0))
    ratio = bench.search_seconds(full, step) / bench.search_seconds(proxy, step)

    # The cost model, written out: each search steps once per batch of its weight half
    # (floor(examples / 2)), the last batch only when it holds two examples.
    def steps(examples):
        half = examples // 2
        return half // batch_size + (half % batch_size >= 2)

    proxy_examples = math.floor(fraction * n)
    assert ratio == pytest.approx(steps(n) / steps(proxy_examples))
    # Against 1 / fraction the batches round: each step count is within one of
    # half / batch_size, so the ratio lies within these bounds, whatever the seed.
    full_batches, proxy_batches = (n // 2) / batch_size, (proxy_examples // 2) / batch_size
    assert (full_batches - 1) / (proxy_batches + 1) <= ratio <= (full_batches + 1) / max(proxy_batches - 1, 1e-9)
    if proxy_batches >= 100:  # many batches: rounding is under 2%, and the ratio is 1 / fraction
        assert ratio == pytest.approx(1 / fraction, rel=0.03)


@pytest.mark.parametrize("call, error, message", [
    (lambda: bench.proxy_size(1000, 0.0), ValueError, "fraction must be in (0, 1]"),
    (lambda: bench.proxy_size(1000, 1.5), ValueError, "fraction must be in (0, 1]"),
    (lambda: bench.proxy_size(1000, float("nan")), ValueError, "fraction"),
    (lambda: bench.proxy_size(1000, "0.1"), TypeError, "fraction must be a number"),
    (lambda: bench.proxy_size(0, 0.1), ValueError, "train_size"),
    (lambda: bench.split_halves(10, 1.5), ValueError, "train_portion"),
    (lambda: bench.steps_per_epoch(100, 1), ValueError, "batch_size must be at least 2"),
    (lambda: bench.steps_per_epoch(-1, 8), ValueError, "train_examples"),
    (lambda: bench.plan_search(3, 8, 50), ValueError, "too small for a step"),
    (lambda: bench.plan_search(1000, 1, 50), ValueError, "batch_size"),
    (lambda: bench.plan_search(1000, 8, 0), ValueError, "epochs"),
    (lambda: bench.search_seconds(bench.plan_search(1000, 8, 5, 2), 0.1), ValueError, "weight_step_seconds"),
    (lambda: bench.search_seconds(bench.plan_search(1000, 8, 5), -1.0), ValueError, "step_seconds"),
    (lambda: bench.search_seconds(bench.plan_search(1000, 8, 5), math.inf), ValueError, "step_seconds"),
])
def test_bad_arithmetic_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        call()


# --- settings and published figures --------------------------------------------------------


def test_the_settings_give_the_papers_search_configs():
    cifar = bench.search_config(bench.get_setting("cifar10"), "darts")
    assert cifar == SearchConfig.for_algo("darts", batch_size=64, epochs=50, channels=16, layers=8, stem="cifar")
    imagenet = bench.search_config(bench.get_setting("imagenet"), "darts", order=2, batch_size=32)
    assert (imagenet.stem, imagenet.order, imagenet.batch_size, imagenet.epochs) == ("imagenet", 2, 32, 50)
    assert bench.search_config(bench.get_setting("imagenet"), "pcdarts").batch_size == 128
    pcdarts = bench.search_config(bench.get_setting("cifar10"), "pcdarts", channels=None)
    assert pcdarts == SearchConfig.for_algo("pcdarts", epochs=50, channels=16, layers=8, stem="cifar")
    assert bench.get_setting("imagenet").train_size == 1_281_167 and bench.get_setting("cifar10").train_size == 50_000


def test_the_papers_figures():
    darts = bench.paper_figures("cifar10", "darts")
    assert darts["full"].gpu_days == pytest.approx(0.26) and darts["proxy"].gpu_days == pytest.approx(0.03)
    assert darts["full"].device == darts["proxy"].device == "RTX 2080 Ti"
    imagenet = bench.paper_figures("imagenet", "darts")
    assert set(imagenet) == {"proxy"} and imagenet["proxy"].gpu_hours == 7.5 and "V100" in imagenet["proxy"].device
    assert all(f.data in ("full", "proxy") and f.gpu_hours > 0 and f.source for f in bench.PAPER_FIGURES)


@pytest.mark.parametrize("call, message", [
    (lambda: bench.get_setting("mnist"), "setting must be one of cifar10, imagenet"),
    (lambda: bench.get_setting("cifar10").overrides("enas"), "algo must be one of darts, pcdarts"),
    (lambda: bench.bench_search("cifar10", "enas"), "algo must be one of"),
    (lambda: bench.bench_search("cifar10", proxy_fraction=0.0, device="cpu"), "fraction"),
    (lambda: bench.bench_search("cifar10", "pcdarts", order=2, device="cpu"), "first-order"),
    (lambda: bench.bench_search("cifar10", device="cpu", steps=0), "steps must be at least 1"),
    (lambda: bench.bench_search("cifar10", device="cpu", image_size=0), "image_size"),
    (lambda: bench.time_calls(lambda: None, 0, 0, torch.device("cpu")), "calls"),
])
def test_bad_bench_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- timing ------------------------------------------------------------------------------


def test_time_calls_counts_warm_up_and_timed_calls(rng):
    calls, warmup = int(rng.integers(1, 6)), int(rng.integers(0, 4))
    made = []
    timing = bench.time_calls(lambda: made.append(1), calls, warmup, torch.device("cpu"), progress=False)
    assert len(made) == calls + warmup and timing.calls == calls and timing.warmup == warmup
    assert min(timing.seconds) <= timing.median <= max(timing.seconds) and timing.spread >= 0
    summary = timing.to_dict()
    assert summary["median_s"] == timing.median and summary["seconds"] == list(timing.seconds)
    assert summary["cpu_median_s"] >= 0


def test_the_defaults_per_device():
    gpu = bench.device_defaults("cuda", "imagenet")
    assert (gpu["steps"], gpu["warmup"]) == (20, 5)
    assert all(gpu[name] is None for name in ("batch_size", "channels", "layers", "image_size"))
    cpu = bench.device_defaults("cpu", "cifar10")
    assert (cpu["steps"], cpu["warmup"]) == (3, 1)
    assert cpu["batch_size"] < 64 and cpu["channels"] < 16 and cpu["layers"] < 8 and cpu["image_size"] < 32
    assert bench.device_defaults("cpu", "imagenet")["image_size"] < 224
    full = bench.device_defaults("cpu", "imagenet", full_size=True)
    assert all(full[name] is None for name in ("batch_size", "channels", "layers", "image_size"))


def test_the_device_is_named():
    info = bench.describe_device(torch.device("cpu"))
    assert info["type"] == "cpu" and info["name"] and info["threads"] == torch.get_num_threads()


# --- the report ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report():
    return bench.bench_search("cifar10", "darts", device="cpu", progress=False, log=None, **TINY)


def test_the_report_extrapolates_its_own_timings(report):
    assert report["format"] == "proxyfast-bench-search" and report["version"] == 1
    assert set(report) == {"format", "version", "created", "proxyfast_version", "torch_version", "device", "setting",
                           "reduced", "config", "mixed_impl", "timing", "peak_memory_gib", "searches", "scoring",
                           "selection", "proxy_total", "speedup", "paper"}
    assert set(report["timing"]["step"]) == {"median_s", "min_s", "max_s", "spread", "calls", "warmup", "seconds",
                                             "cpu_median_s"}
    assert report["mixed_impl"] in proxyfast.nas.available_mixed_impls() and report["peak_memory_gib"] is None
    assert report["device"]["type"] == "cpu" and report["device"]["name"]
    assert report["setting"]["image_shape"] == [3, 8, 8] and report["setting"]["train_size"] == 50_000
    assert report["reduced"] == ["batch_size", "channels", "layers", "image_size"]
    config = report["config"]
    assert (config["algo"], config["batch_size"], config["channels"], config["layers"]) == ("darts", 4, 4, 3)
    timing = report["timing"]
    assert timing["weight_step"] is None and timing["step"]["calls"] == 1 and timing["eval_batch"]["median_s"] > 0
    for data, examples in (("full", 50_000), ("proxy", 5_000)):
        search = report["searches"][data]
        plan = bench.plan_search(examples, 4, 50)
        assert search["steps_per_epoch"] == plan.steps_per_epoch and search["total_steps"] == plan.total_steps
        expected = bench.search_seconds(plan, timing["step"]["median_s"], None, timing["eval_batch"]["median_s"])
        assert search["seconds"] == pytest.approx(expected)
        assert search["hours"] == pytest.approx(expected / 3600) and search["days"] == pytest.approx(expected / 86400)
    scoring, selection = report["scoring"], report["selection"]
    assert scoring["model"] == "ResNet-20" and scoring["images_timed"] == 8
    assert scoring["seconds"] == pytest.approx(50_000 / scoring["images_per_second"])
    assert (selection["n"], selection["k"], selection["bin_width"]) == (50_000, 5_000, 0.5)
    total = scoring["seconds"] + selection["seconds"] + report["searches"]["proxy"]["seconds"]
    assert report["proxy_total"]["seconds"] == pytest.approx(total)
    full = report["searches"]["full"]["seconds"]
    assert report["speedup"]["search"] == pytest.approx(full / report["searches"]["proxy"]["seconds"])
    assert report["speedup"]["total"] == pytest.approx(full / total)
    assert report["paper"]["full"]["gpu_days"] == pytest.approx(0.26)
    assert report["paper"]["speedup"] == pytest.approx(0.26 / 0.03)


def test_the_table_sets_the_costs_beside_the_paper(report):
    text = bench.format_table(report)
    assert report["device"]["name"] in text and "reduced configuration" in text
    rows = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    assert "0.26 GPU-days" in rows["search, full data"] and "RTX 2080 Ti" in rows["search, full data"]
    assert "0.03 GPU-days" in rows["search, 10% proxy"]
    steps = f"{report['searches']['proxy']['total_steps']:,}"
    assert steps in rows["search, 10% proxy"].split()
    assert "img/s" in rows["scoring, ResNet-20"] and "selection, P1" in rows
    assert "CPU-days" in text and "speed-up: full / proxy search" in text


def test_the_json_and_the_chart(report, tmp_path):
    files = bench.write_report(report, tmp_path / "out")
    assert json.loads((tmp_path / "out" / JSON_NAME).read_text()) == report
    assert files["plot"].endswith(PLOT_NAME) and (tmp_path / "out" / PLOT_NAME).read_bytes()[:8] == PNG


def test_a_setting_without_a_published_full_search(tmp_path):
    report = bench.bench_search("imagenet", "pcdarts", device="cpu", progress=False, log=None,
                                **{**TINY, "image_size": 16, "score_images": 2})
    assert report["timing"]["weight_step"]["calls"] == 1  # PC-DARTS warms up with weight-only steps
    proxy = report["searches"]["proxy"]
    plan = bench.plan_search(128_116, 4, 50, 35)
    assert proxy["weight_only_steps"] == plan.weight_only_steps and proxy["arch_steps"] == plan.arch_steps
    assert report["paper"]["full"] is None and report["paper"]["speedup"] is None
    assert report["scoring"]["model"] == "ResNet-50" and report["selection"]["bin_width"] == 0.25
    full_row = next(line for line in bench.format_table(report).splitlines() if line.startswith("search, full"))
    assert full_row.rstrip().endswith("-")
    bench.plot_costs(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:8] == PNG


# --- the command ----------------------------------------------------------------------------


def test_the_command_prints_the_table_and_writes_the_files(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "search", "--setting", "cifar10", "--algo", "darts", "--proxy-fraction", "0.2",
                 "--epochs", "3", "--out", str(out), *TINY_ARGS]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / JSON_NAME).read_text())
    assert report["setting"]["proxy_fraction"] == 0.2 and report["searches"]["proxy"]["examples"] == 10_000
    assert report["config"]["epochs"] == 3 and "epochs" in report["reduced"]
    assert "search, 20% proxy" in text and f"wrote {out / JSON_NAME}" in text and f"wrote {out / PLOT_NAME}" in text
    assert (out / PLOT_NAME).read_bytes()[:8] == PNG


def test_the_validation_command(tmp_path, capsys):
    out = tmp_path / "validate"
    assert main(["bench", "search", "--validate", "--algo", "pcdarts", "--examples", "64", "--epochs", "2",
                 "--batch-size", "8", "--channels", "4", "--layers", "3", "--image-size", "8", "--steps", "1",
                 "--warmup", "0", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "bench_validate.json").read_text())
    assert result["search_steps_per_epoch"] == result["plan"]["steps_per_epoch"]
    assert result["plan"]["weight_only_steps"] == result["plan"]["steps_per_epoch"]  # one warm-up epoch
    assert result["measured_s"] > 0
    assert result["error"] == pytest.approx(result["predicted_s"] / result["measured_s"] - 1)
    assert result["cpu_error"] == pytest.approx(result["predicted_cpu_s"] / result["measured_cpu_s"] - 1)
    assert len(result["epoch_seconds"]) == 2 and "error" in text and "in CPU time" in text


@pytest.mark.parametrize("argv, message", [
    (["--proxy-fraction", "0"], "--proxy-fraction must be in (0, 1], got 0.0"),
    (["--setting", "mnist"], "--setting: invalid choice"),
    (["--order", "3"], "--order: invalid choice"),
    (["--steps", "0"], "--steps: must be at least 1, got 0"),
    (["--algo", "pcdarts", "--order", "2"], "first-order architect"),
    (["--device", "tpu"], "--device"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path):
    assert main(["bench", "search", "--out", str(tmp_path), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when no CUDA device is present")
def test_asking_for_a_missing_gpu_is_a_clear_error(capsys, tmp_path):
    assert main(["bench", "search", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


# --- the ImageNet baseline -----------------------------------------------------------------


def test_resnet50_has_torchvisions_parameter_count_and_shapes(rng):
    assert sum(p.numel() for p in resnet50().parameters()) == 25_557_032
    width, classes = int(rng.integers(2, 6)), int(rng.integers(2, 20))
    model = resnet50(classes, width=width).eval()
    images = torch.rand(2, 3, 64, 64)
    assert model(images).shape == (2, classes) and model.forward_features(images).shape == (2, 32 * width)
    rebuilt = ImageNetResNet(**model.config())
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(images), model(images))


@pytest.mark.parametrize("kwargs, message", [
    (dict(blocks=(3, 4, 6)), "blocks must be four positive integers"),
    (dict(width=0), "width must be at least 1, got 0"),
    (dict(std=0.0), "std must be positive"),
    (dict(mean=[0.1, 0.2]), "mean needs 1 or 3 values"),
])
def test_resnet50_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageNetResNet(**kwargs)
    with pytest.raises(ValueError, match="expected images"):
        resnet50(width=2)(torch.rand(1, 1, 32, 32))
