"""Cross-call micro-batching: concurrent calls to one local model meet in one padded batch.

The batch runner keeps N notes in flight in threads (``review_batch(..., concurrency=N)``). Each note's
agents call their models one request at a time, as they would alone; the backends (the transformers
causal LM, the encoder specialists) hand each request to a :class:`MicroBatcher`, which gathers the
requests that arrive together into one call of a batch function:

- **leader / followers**: the first caller with no batch under way becomes the *leader*; it waits a
  bounded time (``max_wait_s``, at most 20 ms) for the notes in flight that are free to call this model
  too, then takes the compute slot, takes every pending request of one kind (up to ``max_batch``) and
  runs them as one batch. The other callers (*followers*) wait for their own rows. A follower whose row
  is still pending when the batch ends leads the next one.
- **errors go to the rows that failed**: when a batch raises, each of its requests is run again alone,
  so a bad request fails only its own caller; a ``BaseException`` (an interrupt) reaches the leader, and
  its followers get a :class:`~medslm.errors.ModelError` saying that the batch was interrupted.
- **no deadlock when a caller dies**: a leader that is interrupted while it gathers or computes hands
  back the lead (and delivers an error to the rows it had taken) in a ``finally``; followers re-check
  every ``_POLL_S`` that a leader exists, so any surviving caller takes over; a caller interrupted while
  waiting withdraws its row if it was not taken yet.
- **one compute slot per device**: batch functions of every model on a device run one at a time (two
  forward passes at once only fight over two cores and their OpenMP threads). A leader takes its rows
  only once it holds the slot, so the rows that arrive while another model computes join its batch.

How long a leader waits: only while the notes in flight that are *not* blocked in another batcher
outnumber the rows it holds (the runner declares its notes with :func:`note_in_flight`). A caller
outside the runner (a notebook, one note at a time) never waits: its call runs at once, alone, exactly
as without batching.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from medslm.errors import ConfigurationError, ModelError

Req = TypeVar("Req")
Res = TypeVar("Res")

#: The longest a leader may wait for more rows (the bounded wait).
MAX_WAIT_LIMIT_S = 0.020
#: How often a waiting follower checks that its batch still has a leader.
_POLL_S = 0.05

# One condition for every batcher in the process: the wait of a leader depends on what callers do in
# other batchers (a note blocked on the encoder cannot call the language model at the same time).
_COND = threading.Condition(threading.Lock())
_IN_FLIGHT = 0  # notes the runner has in flight
_BLOCKED = 0  # callers waiting in any batcher (pending or being computed)
_SLOTS: dict[str, threading.Lock] = {}
_ALL: weakref.WeakSet[MicroBatcher[Any, Any]] = weakref.WeakSet()


@contextlib.contextmanager
def note_in_flight() -> Iterator[None]:
    """Declare one note in flight while the block runs (what a leader waits for; see the module doc)."""
    global _IN_FLIGHT
    with _COND:
        _IN_FLIGHT += 1
        _COND.notify_all()
    try:
        yield
    finally:
        with _COND:
            _IN_FLIGHT -= 1
            _COND.notify_all()


def notes_in_flight() -> int:
    """How many notes runners have declared in flight in this process now."""
    return _IN_FLIGHT


def compute_slot(device: str) -> threading.Lock:
    """The lock that batch functions on ``device`` (``cpu``, ``cuda``, ``cuda:1``) hold while they run."""
    key = device.split(":")[0] if device.startswith("cpu") else device
    with _COND:
        return _SLOTS.setdefault(key, threading.Lock())


@dataclass(eq=False)
class _Row(Generic[Req, Res]):
    request: Req
    group: Hashable
    result: Res | None = None
    error: BaseException | None = None
    done: bool = False
    taken: bool = False


@dataclass
class BatchStats:
    """What a batcher did (for benches and tests): batches run, rows, the largest batch, rows run alone
    again after a failed batch."""

    batches: int = 0
    rows: int = 0
    largest: int = 0
    isolated: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean_size(self) -> float:
        return self.rows / self.batches if self.batches else 0.0


class MicroBatcher(Generic[Req, Res]):
    """Gathers concurrent calls into batches of ``run(requests) -> results`` (one result per request).

    ``group``: only requests of the same group share a batch (e.g. the same constraint and token budget);
    batches take the group of the oldest pending request first. ``run`` may return an exception in place
    of a result to fail that row alone. ``device``: whose compute slot the batch holds.
    """

    def __init__(self, run: Callable[[list[Req]], Sequence[Res | BaseException]], *, name: str = "batch",
                 device: str = "cpu", max_batch: int = 32, max_wait_s: float = 0.010) -> None:
        if not 0 <= max_wait_s <= MAX_WAIT_LIMIT_S:
            raise ConfigurationError(f"max_wait_s={max_wait_s} is outside [0, {MAX_WAIT_LIMIT_S}]; a longer wait "
                                     "delays every note in flight: use 0.005-0.02")
        if max_batch < 1:
            raise ConfigurationError(f"max_batch={max_batch}; use 1 (no batching) or more")
        self._run = run
        self.name = name
        self.device = device
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[_Row[Req, Res]] = []
        self._leading = False
        self.stats = BatchStats()
        _ALL.add(self)

    # ---------------------------------------------------------------------------------- callers
    def __call__(self, request: Req, group: Hashable = None) -> Res:
        """Run ``request`` in the next batch of its group; returns its result or raises its error."""
        global _BLOCKED
        row: _Row[Req, Res] = _Row(request, group)
        with _COND:
            self._pending.append(row)
            _BLOCKED += 1
            _COND.notify_all()
        try:
            while True:
                with _COND:
                    while not row.done and self._leading:
                        _COND.wait(_POLL_S)
                    if row.done:
                        break
                    self._leading = True  # no batch under way and this row still pending: lead one
                try:
                    self._lead()
                finally:
                    with _COND:
                        self._leading = False
                        _COND.notify_all()
        finally:
            with _COND:
                _BLOCKED -= 1
                if not row.taken and row in self._pending:  # interrupted before its row was taken
                    self._pending.remove(row)
                _COND.notify_all()
        if row.error is not None:
            raise row.error
        return row.result  # type: ignore[return-value]

    # ---------------------------------------------------------------------------------- the leader
    def _target(self) -> int:
        """Rows worth waiting for: notes in flight not blocked in another batcher (at least 1)."""
        here = sum(1 for r in self._pending if not r.taken)
        free_elsewhere = _IN_FLIGHT - (_BLOCKED - here)
        return max(1, min(self.max_batch, free_elsewhere))

    def _lead(self) -> None:
        deadline = time.perf_counter() + self.max_wait_s
        with _COND:
            while len(self._pending) < self._target():
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                _COND.wait(left)
        with compute_slot(self.device):
            with _COND:
                if not self._pending:
                    return
                group = self._pending[0].group
                rows = [r for r in self._pending if r.group == group][: self.max_batch]
                for r in rows:
                    r.taken = True
                    self._pending.remove(r)
            try:
                self._compute(rows)
            finally:
                with _COND:
                    for r in rows:
                        if not r.done:  # the leader was interrupted mid-batch
                            r.error = ModelError(f"{self.name}: the batch holding this request was interrupted "
                                                 "before it finished; retry the note")
                            r.done = True
                    _COND.notify_all()

    def _compute(self, rows: list[_Row[Req, Res]]) -> None:
        try:
            results = list(self._run([r.request for r in rows]))
            if len(results) != len(rows):
                raise ModelError(f"{self.name}: a batch of {len(rows)} requests returned {len(results)} results")
        except Exception as exc:  # delivered to the callers, row by row
            if len(rows) == 1:
                results = [exc]
            else:  # find the rows that fail: each alone
                results = []
                for r in rows:
                    try:
                        results.extend(list(self._run([r.request]))[:1])
                    except Exception as one:
                        results.append(one)
                with _COND:
                    self.stats.isolated += len(rows)
        with _COND:
            for r, res in zip(rows, results, strict=True):
                if isinstance(res, BaseException):
                    r.error = res
                else:
                    r.result = res
                r.done = True
            n = len(rows)
            self.stats.batches += 1
            self.stats.rows += n
            self.stats.largest = max(self.stats.largest, n)
            self.stats.sizes[n] = self.stats.sizes.get(n, 0) + 1
            _COND.notify_all()


def all_batch_stats() -> dict[str, BatchStats]:
    """The :class:`BatchStats` of every live batcher in the process, by name (summed over same names)."""
    out: dict[str, BatchStats] = {}
    for b in list(_ALL):
        st = out.setdefault(b.name, BatchStats())
        st.batches += b.stats.batches
        st.rows += b.stats.rows
        st.largest = max(st.largest, b.stats.largest)
        st.isolated += b.stats.isolated
        for k, v in b.stats.sizes.items():
            st.sizes[k] = st.sizes.get(k, 0) + v
    return out


def batch_stats(obj: Any) -> dict[str, BatchStats]:
    """The :class:`BatchStats` of every batcher a model object holds (``{name: stats}``)."""
    found = getattr(obj, "_batchers", None) or {}
    return {name: b.stats for name, b in found.items()}


__all__ = ["MAX_WAIT_LIMIT_S", "BatchStats", "MicroBatcher", "all_batch_stats", "batch_stats", "compute_slot", "note_in_flight",
           "notes_in_flight"]
