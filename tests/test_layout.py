"""The house rules, computed from the source: no import circle between files (imports inside functions
count), dependencies in one direction, at most 8 modules at the top of ``inference/``, no ``.py`` file
outside ``tests/`` over 400 lines, every ``__init__.py`` only a docstring, and every ``from <ours> import name``
(function bodies included: a moved name breaks them only when they run) naming something its module has.

An import is an arrow to each file it names: ``import a.b`` -> ``a/b.py`` (or ``a/b/__init__.py``);
``from a.b import c`` -> ``a/b/__init__.py`` or ``a/b.py``, and also ``a/b/c.py`` when ``c`` is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inference", "kernels", "export", "kaggle_builder")
MAX_LINES = 400


def product_files() -> list[Path]:
    files = [p for top in PACKAGES for p in (REPO / top).rglob("*.py")]
    files += list((REPO / "bench").glob("*.py")) + [REPO / "build_submission.py"]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def module_file(name: str) -> Path | None:
    """The file of module or package ``name`` in this repository, or None (not ours)."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def arrows(path: Path) -> set[Path]:
    """Every file of ours that ``path`` imports, anywhere in it (function bodies included)."""
    out: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
            out.update(f for f in map(module_file, names) if f)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing file's package
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                prefix = ".".join(base.relative_to(REPO).parts)
                module = f"{prefix}.{node.module}" if node.module else prefix
            else:
                module = node.module or ""
            target = module_file(module)
            if target is not None:
                out.add(target)
            for a in node.names:
                sub = module_file(f"{module}.{a.name}")
                if sub is not None:
                    out.add(sub)
    out.discard(path)
    return out


def graph() -> dict[Path, set[Path]]:
    return {p: arrows(p) for p in product_files()}


def cycles(g: dict[Path, set[Path]]) -> list[list[Path]]:
    """Strongly connected components with more than one file (Tarjan)."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    found: list[list[Path]] = []
    counter = [0]

    def visit(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def rel(p: Path) -> str:
    return p.relative_to(REPO).as_posix()


def test_no_import_circle_between_files():
    found = cycles(graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(map(rel, c)) for c in found)


def test_the_checker_finds_a_circle_made_by_an_import_inside_a_function():
    g = {Path("a"): {Path("b")}, Path("b"): {Path("a")}, Path("c"): {Path("a")}}
    assert cycles(g) == [[Path("a"), Path("b")]]
    assert cycles({Path("a"): {Path("b")}, Path("b"): set()}) == []


def test_arrows_count_imports_inside_functions_and_modules_named_in_from_imports(tmp_path):
    runner = REPO / "inference" / "run" / "runner.py"
    got = {rel(p) for p in arrows(runner)}
    assert "inference/run/backends/registry.py" in got or "inference/run/backends/local.py" in got
    assert "inference/run/preflight.py" in got  # `from inference.run import preflight` names the module


@pytest.mark.parametrize("low, high", [
    ("kernels", ("inference", "export", "kaggle_builder")),
    ("inference", ("export", "kaggle_builder")),
    ("export", ("kaggle_builder",)),
])
def test_dependencies_point_one_way(low, high):
    g = graph()
    wrong = sorted(f"{rel(a)} -> {rel(b)}" for a, targets in g.items() if rel(a).startswith(low + "/")
                   for b in targets if rel(b).split("/")[0] in high)
    assert not wrong, wrong


def test_inference_never_imports_build_submission_or_tests():
    for path, targets in graph().items():
        assert REPO / "build_submission.py" not in targets or path.parent == REPO / "kaggle_builder", rel(path)


def test_inference_has_at_most_8_modules_at_its_top():
    top = sorted(p.name for p in (REPO / "inference").glob("*.py"))
    assert len(top) <= 8, top


def test_no_python_file_outside_tests_over_400_lines():
    long = [f"{rel(p)}: {n}" for p in product_files() if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, long


def test_every_package_init_is_only_a_docstring():
    for top in PACKAGES:
        for init in (REPO / top).rglob("__init__.py"):
            body = ast.parse(init.read_text()).body
            assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), \
                f"{rel(init)}: keep it to its docstring"


def top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (inside top-level ``if``/``try`` blocks too)."""
    names: set[str] = set()

    def collect(body) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.If):
                collect(node.body)
                collect(node.orelse)
            elif isinstance(node, ast.Try):
                for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    collect(part)

    collect(ast.parse(path.read_text(), str(path)).body)
    return names


def unresolved_imports(path: Path) -> list[str]:
    """``from <ours> import name`` anywhere in ``path`` (function bodies included) whose module neither
    defines ``name`` nor has it as a submodule: an import that fails only when that code runs."""
    out, where = [], rel(path) if path.is_relative_to(REPO) else str(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        target = module_file(node.module)
        if node.module.split(".")[0] not in (*PACKAGES, "tests") or target is None:
            continue
        defined = top_level_names(target)
        out += [f"{where}:{node.lineno}: from {node.module} import {a.name}" for a in node.names
                if a.name != "*" and a.name not in defined and module_file(f"{node.module}.{a.name}") is None]
    return out


def test_every_import_of_ours_names_something_its_module_has():
    files = product_files() + sorted(p for p in (REPO / "tests").rglob("*.py") if "__pycache__" not in p.parts)
    assert [line for f in files for line in unresolved_imports(f)] == []


def test_the_import_check_finds_a_name_its_module_lacks(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from inference.predict.windows import count_windows\n"
                     "    from inference.predict.window_placement import count_windows\n")
    assert unresolved_imports(probe) == [f"{probe}:2: from inference.predict.windows import count_windows"]
