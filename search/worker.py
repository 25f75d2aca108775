"""One search worker: `python -m search.worker CONFIG --storage URL --study NAME --trials N`.

`effsearch search --workers N` starts N of these; each is an independent client of the
storage, exactly like a worker on another host. One process per worker (not threads) because
each JAX runtime owns its device memory and compilation caches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from space import UserError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search.worker", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        from search import controller, storage
        from search.config import load_search_config
        from trainers import runtime

        config = load_search_config(args.config)
        runtime.configure()
        store = storage.open_storage(args.storage)
        study, _ = controller.open_study(config, store, args.study)
        report = controller.run_worker(config, study, trials=args.trials)
    except UserError as e:
        sys.stderr.write(f"effsearch worker: error: {e}\n")
        return 2
    print(f"worker done: {report.trained} trained, {report.rejected} rejected, "
          f"{report.failed} failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
