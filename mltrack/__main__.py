"""``python -m mltrack`` is the ``mltrack`` command."""

from mltrack.cli.main import main

raise SystemExit(main())
