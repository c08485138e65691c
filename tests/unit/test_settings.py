"""The provider's timing settings (``[jobservice]``) and the trigger's kill budget from ``[triggerer]
on_kill_timeout``: declared in provider info, documented, read from Airflow's config (issue 13, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobservice_provider import _settings as settings
from jobservice_provider import get_provider_info
from jobservice_provider.triggers import jobservice as trigger_module
from jobservice_provider.triggers.jobservice import DEFAULT_ON_KILL_BUDGET, on_kill_budget

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


def test_every_setting_is_declared_in_provider_info_with_its_default() -> None:
    options = get_provider_info()["config"]["jobservice"]["options"]
    assert set(options) == {"triggerer_gc_freeze", "connection_cache_ttl", "cancel_wait", "log_tail_timeout"}
    for name, setting in settings.SECONDS.items():
        assert float(options[name]["default"]) == setting.default, name
        assert options[name]["type"] == "float" and options[name]["description"] == setting.description, name
    assert (settings.SECONDS["connection_cache_ttl"].default, settings.SECONDS["cancel_wait"].default) == (30.0, 60.0)


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in (*settings.SECONDS, "triggerer_gc_freeze"):
        assert f"`{name}`" in text, name
    assert "`[triggerer] on_kill_timeout`" in text


@pytest.mark.parametrize("name", list(settings.SECONDS))
def test_settings_are_read_from_airflows_config(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(f"AIRFLOW__JOBSERVICE__{name.upper()}", raising=False)
    assert settings.seconds(name) == settings.SECONDS[name].default
    monkeypatch.setenv(f"AIRFLOW__JOBSERVICE__{name.upper()}", "2.5")
    assert settings.seconds(name) == 2.5
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv(f"AIRFLOW__JOBSERVICE__{name.upper()}", bad)
        with pytest.raises(ValueError, match=rf"\[jobservice\] {name} must be a number of seconds >= 0, got '{bad}'"):
            settings.seconds(name)


@pytest.mark.parametrize(("timeout", "budget"), [("30", 25.0), ("60", 55.0), ("10", 8.0), ("3", 2.4)])
def test_the_kill_budget_follows_on_kill_timeout(timeout: str, budget: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__TRIGGERER__ON_KILL_TIMEOUT", timeout)
    assert on_kill_budget() == pytest.approx(budget)


def test_without_on_kill_timeout_the_budget_is_25_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow before 3.3 has no such option (its get answers the fallback); simulated, since
    # this environment runs 3.3.
    real_get = trigger_module.conf.get

    def get(section: str, key: str, **kwargs: object) -> object:
        if (section, key) == ("triggerer", "on_kill_timeout"):
            return kwargs.get("fallback")
        return real_get(section, key, **kwargs)

    monkeypatch.setattr(trigger_module.conf, "get", get)
    assert on_kill_budget() == DEFAULT_ON_KILL_BUDGET == 25.0
