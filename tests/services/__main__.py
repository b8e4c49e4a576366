"""``python -m tests.services up``: start every service the integration tests use, from local
binaries, and print the environment that points Trawl at them (for a developer shell:
``eval "$(python -m tests.services up)"``)."""

from __future__ import annotations

import argparse
import sys

from tests.services.gcs import ensure_gcs
from tests.services.postgres import PGBOUNCER_PORT, ensure_pgbouncer
from tests.services.pubsub import ensure_pubsub
from tests.services.redis import ensure_redis


def up() -> dict[str, str]:
    """Start what is not running; the variables that reach each service."""
    ensure_pgbouncer()
    return {
        "TRAWL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{PGBOUNCER_PORT}/trawl",
        "TRAWL_REDIS_URL": ensure_redis(),
        "PUBSUB_EMULATOR_HOST": ensure_pubsub(),
        "STORAGE_EMULATOR_HOST": ensure_gcs(),
        "TRAWL_GCS_CREATE_BUCKET": "1",
        "TRAWL_ALLOW_PRIVATE_NETWORKS": "1",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.services")
    parser.add_argument("command", choices=["up"])
    parser.parse_args(argv)
    for name, value in up().items():
        print(f"export {name}={value}")
    print(
        "# the database `trawl` must exist: createdb -h 127.0.0.1 -U postgres trawl; trawl migrate",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
