"""``python -m bootree`` runs the command-line interface."""

from bootree.cli import main

raise SystemExit(main())
