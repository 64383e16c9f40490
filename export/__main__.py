"""``python -m export --text "..." --out snapshot.html``: see :mod:`export.cli`."""

from export.cli import main

raise SystemExit(main())
