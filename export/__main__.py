"""``python -m export``: see :mod:`export.cli`."""

from export.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
