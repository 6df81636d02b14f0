"""The platform protocols' shared helpers: a statement SQLite refused for a lock is tried again."""

from __future__ import annotations

import asyncio

import pytest

from relay import services
from relay.services import unlocked

LOCKED = "D1_ERROR: database is locked: SQLITE_BUSY"


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(services, "BUSY_PAUSES", (0, 0, 0))


class Write:
    def __init__(self, *failures):
        self.failures, self.tries = list(failures), 0

    async def __call__(self):
        self.tries += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_a_statement_refused_for_a_lock_is_tried_again_until_it_runs():
    write = Write(RuntimeError(LOCKED), RuntimeError(LOCKED))
    assert asyncio.run(unlocked(write)) == "done"
    assert write.tries == 3


def test_a_statement_still_locked_after_every_pause_raises_the_lock():
    write = Write(*[RuntimeError(LOCKED)] * 4)
    with pytest.raises(RuntimeError, match="SQLITE_BUSY"):
        asyncio.run(unlocked(write))
    assert write.tries == 4


def test_any_other_failure_is_raised_at_once():
    write = Write(RuntimeError("D1_ERROR: UNIQUE constraint failed: relay_keys.id"))
    with pytest.raises(RuntimeError, match="UNIQUE"):
        asyncio.run(unlocked(write))
    assert write.tries == 1
