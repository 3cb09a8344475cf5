"""The package's shape stays as docs/architecture.md draws it: no import circles, no
module reaching into a private part of another package, old module paths that still
import, and long jobs that read as their steps."""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import proxyfast
from proxyfast import _moved

PACKAGE_DIR = pathlib.Path(proxyfast.__file__).parent
# The root package's own internals (argument checks, the atomic writer, the file
# preamble, the version, the extension loader) are shared by the whole library.
ROOT_INTERNALS = {"_atomic", "_build_config", "_build_info", "_checks", "_extension", "_fileformat", "_moved",
                  "_version"}


def module_name(path: pathlib.Path) -> str:
    parts = ("proxyfast",) + path.relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}


def package_of(name: str, path: pathlib.Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports(name: str, path: pathlib.Path, known: dict[str, pathlib.Path]):
    """(target module, imported name or None, line) for each proxyfast import, except in a
    package's ``__getattr__``, where the old names of moved code are looked up on demand."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(node) for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
            for node in ast.walk(function)}
    package = package_of(name, path)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("proxyfast"):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("proxyfast"):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    yield submodule, None, node.lineno
                else:
                    yield source, alias.name, node.lineno


def is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def test_no_module_imports_a_private_part_of_another_package():
    known = modules()
    offences = []
    for name, path in known.items():
        package = package_of(name, path)
        for target, imported, line in imports(name, path, known):
            parts = target.split(".")[1:] + ([imported] if imported else [])
            private = [index for index, part in enumerate(parts) if is_private(part)]
            if not private:
                continue
            if imported is not None and private[0] == len(parts) - 1:
                # a private name in a module belongs to the module's package
                owner = target if known[target].name == "__init__.py" else target.rpartition(".")[0]
            else:
                owner = ".".join(["proxyfast"] + parts[:private[0]])
            if owner == "proxyfast" and parts[0] in ROOT_INTERNALS and len(private) == 1 and private[0] == 0:
                continue
            if package == owner or package.startswith(owner + "."):
                continue
            offences.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {'.'.join(['proxyfast'] + parts)}")
    assert not offences, "private names used across packages:\n" + "\n".join(offences)


def test_the_modules_import_one_another_without_circles():
    known = modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        for target, _, _ in imports(name, path, known):
            if target in known and target != name and target != "proxyfast":
                graph[name].add(target)
        package = package_of(name, path)
        if package != name:  # importing a module first runs its package's __init__
            graph[name].add(package)
    graph = {name: {target for target in targets if not name.startswith(target + ".")} for name, targets in
             graph.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_the_moved_modules_keep_their_old_paths():
    from proxyfast import pretrain
    from proxyfast.binning import histogram
    from proxyfast.forgetting import Forgetting, forgetting
    from proxyfast.io import read_entropy_list
    from proxyfast.proxyset import ProxySet
    from proxyfast.report import bin_table

    assert pretrain.train is proxyfast.baseline.train
    assert histogram is proxyfast.histogram and ProxySet is proxyfast.ProxySet
    assert forgetting is proxyfast.forgetting and Forgetting is proxyfast.Forgetting
    assert read_entropy_list is proxyfast.scoring.read_entropy_list
    assert bin_table is proxyfast.selection.summary.bin_table
    assert proxyfast.io.write_entropy_list is proxyfast.scoring.write_entropy_list


@pytest.mark.parametrize("old, new", sorted(_moved.MOVED_MODULES.items()))
def test_every_old_module_path_is_the_module_it_names(old, new):
    module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    parent, _, leaf = old.rpartition(".")
    parent = importlib.import_module(parent)
    # As an attribute too, unless the package exports a name of its own there
    # (proxyfast.forgetting is the function).
    assert getattr(parent, leaf) is module or leaf in parent.__all__


def test_the_old_module_paths_import_first_in_a_fresh_interpreter():
    moved = sorted(_moved.MOVED_MODULES.items())
    code = "; ".join([f"import {old}" for old, _ in moved] + [
        "import importlib, sys",
        f"assert all(sys.modules[old] is importlib.import_module(new) for old, new in {moved!r})",
    ])
    subprocess.run([sys.executable, "-c", code], check=True)


# The long jobs, kept as named steps (docs/architecture.md, "Rules that keep the shape").
STEPWISE_MODULES = ["nas/train.py", "nas/search.py", "baseline/train.py"]
MAX_FUNCTION_LINES = 60


def code_lines(function: ast.FunctionDef) -> int:
    """Lines of a function from its first statement after the docstring to its end: the
    signature and the docstring document it and are not counted."""
    body = function.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return function.end_lineno - body[0].lineno + 1


def long_functions(source: str) -> list[tuple[str, int, int]]:
    return [(node.name, node.lineno, code_lines(node)) for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("module", STEPWISE_MODULES)
def test_the_long_jobs_are_written_as_short_steps(module):
    offences = long_functions((PACKAGE_DIR / module).read_text(encoding="utf-8"))
    assert not offences, f"functions over {MAX_FUNCTION_LINES} lines in {module}: " + ", ".join(
        f"{name} (line {line}, {lines} lines)" for name, line, lines in offences)


def test_a_long_function_is_measured_without_its_docstring():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    docstring = '    """A docstring\n' + "    of many lines.\n" * 20 + '    """\n'
    assert long_functions(f"def short():\n{docstring}{body}") == []
    assert long_functions(f"def long():\n{docstring}{body}    return x0\n") == [("long", 1, MAX_FUNCTION_LINES + 1)]

