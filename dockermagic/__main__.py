"""``python -m dockermagic``: the command line."""

from dockermagic.cli import main

raise SystemExit(main())
