"""``python -m driftstream``: the ``driftstream`` command."""

from driftstream.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
