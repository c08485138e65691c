"""Apache Airflow provider for remote job services: submit work, wait for it without holding a worker slot.

Public names are importable from here; Airflow-dependent ones load lazily so that
``get_provider_info()`` and the embedded local service stay cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "JobStatus": "jobservice_provider.core.status",
    "Job": "jobservice_provider.core.job",
    "PollPolicy": "jobservice_provider.core.policy",
    "RetryPolicy": "jobservice_provider.core.policy",
    "JobServiceError": "jobservice_provider.core.errors",
    "JobFailedError": "jobservice_provider.core.errors",
    "JobServiceHook": "jobservice_provider.hooks.jobservice",
    "JobStatusTrigger": "jobservice_provider.triggers.jobservice",
    "JobCompleteSensor": "jobservice_provider.sensors.jobservice",
    "SubmitAndWaitOperator": "jobservice_provider.operators.jobservice",
    "CancelJobOperator": "jobservice_provider.operators.jobservice",
}

__all__ = ["__version__", "get_provider_info", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobservice_provider' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-jobservice",
        "name": "Job Service",
        "description": "Submit work to a remote job service and wait for it without holding a worker slot.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Job Service",
                "external-doc-url": "https://github.com/jobservice/airflow-provider-jobservice",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Job Service", "python-modules": ["jobservice_provider.hooks.jobservice"]}],
        "triggers": [{"integration-name": "Job Service", "python-modules": ["jobservice_provider.triggers.jobservice"]}],
        "sensors": [{"integration-name": "Job Service", "python-modules": ["jobservice_provider.sensors.jobservice"]}],
        "operators": [{"integration-name": "Job Service", "python-modules": ["jobservice_provider.operators.jobservice"]}],
        "connection-types": [
            {
                "connection-type": "jobservice",
                "hook-class-name": "jobservice_provider.hooks.jobservice.JobServiceHook",
                "hook-name": "Job Service",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Base URL", "password": "API token"},
                    "placeholders": {"host": "https://jobs.example.com", "password": "bearer token"},
                },
            }
        ],
    }
