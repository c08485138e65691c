"""``python -m jobservice_local serve ...``."""

from __future__ import annotations

from jobservice_local.cli import main

raise SystemExit(main())
