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
    "JobTimeoutError": "jobservice_provider.core.errors",
    "JobStaleError": "jobservice_provider.core.errors",
    "JobNotFoundError": "jobservice_provider.core.errors",
    "SubmitRequest": "jobservice_provider.core.dialects",
    "ListQuery": "jobservice_provider.core.dialects",
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
    from jobservice_provider._settings import provider_config_options

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
        "extra-links": ["jobservice_provider.links.jobservice.JobServiceJobLink"],
        "connection-types": [
            {
                "connection-type": "jobservice",
                "hook-class-name": "jobservice_provider.hooks.jobservice.JobServiceHook",
                "hook-name": "Job Service",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "Base URL", "login": "Login (basic auth)", "password": "API token"},
                    "placeholders": {
                        "host": "https://jobs.example.com",
                        "login": "only with auth_type basic",
                        "password": "token, API key or password",
                    },
                },
                "conn-fields": _conn_fields(),
            }
        ],
        "config": {
            "jobservice": {
                "description": "Settings of the Job Service provider.",
                "options": {
                    "triggerer_gc_freeze": {
                        "description": (
                            "Call gc.freeze() once in a triggerer process when its first Job Service wait starts, so "
                            "the objects alive then (mostly Airflow's imported modules) are left out of every later "
                            "full garbage collection. With thousands of waits such collections become frequent, and "
                            "each one walks that whole heap with the event loop stopped (120-160 ms for about "
                            "220,000 objects, measured). It changes the whole process, the other providers' "
                            "triggers included, so it is off unless you turn it on."
                        ),
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                    **provider_config_options(),
                },
            }
        },
    }


_JSON_TYPES = {str: "string", bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}


def _conn_fields() -> dict[str, dict[str, Any]]:
    """The connection form's extra fields (``conn-fields``), one per allow-listed extra.

    The list of extras is ``core.config.KNOWN_EXTRAS`` (an extra added there appears in the
    form even without a label here); defaults come from ``ServiceConfig``. Airflow's form
    stores the fields under their plain names in the connection's extra, with ``null`` for a
    field left empty, which the hook reads as "use the default".
    """
    import dataclasses

    from jobservice_provider.core.config import AUTH_TYPES, KNOWN_EXTRAS, ServiceConfig, dialect_names
    from jobservice_provider.core.policy import MIN_POLL_INTERVAL

    looks: dict[str, tuple[str, dict[str, Any]]] = {
        # The installed dialects too (entry point group jobservice_provider.dialects).
        "dialect": ("Dialect", {"enum": dialect_names()}),
        "auth_type": ("Authentication", {"enum": list(AUTH_TYPES)}),
        "auth_header": ("API key header", {}),
        "dialect_options": ("Dialect options", {"format": "json"}),
        "verify_tls": ("Verify TLS certificates", {}),
        "request_timeout": ("Request timeout (s)", {"minimum": 0.1}),
        "poll_interval": ("Default poll interval (s)", {"minimum": MIN_POLL_INTERVAL}),
        "transient_error_budget": ("Transient-error budget (s)", {"minimum": 0}),
        "extra_headers": ("Extra headers", {"format": "json"}),
        "max_response_bytes": ("Max response size (bytes)", {"minimum": 1}),
        # A password field: the URL may carry the proxy's credentials (Airflow also redacts
        # the "proxy" key when it shows a connection's extra).
        "proxy": ("Proxy URL", {"format": "password"}),
        "ca_bundle": ("CA bundle (PEM file path)", {}),
        "client_cert": ("Client certificate (PEM file path)", {}),
        "client_key": ("Client key (PEM file path)", {}),
    }
    defaults = {f.name: f.default for f in dataclasses.fields(ServiceConfig)}
    fields: dict[str, dict[str, Any]] = {}
    for key, (types, meaning) in KNOWN_EXTRAS.items():
        label, extra_schema = looks.get(key, (key.replace("_", " ").capitalize(), {}))
        json_type = _JSON_TYPES.get(types[0], "string")
        schema: dict[str, Any] = {"type": [json_type, "null"], **extra_schema}
        default = defaults.get(key)
        description = meaning[:1].upper() + meaning[1:]
        # Booleans and choices show their default as a value: an untouched switch or list
        # would otherwise read as "off"/"none". An empty number simply means the default.
        if json_type == "boolean" or "enum" in schema:
            schema["default"] = default
        elif json_type == "number" and isinstance(default, int | float):
            description += f"; empty means {default:g}"
        fields[key] = {"label": label, "description": description, "schema": schema}
    return fields
