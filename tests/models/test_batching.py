"""The micro-batcher: concurrent calls meet in one batch, errors reach only their callers, nothing hangs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from medslm.errors import ConfigurationError, ModelError
from medslm.models.batching import MicroBatcher, note_in_flight, notes_in_flight


class Boom(BaseException):
    """An interrupt raised inside a batch (a BaseException, like KeyboardInterrupt)."""


def call_together(batcher: MicroBatcher[Any, Any], requests: list[Any], *, hold: threading.Event | None = None,
                  group: Callable[[Any], Any] = lambda r: None) -> list[Any]:
    """Each request from its own thread, all declared in flight; each thread's result or exception."""
    out: list[Any] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def worker(i: int) -> None:
        with note_in_flight():
            start.wait()
            try:
                out[i] = batcher(requests[i], group(requests[i]))
            except BaseException as exc:  # the test reads it
                out[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    if hold is not None:
        hold.set()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "a caller is still waiting: the batcher hung"
    return out


def doubler(seen: list[list[int]]) -> Callable[[list[int]], list[int]]:
    def run(xs: list[int]) -> list[int]:
        seen.append(list(xs))
        return [2 * x for x in xs]

    return run


def test_concurrent_calls_share_a_batch_and_each_gets_its_own_row() -> None:
    seen: list[list[int]] = []
    b = MicroBatcher(doubler(seen), max_wait_s=0.02)
    out = call_together(b, list(range(8)))
    assert out == [2 * i for i in range(8)]
    assert sorted(x for batch in seen for x in batch) == list(range(8))  # each row run exactly once
    assert b.stats.largest > 1 and b.stats.batches < 8
    assert notes_in_flight() == 0


def test_a_caller_alone_runs_at_once_in_a_batch_of_one() -> None:
    seen: list[list[int]] = []
    b = MicroBatcher(doubler(seen), max_wait_s=0.02)
    assert [b(i) for i in range(3)] == [0, 2, 4]
    assert seen == [[0], [1], [2]]


def test_groups_never_share_a_batch() -> None:
    seen: list[list[int]] = []
    b = MicroBatcher(doubler(seen), max_wait_s=0.02)
    out = call_together(b, list(range(8)), group=lambda r: r % 2)
    assert out == [2 * i for i in range(8)]
    assert all(len({x % 2 for x in batch}) == 1 for batch in seen)


def test_an_error_reaches_only_the_callers_whose_rows_failed() -> None:
    def run(xs: list[int]) -> list[int]:
        if 3 in xs:
            raise ValueError("row 3 is bad")
        return [x + 100 for x in xs]

    b = MicroBatcher(run, max_wait_s=0.02)
    out = call_together(b, list(range(6)))
    assert isinstance(out[3], ValueError)
    assert [out[i] for i in (0, 1, 2, 4, 5)] == [100, 101, 102, 104, 105]


def test_a_batch_may_fail_single_rows_by_returning_exceptions() -> None:
    b = MicroBatcher(lambda xs: [ModelError("odd") if x % 2 else x for x in xs], max_wait_s=0.02)
    out = call_together(b, list(range(6)))
    assert [isinstance(o, ModelError) for o in out] == [False, True] * 3
    assert b.stats.isolated == 0  # no re-run needed


def test_a_wrong_number_of_results_is_an_error_not_a_misplaced_row() -> None:
    b = MicroBatcher(lambda xs: [0], max_wait_s=0.0)
    call_together(b, [1])  # a batch of one gets its one result
    out = call_together(b, [1, 2, 3])
    assert out == [0, 0, 0]  # a batch that miscounts is run again row by row: no row gets another's result


def test_an_interrupted_leader_frees_its_followers_and_the_batcher_goes_on() -> None:
    calls = {"n": 0}

    def run(xs: list[int]) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Boom()
        return xs

    b = MicroBatcher(run, max_wait_s=0.02)
    out = call_together(b, list(range(4)))
    kinds = {type(o) for o in out}
    assert Boom in kinds  # the leader got its interrupt
    assert all(isinstance(o, Boom | ModelError | int) for o in out)
    assert all(o == i for i, o in enumerate(out) if isinstance(o, int))
    # nothing left pending or led: the next calls run
    assert call_together(b, [7, 8, 9]) == [7, 8, 9]


def test_a_caller_that_dies_while_waiting_leaves_no_row_behind() -> None:
    release = threading.Event()
    started = threading.Event()

    def run(xs: list[int]) -> list[int]:
        started.set()
        release.wait(10)
        return xs

    b = MicroBatcher(run, max_wait_s=0.0)
    first = threading.Thread(target=lambda: b(1))
    first.start()
    started.wait(10)  # a batch is under way; the next caller queues behind it and is interrupted

    def dies() -> None:
        import ctypes

        threading.Timer(0.1, lambda: ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(victim.ident), ctypes.py_object(Boom))).start()
        try:
            b(2)
        except Boom:
            died.set()

    died = threading.Event()
    victim = threading.Thread(target=dies)
    victim.start()
    victim.join(10)
    release.set()
    first.join(10)
    assert died.is_set() and not victim.is_alive() and not first.is_alive()
    assert b._pending == [] and not b._leading
    assert b(3) == 3


def test_the_wait_is_bounded() -> None:
    with pytest.raises(ConfigurationError, match="max_wait_s"):
        MicroBatcher(lambda xs: xs, max_wait_s=0.5)
    with pytest.raises(ConfigurationError, match="max_batch"):
        MicroBatcher(lambda xs: xs, max_batch=0)
