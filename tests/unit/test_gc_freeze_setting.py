"""gc.freeze() changes the whole triggerer process: the provider does it only when the
``[jobservice] triggerer_gc_freeze`` option asks for it."""

from __future__ import annotations

import gc

import pytest

from jobservice_provider.triggers import jobservice as trigger_module


@pytest.mark.parametrize(("setting", "freezes"), [(None, 0), ("False", 0), ("True", 1)])
def test_gc_freeze_happens_once_and_only_when_asked(monkeypatch: pytest.MonkeyPatch, setting: str | None, freezes: int) -> None:
    calls: list[None] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(None))
    monkeypatch.setattr(trigger_module, "_gc_freeze_decided", False)
    if setting is None:
        monkeypatch.delenv("AIRFLOW__JOBSERVICE__TRIGGERER_GC_FREEZE", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__JOBSERVICE__TRIGGERER_GC_FREEZE", setting)
    trigger_module._freeze_gc_if_asked()
    trigger_module._freeze_gc_if_asked()  # a second wait in the same process
    assert len(calls) == freezes
