"""``python -m nasrank`` is the ``nasrank`` command."""

from nasrank.search.cli import main

raise SystemExit(main())
