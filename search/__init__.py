"""search: the compound-scaling controller on Optuna, Pareto records, storage and the CLI."""
