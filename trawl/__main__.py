"""``python -m trawl``: the same command line as the ``trawl`` script."""

from trawl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
