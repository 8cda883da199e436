"""The house rules of docs/architecture.md, checked on the source tree:

* imports inside pyconvnet only point down its layers (a module may import a module
  of its own layer or a lower one, never a higher one), and there is no import cycle;
* the leaf modules import nothing else from pyconvnet, and the naive reference
  nothing outside itself (the oracle stays independent of what it checks);
* C++: kernel and core files are plain C++ (no pybind11), only csrc/bind includes it.

Function-level (lazy) imports count as much as module-level ones."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import pyconvnet

# The source tree beside the tests (the installed package when run elsewhere).
ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "pyconvnet" / "__init__.py").exists():
    ROOT = Path(pyconvnet.__file__).resolve().parent.parent
PKG = ROOT / "pyconvnet"
CSRC = ROOT / "csrc"

# The layers, lowest first (docs/architecture.md has the same table). A module not
# listed here fails the test: place it in a layer when you add it.
LAYERS = [
    ["pyconvnet", "pyconvnet._args", "pyconvnet._process", "pyconvnet._core", "pyconvnet._threads",
     "pyconvnet._cpu", "pyconvnet.gradcheck", "pyconvnet._safetensors", "pyconvnet._random", "pyconvnet.memory"],
    ["pyconvnet.functional", "pyconvnet.reference", "pyconvnet.data"],
    ["pyconvnet.init", "pyconvnet.losses", "pyconvnet.optim", "pyconvnet.metrics", "pyconvnet.layers"],
    ["pyconvnet.checkpoint", "pyconvnet.training", "pyconvnet.models", "pyconvnet.tta",
     "pyconvnet.profiler", "pyconvnet.gan"],
    ["pyconvnet.search", "pyconvnet.plots", "pyconvnet.onnx", "pyconvnet.distributed"],
    ["pyconvnet.relaxed", "pyconvnet.experiments", "pyconvnet.cli", "pyconvnet.__main__"],
]
LEAVES = {"pyconvnet._args", "pyconvnet._process", "pyconvnet.gradcheck", "pyconvnet._safetensors", "pyconvnet._random"}
SELF_CONTAINED = {"pyconvnet.reference", "pyconvnet.data"}  # import nothing of pyconvnet outside themselves


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in PKG.rglob("*.py")}


MODULES = _modules()


def _layer(mod: str) -> int:
    """The layer of a module: that of its longest listed prefix."""
    best, layer = "", None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (mod == name or mod.startswith(name + ".")) and len(name) > len(best):
                best, layer = name, i
    if layer is None:
        raise AssertionError(f"{mod} is in no layer: add it to LAYERS here and to docs/architecture.md")
    return layer


def _resolve(importer: str, is_pkg: bool, node) -> list[str]:
    """The pyconvnet modules an import statement refers to."""
    out = []
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name == "pyconvnet" or a.name.startswith("pyconvnet."):
                out.append(a.name)
        return out
    if node.level:
        base = importer.split(".") if is_pkg else importer.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not (target == "pyconvnet" or target.startswith("pyconvnet.")):
        return out
    for a in node.names:
        sub = f"{target}.{a.name}"
        # `from pkg import mod` imports the submodule; `from mod import name` the module itself
        out.append(sub if sub in MODULES or sub == "pyconvnet._core" else target)
    return out


def _graph():
    graph = {}
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(_resolve(mod, path.name == "__init__.py", node))
        deps.discard(mod)
        graph[mod] = deps
    return graph


GRAPH = _graph()


def test_every_module_has_a_layer():
    for mod in list(MODULES) + ["pyconvnet._core"]:
        _layer(mod)


def test_imports_only_point_down():
    bad = []
    for mod, deps in GRAPH.items():
        for dep in deps:
            if _layer(dep) > _layer(mod):
                bad.append(f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(GRAPH.get(m, ())):
            if state.get(d) == "open":
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_leaves_and_the_reference_are_independent():
    bad = []
    for mod, deps in GRAPH.items():
        if mod in LEAVES and deps:
            bad.append(f"leaf {mod} imports {sorted(deps)}")
        for group in SELF_CONTAINED:
            if mod == group or mod.startswith(group + "."):
                outside = sorted(d for d in deps if not (d == group or d.startswith(group + ".")))
                if outside:
                    bad.append(f"{mod} imports {outside} from outside {group}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_cycle_and_an_upward_import(monkeypatch):
    """The rules above can fail: a made-up graph with a cycle and an upward edge."""
    monkeypatch.setitem(GRAPH, "pyconvnet.layers.base", GRAPH["pyconvnet.layers.base"] | {"pyconvnet.training"})
    with pytest.raises(AssertionError, match="upward"):
        test_imports_only_point_down()
    monkeypatch.setitem(GRAPH, "pyconvnet.functional.conv",
                        GRAPH["pyconvnet.functional.conv"] | {"pyconvnet.functional"})
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycle()


@pytest.mark.skipif(not CSRC.is_dir(), reason="C++ sources not beside the installed package")
def test_kernels_are_plain_cxx():
    bad = []
    for folder in ("core", "kernels"):
        for p in (CSRC / folder).iterdir():
            if "pybind11" in p.read_text():
                bad.append(os.fspath(p.relative_to(ROOT)))
    assert not bad, f"pybind11 outside csrc/bind: {bad}"


def test_test_files_have_unique_basenames():
    # pytest's default (prepend) import mode imports test files by basename: two
    # test_x.py in different folders without __init__.py stop collection.
    seen: dict[str, Path] = {}
    for path in sorted(Path(__file__).resolve().parent.rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a basename"
        seen[path.name] = path
