"""``python -m colonnade``: the ``colonnade`` command."""

from colonnade.management.cli import main

raise SystemExit(main())
