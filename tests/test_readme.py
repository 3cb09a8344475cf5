"""The README's Python blocks run as written, in order, in one namespace, as a reader
would paste them into one session (in a scratch directory, on the installed
Fashion-MNIST)."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def python_blocks() -> list[str]:
    with open(README, encoding="utf-8") as file:
        return re.findall(r"^```python\n(.*?)^```", file.read(), flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 4


def test_every_python_block_runs_as_written(tmp_path, monkeypatch, capsys):
    from proxyfast.data import fashion_mnist

    try:
        fashion_mnist(train=False)
    except (OSError, ValueError) as error:
        pytest.skip(f"the README uses the installed Fashion-MNIST (tools/setup.sh installs it): {error}")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for number, block in enumerate(python_blocks(), 1):
        code = compile(block, f"README.md python block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the README's own code
    printed = capsys.readouterr().out
    assert "test accuracy" in printed  # the baseline block trained and measured
    assert os.path.exists("out/search/genotype.txt")
    assert namespace["proxy"].k == 6000 and namespace["trained"].test_accuracy is not None
