"""The watcher's check schedule, with plain numbers: no event loop, no clock."""

from __future__ import annotations

import pytest

from jobservice_provider.core.job import Job
from jobservice_provider.core.schedule import CheckSchedule


def running(job_id: str, version: int | None = 1) -> Job:
    return Job.from_json({"id": job_id, "status": "RUNNING", "version": version})


def test_checks_due_within_the_window_come_out_together_and_later_ones_wait() -> None:
    schedule = CheckSchedule(window=0.5)
    for job_id in ("a", "b", "c"):
        schedule.subscribe(job_id)
    schedule.add("a", now=0.0, delay=10.0)
    schedule.add("b", now=0.0, delay=10.2)
    schedule.add("c", now=0.0, delay=30.0)
    assert schedule.wake_at() == 10.25  # a's latest moment: 10 + half the window
    assert schedule.take_due(9.0) == []  # nobody's slack has begun
    assert [check.job_id for check in schedule.take_due(10.25)] == ["a", "b"]  # b's slack began at 9.95
    assert schedule.wake_at() == 30.25


def test_checks_come_out_by_their_latest_moment_and_ties_in_the_order_they_were_asked_for() -> None:
    schedule = CheckSchedule(window=1.0)
    asked = [("e", 10.0), ("a", 10.0), ("d", 9.8), ("c", 10.0), ("b", 9.9), ("f", 10.0)]
    for job_id, delay in asked:
        schedule.subscribe(job_id)
        schedule.add(job_id, now=0.0, delay=delay)
    # latest = due + 0.5: d (10.3), b (10.4), then the four due at 10 s in the order they came.
    assert [check.job_id for check in schedule.take_due(10.0)] == ["d", "b", "e", "a", "c", "f"]


def test_slack_is_a_tenth_of_a_short_delay_so_fast_waits_keep_their_pace() -> None:
    schedule = CheckSchedule(window=0.5)
    schedule.subscribe("fast")
    check = schedule.add("fast", now=100.0, delay=0.1)
    assert (check.not_before, check.latest) == (pytest.approx(100.09), pytest.approx(100.11))
    assert schedule.take_due(100.05) == []
    assert schedule.take_due(100.10) == [check]


def test_a_withdrawn_check_is_never_taken_and_unsubscribing_closes_the_rest() -> None:
    schedule = CheckSchedule()
    schedule.subscribe("j")
    first = schedule.add("j", now=0.0, delay=1.0)
    second = schedule.add("j", now=0.0, delay=1.0)
    schedule.close([first])  # its waiter gave up
    assert schedule.take_due(2.0) == [second]  # sent, but open until answered
    third = schedule.add("j", now=2.0, delay=1.0)
    assert schedule.unsubscribe("j") == [second, third] and third.done and "j" not in schedule.jobs
    assert schedule.wake_at() is None


def test_a_pause_delays_every_check_and_resume_ends_it_at_once() -> None:
    schedule = CheckSchedule()
    schedule.subscribe("j")
    check = schedule.add("j", now=0.0, delay=1.0)
    schedule.pause(until=60.0)
    assert schedule.wake_at() == 60.0 and schedule.take_due(5.0) == []
    schedule.resume()
    assert schedule.wake_at() == 1.1 and schedule.take_due(5.0) == [check]  # slack: a tenth of 1 s


def test_an_answer_closes_every_pending_check_of_its_job_and_says_when_it_joined() -> None:
    schedule = CheckSchedule()
    schedule.subscribe("j")
    checks = [schedule.add("j", now=0.0, delay=d) for d in (1.0, 5.0)]
    answered, joined = schedule.answer(running("j"))
    assert answered == checks and joined and all(check.done for check in checks)
    assert schedule.answer(running("j", 2)) == ([], False)  # not its first record
    assert schedule.answer(running("stranger")) == ([], False)  # nobody subscribed


def test_held_checks_wait_for_the_watch_and_come_back_due_at_once_when_it_fails() -> None:
    schedule = CheckSchedule()
    schedule.subscribe("j")
    schedule.answer(running("j"))
    assert schedule.watch_list(limit=100) == {"j": 1}  # the open watch lists it
    held = schedule.add("j", now=0.0, delay=5.0, hold=True)
    polled = schedule.add("j", now=0.0, delay=5.0, hold=False)
    assert schedule.take_due(6.0, watch_ok=True) == [polled] and held.held
    assert schedule.wake_at() is None  # held checks do not wake the poller
    assert schedule.uncover_all() == 1
    assert schedule.take_due(6.0) == [held] and not held.held


def test_a_check_is_held_only_if_the_watch_reports_as_soon_as_a_poll_would() -> None:
    schedule = CheckSchedule()
    schedule.subscribe("j")
    schedule.answer(running("j"))  # joined, but the open watch does not list it yet
    soon = schedule.add("j", now=0.0, delay=5.0, hold=True)
    assert schedule.take_due(5.0, watch_ok=True, next_watch_by=30.0) == [soon]  # the next watch is 25 s away
    later = schedule.add("j", now=5.0, delay=5.0, hold=True)
    assert schedule.take_due(10.0, watch_ok=True, next_watch_by=12.0) == [] and later.held
    unversioned = CheckSchedule()
    unversioned.subscribe("u")
    unversioned.answer(running("u", version=None))  # no version: a watch cannot report its change
    assert unversioned.watch_list(limit=100) == {}
    check = unversioned.add("u", now=0.0, delay=1.0, hold=True)
    assert unversioned.take_due(2.0, watch_ok=True, next_watch_by=0.0) == [check]


def test_the_watch_lists_at_most_its_limit_and_the_rest_is_polled() -> None:
    schedule = CheckSchedule()
    for job_id in ("a", "b", "c"):
        schedule.subscribe(job_id)
        schedule.answer(running(job_id))
    assert len(schedule.watch_list(limit=2)) == 2
    assert sum(entry.covered for entry in schedule.jobs.values()) == 2
