"""One search worker: `python -m search.worker CONFIG --study NAME --trials N [--storage URL]`.

`effsearch search --workers N` starts N of these; each is an independent client of the
storage, exactly like a worker on another host. One process per worker (not threads) because
each JAX runtime owns its device memory and compilation caches.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from search.paths import STORAGE_ENV  # also how `effsearch search --workers N` passes it
from space import UserError
from space.errors import error_text

CHECKPOINTS_ENV = "EFFSEARCH_CHECKPOINTS"  # and where promotions' checkpoints go
EXIT_STOPPED = 3  # the search stopped itself (`terminal.Stopped`): the launcher says why


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="search.worker", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                        help=f"the storage URL (default: ${STORAGE_ENV})")
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--checkpoints", default=os.environ.get(CHECKPOINTS_ENV),
                        help="where halving's stopped trials leave checkpoints for their "
                             f"promotions, shared by every worker (default: "
                             f"${CHECKPOINTS_ENV}; none: promotions retrain)")
    args = parser.parse_args(argv)
    if not args.storage:
        parser.error(f"--storage or ${STORAGE_ENV} is required")
    from search.terminal import Stopped

    try:
        from search import controller, slots, storage
        from search.config import load_search_config
        from trainers import runtime

        config = load_search_config(args.config)
        runtime.start(args.allow_cpu)
        store = storage.open_storage(args.storage)
        slot = slots.claim(args.storage, args.study)
        study, _ = controller.open_study(config, store, args.study,
                                         sampler_seed=controller.worker_seed(config.seed, slot))
        print(f"worker slot {slot}: sampler seed "
              f"{controller.worker_seed(config.seed, slot)}", flush=True)
        report = controller.run_worker(config, study, trials=args.trials,
                                       checkpoints=controller.checkpoint_root(args.checkpoints))
    except UserError as e:
        sys.stderr.write(error_text("effsearch worker", e))
        return 2
    except Stopped as e:
        sys.stderr.write(f"effsearch worker: stopped: {e}\n")
        return EXIT_STOPPED
    print(f"worker done: {report.trained} trained, {report.rejected} rejected, "
          f"{report.failed} failed, {report.promoted} promoted, {report.duplicates} duplicates",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
