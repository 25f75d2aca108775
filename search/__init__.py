"""search: the compound-scaling controller on Optuna, Pareto records, storage and the CLI."""

# The one place the version lives: pyproject reads it (`[tool.setuptools.dynamic]`), and the
# CLI needs no package metadata, so `PYTHONPATH=. python -m search.cli` works from a bare
# source tree (a GPU host where nothing is pip-installed).
__version__ = "0.1.0"
