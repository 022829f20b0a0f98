"""The layout's rules (docs/architecture.md), read from the imports themselves.

Every `import` and `from ... import` in infra/ and app/ counts, also those inside functions:
a lazy import is still a dependency, it only runs later.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from infra.cli import COMMAND_MODULES

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("aws", "local", "grade", "doctor", "bench")
CORE = {"infra", "infra.config", "infra.errors", "infra.console", "infra.state"}
# Which packages each package may import, besides itself and the shared core.
ALLOWED = {
    "aws": set(),
    "doctor": {"aws"},
    "grade": set(),  # the grader's core is plain HTTP; see GRADE_AWS_EXTRA
    "local": {"aws", "grade"},
    "bench": {"aws", "local", "grade", "doctor"},
}
GRADE_AWS_EXTRA = "infra.grade.target_health"  # `grade --aws`: the one way to AWS


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(top: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((REPO / top).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules that `name` imports (a package's import counts as the package)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = {**modules("infra"), **modules("app")}
    known = set(mods)
    edges = {name: imports_of(name, path, known) for name, path in mods.items()}
    edges["infra.cli"] |= set(COMMAND_MODULES)  # imported by name, with importlib
    return edges


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in PACKAGES) else None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports(graph):
    # the checks below mean something only if the parser finds real edges
    assert "infra.aws.clients" in graph["infra.aws.stack"]
    assert "infra.grade.grader" in graph["infra.local.testrun"]  # a lazy import counts
    assert "infra.aws.lb_lookup" in graph["infra.doctor.examination"]  # `from pkg import mod`


def test_no_import_circle_between_modules(graph):
    assert cycles(graph) == []


def test_no_import_circle_between_packages(graph):
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        source = package_of(module)
        for target in targets:
            if source and package_of(target) and package_of(target) != source:
                edges[source].add(package_of(target))
    assert cycles(dict(edges)) == []


def test_app_imports_nothing_from_infra(graph):
    assert {m: t for m, t in graph.items() if m.startswith("app")
            and any(x.startswith("infra") for x in t)} == {}


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_they_may(graph, package):
    wrong = {}
    for module, targets in graph.items():
        if package_of(module) != package or module == GRADE_AWS_EXTRA:
            continue
        bad = sorted(t for t in targets if t not in CORE and package_of(t) not in
                     ALLOWED[package] | {package})
        if bad:
            wrong[module] = bad
    assert wrong == {}


def test_local_uses_only_the_graders_core(graph):
    used = {t for m, ts in graph.items() if package_of(m) == "local" for t in ts
            if package_of(t) == "grade"}
    assert used and GRADE_AWS_EXTRA not in used and "infra.grade.cli" not in used


def test_the_graders_aws_extra_is_the_only_way_to_aws(graph):
    reaches_aws = {m for m, ts in graph.items() if package_of(m) == "grade"
                   and any(package_of(t) in ("aws", "doctor") for t in ts)}
    assert reaches_aws == {GRADE_AWS_EXTRA}


def test_only_the_cli_imports_bench(graph):
    importers = {m for m, ts in graph.items() for t in ts
                 if package_of(t) == "bench" and package_of(m) != "bench"}
    assert importers == {"infra.cli"}


def test_at_most_ten_modules_at_the_top_of_infra():
    top = sorted(p.name for p in (REPO / "infra").glob("*.py"))
    assert len(top) <= 10, top


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_is_for(package):
    doc = ast.get_docstring(ast.parse((REPO / "infra" / package / "__init__.py").read_text()))
    assert doc and 3 <= len(doc.splitlines()) <= 6
    assert "import" in doc  # what it may and must not import


def test_tests_mirror_the_packages():
    assert all((REPO / "tests" / p).is_dir() for p in (*PACKAGES, "app"))


def test_a_plain_grade_loads_neither_boto3_nor_the_doctor():
    code = ("import sys, infra.grade.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore') "
            "or m.startswith(('infra.aws', 'infra.doctor', 'infra.local'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
