"""Pure pieces of the task semantics of issue 12: lifecycle targets, jittered caps, deadlines, keys."""

from __future__ import annotations

import pytest

from jobservice_provider.core.status import FAILURE, TERMINAL, JobStatus, WaitVerdict, verdict

Q, R, S, F, CG, CD = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLING,
    JobStatus.CANCELLED,
)
DONE, FAILED, WAITING = WaitVerdict.DONE, WaitVerdict.FAILED, WaitVerdict.WAITING


# -- 4. lifecycle targets: reached or passed (QUEUED < RUNNING < terminal), failures first -------


@pytest.mark.parametrize(
    ("targets", "failures", "expected"),
    [
        # the docs' table: target RUNNING with the default failure_statuses
        ({R}, FAILURE, {Q: WAITING, R: DONE, CG: WAITING, S: DONE, F: FAILED, CD: FAILED}),
        # target RUNNING with no failure statuses: any terminal status has passed RUNNING
        ({R}, set(), {Q: WAITING, R: DONE, CG: WAITING, S: DONE, F: DONE, CD: DONE}),
        # target QUEUED: every status has reached it; failures still first
        ({Q}, FAILURE, {Q: DONE, R: DONE, CG: DONE, S: DONE, F: FAILED, CD: FAILED}),
        # the default wait: SUCCEEDED; the other terminal statuses can never reach it
        ({S}, FAILURE, {Q: WAITING, R: WAITING, CG: WAITING, S: DONE, F: FAILED, CD: FAILED}),
        ({S}, set(), {Q: WAITING, R: WAITING, CG: WAITING, S: DONE, F: FAILED, CD: FAILED}),
        # cancel_and_wait: any terminal status
        (TERMINAL, set(), {Q: WAITING, R: WAITING, CG: WAITING, S: DONE, F: DONE, CD: DONE}),
        # a status both targeted and listed as a failure fails: failures are checked first
        ({R, F}, {F}, {Q: WAITING, R: DONE, CG: WAITING, S: DONE, F: FAILED, CD: DONE}),
    ],
    ids=["running", "running-no-failures", "queued", "succeeded", "succeeded-no-failures", "cancel", "overlap"],
)
def test_a_target_is_reached_when_the_job_is_in_it_or_has_passed_it(
    targets: set[JobStatus], failures: set[JobStatus], expected: dict[JobStatus, WaitVerdict]
) -> None:
    got = {status: verdict(status, frozenset(targets), frozenset(failures)) for status in expected}
    assert got == expected
    assert verdict(None, frozenset(targets), frozenset(failures)) is WAITING  # unknown: never a success
