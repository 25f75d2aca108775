"""Data flows one way: experiments -> search -> trainers -> space."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FORBIDDEN = {"space": {"trainers", "search", "experiments"},
             "trainers": {"search", "experiments"}}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = imported_packages(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_cli_and_study_commands_do_not_import_each_other():
    for name, other in (("cli", "search.study_commands"), ("study_commands", "search.cli"),
                        ("model_commands", "search.cli")):
        source = (ROOT / "search" / f"{name}.py").read_text()
        assert f"from {other} import" not in source and f"import {other}" not in source


@pytest.mark.parametrize("argv", [["cost", "efficientnet-b0", "--json"],
                                  ["scale", "--phi", "0-3", "--json"],
                                  ["scale", "--phi", "nan"]])
def test_cost_and_scale_import_neither_jax_nor_optuna(argv):
    """`effsearch cost`/`scale` answer instantly: no JAX, Optuna or matplotlib is loaded."""
    code = (f"import sys; from search.cli import main; code = main({argv!r}); "
            "heavy = sorted(m for m in ('jax', 'optuna', 'flax', 'matplotlib', 'sqlalchemy') "
            "if m in sys.modules); print(code, heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert done.stdout.strip().splitlines()[-1] in ("0 []", "2 []"), done.stdout


def test_readme_lists_every_sampler_with_its_budget():
    from search.registry import SAMPLERS

    readme = (ROOT / "README.md").read_text()
    for name, sampler in SAMPLERS.items():
        assert (f"| `{name}` | {sampler.doc} | {sampler.min_budget} | {sampler.budget_note} |"
                in readme)
