"""Where effsearch keeps its files unless told otherwise (no imports: the CLI's help needs it)."""

DEFAULT_WORKDIR = "effsearch-runs"  # studies, worker logs
JOURNAL_NAME = "effsearch.journal"  # the default storage inside the work directory
