"""The local job service (``jobservice-local``) and the API for its jobs.

A development and test service speaking the native Job Service HTTP API v1 of
airflow-provider-jobservice (the contract between them is ``docs/openapi.yaml``). It is
its own distribution and never imports the provider or Airflow. Start it with
``jobservice-local serve`` (or ``python -m jobservice_local serve``). Code running as a ``python`` job can report progress with::

    from jobservice_local import report_progress

    def crunch(n: int) -> dict:
        for i in range(n):
            ...
            report_progress(i + 1, total=n, message=f"chunk {i + 1}/{n}")
        return {"chunks": n}

This package must stay importable without Airflow and without aiohttp: it is
imported inside every ``python`` job's subprocess. The server modules
(``app``, ``service``, ``cli``) are imported only when the server runs.
"""

from __future__ import annotations

from jobservice_local.progress import report_progress

__version__ = "0.1.0"

__all__ = ["__version__", "report_progress"]
