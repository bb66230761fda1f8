"""``python -m inference``: see :mod:`inference.cli.main`."""

from inference.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
