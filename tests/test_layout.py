"""The package's shape stays as docs/architecture.md draws it: no import circles, and no
module reaches into a private part of another package."""

import ast
import pathlib

import proxyfast

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
