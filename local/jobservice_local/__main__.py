"""``python -m jobservice_provider.local serve ...``."""

from __future__ import annotations

from jobservice_provider.local.cli import main

raise SystemExit(main())
