"""The layering rules, checked on the source: no import cycles, `engines/` knows no models,
`models/` knows no app, and the run-time side never imports torch.

Every import counts, also those inside functions (a lazy import is still a dependency). The
graph is read from the source with `ast`, so nothing is imported to check it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "engines", "models")
# the torch side of models/: training, export, INT8 calibration (reads training crops) and the MTCNN
# conversion (`python -m models.tools.train`, `models.tools.export`, ...)
TORCH_SIDE = ("models.nets", "models.training", "models.tools.train", "models.tools.export", "models.tools.model_card",
              "models.tools.quantize", "models.tools.quantize_openvino",
              "models.tools.make_mtcnn")
# the tools of app/: evaluation and synthetic test data. The command line names them as strings and
# imports them when asked.
TOOLS = ("app.eval", "app.synth")
TOOL_USERS = ("app.cli",)


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports: our own resolved to the module (or package) named, others
    by their full dotted name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _in(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def test_the_graph_is_read():
    assert "models.training.loop" in GRAPH["models.tools.train"]
    assert "engines.base" in GRAPH["engines.ort"]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_engines_know_no_models_and_models_know_no_app():
    wrong = {name: sorted(m for m in imports if _in(m, ("models", "app")))
             for name, imports in GRAPH.items() if _in(name, ("engines",))}
    wrong |= {name: sorted(m for m in imports if _in(m, ("app",)))
              for name, imports in GRAPH.items() if _in(name, ("models",))}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_run_time_never_imports_torch():
    """Neither directly nor through a torch-side module of models/."""
    wrong = {name: sorted(m for m in imports if _in(m, ("torch",)) or _in(m, TORCH_SIDE))
             for name, imports in GRAPH.items() if not _in(name, TORCH_SIDE)}
    assert {k: v for k, v in wrong.items() if v} == {}


@pytest.mark.peers("torch", "mediapipe")  # the train extra
def test_every_training_module_imports():
    """In a fresh interpreter (without cycles the order cannot matter)."""
    modules = sorted(m for m in MODULES if _in(m, ("models.training",)))
    subprocess.run([sys.executable, "-c", "; ".join(f"import {m}" for m in modules)], cwd=ROOT, check=True,
                   timeout=300)


def test_the_run_time_never_reaches_the_tools():
    """No run-time module of app/ (root, sources, geometry, gui, batch) imports evaluation or
    synthesis code."""
    wrong = {name: sorted(m for m in imports if _in(m, TOOLS))
             for name, imports in GRAPH.items() if _in(name, ("app",)) and not _in(name, TOOLS + TOOL_USERS)}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_layout():
    """app/ root holds run-time modules only; models/ root no build tool (issue 32's layout)."""
    app_root = {p.stem for p in (ROOT / "app").glob("*.py")}
    assert not app_root & {"evaluate", "bench", "cli", "synth_clips", "synth_occlusions", "occlusion_eval",
                           "turn_report", "plots", "vw_splits", "label_offsets", "frame_profile", "occlusion_sheet"}
    assert not (ROOT / "app" / "eval300vw").exists() and not (ROOT / "app" / "geometry" / "evaluate.py").exists()
    models_root = {p.stem for p in (ROOT / "models").glob("*.py")}
    assert not models_root & {"train", "export", "quantize", "make_template", "make_face3d", "confidence_stats",
                              "profiling"}
    for package in ("app/cli", "app/eval", "app/synth", "models/tools"):
        assert (ROOT / package / "__init__.py").is_file()
