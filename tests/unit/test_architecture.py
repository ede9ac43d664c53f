"""The package's layering rules, checked on the source (docs/architecture.md):

* one-way layers: spec → roofline → plan → {functional, sim} → {serve, sweep} → {report,
  validate} → cli; a module imports only from its own layer or those to its left (imports
  inside functions and under TYPE_CHECKING count too), and functional and sim never import
  each other;
* no module imports a ``_private`` name (or module) from another package;
* the CLI, the report, the serving layer and the sweeps ask a mapper what they need and never
  test its class.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2] / "hwsim"
#: Rank of each package: a module may import packages of the same or a lower rank.
RANK = {
    "spec": 0,
    "roofline": 1,
    "plan": 2,
    "functional": 3,
    "sim": 3,
    "serve": 4,
    "sweep": 4,
    "train": 4,
    "report": 5,
    "validate": 5,
    "cli": 6,
    "app": 6,
}
#: Same-rank packages that must not import each other.
APART = {frozenset(("functional", "sim"))}


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if len(rel.parts) < 2:
            continue  # hwsim/__init__.py, hwsim/__main__.py
        out.append((rel.parts[0], path, ast.parse(path.read_text(encoding="utf-8"))))
    return out


MODULES = _modules()


def _imports(tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every ``hwsim.*`` import anywhere in ``tree``."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("hwsim."):
            out.append((n.lineno, n.module, [a.name for a in n.names]))
        elif isinstance(n, ast.Import):
            out += [(n.lineno, a.name, []) for a in n.names if a.name.startswith("hwsim.")]
    return out


def test_every_package_has_a_rank() -> None:
    assert {pkg for pkg, _, _ in MODULES} <= set(RANK)


def test_layers_import_one_way() -> None:
    bad = []
    for pkg, path, tree in MODULES:
        for line, module, _ in _imports(tree):
            other = module.split(".")[1]
            if other not in RANK:
                continue
            if RANK[other] > RANK[pkg] or frozenset((pkg, other)) in APART:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} ({pkg}) imports {module}")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_packages() -> None:
    bad = []
    for pkg, path, tree in MODULES:
        for line, module, names in _imports(tree):
            parts = module.split(".")
            if parts[1] == pkg:
                continue
            private = [n for n in names if n.startswith("_")]
            private += [p for p in parts[2:] if p.startswith("_")]
            if private:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} {module}: {private}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["cli", "report", "serve", "sweep"])
def test_callers_never_test_a_mappers_class(package: str) -> None:
    pattern = re.compile(r"isinstance\(.*Mapper")
    bad = [
        f"{path.relative_to(ROOT.parent)}:{i}"
        for pkg, path, _ in MODULES
        if pkg == package
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not bad, bad
