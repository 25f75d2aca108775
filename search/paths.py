"""Where effsearch keeps its files unless told otherwise (no imports: the CLI's help needs it)."""

DEFAULT_WORKDIR = "effsearch-runs"  # studies, worker logs
JOURNAL_NAME = "effsearch.journal"  # the default storage inside the work directory
# The storage URL when no --storage is given (study commands, workers): a password in argv
# shows in `ps`, in the environment (a Slurm script's, a Kubernetes Secret's) it does not.
STORAGE_ENV = "EFFSEARCH_STORAGE_URL"
