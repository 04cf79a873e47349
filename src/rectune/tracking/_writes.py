"""Writes behind the caller: one background thread does a tracker's MLflow writes.

A tuning study fits its next model while the writer thread logs the last one. Runs
asked for behind the caller are :class:`PendingRun` objects until the writer has made
them; writes queued for one wait for it, and are skipped if making it failed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rectune.urls import redact_text

# The name the module had before tracking became a package: logging set up for it
# (the scripts configure "rectune") still sees the same logger.
log = logging.getLogger("rectune.tracking")


class PendingRun:
    """A run :meth:`Tracker.start_run_behind` asked for; the writer thread makes it.

    Pass it wherever a run id goes; writes queued for it wait for it to exist.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self._settled = threading.Event()

    def settle(self, run_id: str | None) -> None:
        self.run_id = run_id
        self._settled.set()

    def wait(self) -> str | None:
        """The run's id once it exists and its ``then`` hook ran (``None`` if creating
        it failed: the failure is in :attr:`Tracker.write_errors`)."""
        self._settled.wait()
        return self.run_id


#: A run, by id or pending.
RunRef = str | PendingRun


def run_id_of(run: RunRef) -> str | None:
    """The id of a run given by id or pending (``None`` while pending or if it failed)."""
    return run.run_id if isinstance(run, PendingRun) else run


class _WriteQueue:
    """Writes for one background thread: urgent ones (run creations) go first."""

    def __init__(self) -> None:
        self._urgent: collections.deque[Callable[[], Any]] = collections.deque()
        self._rest: collections.deque[Callable[[], Any]] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False

    def put(self, write: Callable[[], Any], *, urgent: bool = False) -> None:
        with self._ready:
            (self._urgent if urgent else self._rest).append(write)
            self._ready.notify()

    def close(self) -> None:
        """Let the writer finish what is queued, then stop."""
        with self._ready:
            self._closing = True
            self._ready.notify()

    def get(self) -> Callable[[], Any] | None:
        """The next write; ``None`` once closing and empty."""
        with self._ready:
            self._ready.wait_for(lambda: self._closing or self._urgent or self._rest)
            if self._urgent or self._rest:
                return (self._urgent or self._rest).popleft()
            return None


class WriteBehind:
    """The write-behind part of :class:`rectune.tracking.Tracker`.

    Attributes
    ----------
    write_errors : list of str
        The redacted errors of queued writes that failed, in order.
    """

    def __init__(self) -> None:
        #: Writes queued by :meth:`write_behind`, and the errors of those that failed.
        self._writes: _WriteQueue | None = None
        self.write_errors: list[str] = []

    @contextlib.contextmanager
    def write_behind(self) -> Iterator[None]:
        """Within the block, :meth:`start_run_behind`, :meth:`log`, :meth:`set_tags` and
        :meth:`end_run` are queued and done by one background thread (run creations
        first, the rest in order), so the caller goes on (a tuning study fits its next
        model) while MLflow writes. The block ends when every queued write is done. A
        write that fails is logged as a warning and kept in :attr:`write_errors`; it does
        not stop the caller.
        """
        if self._writes is not None:  # already writing behind
            yield
            return
        writes = _WriteQueue()

        def drain() -> None:
            while (write := writes.get()) is not None:
                self._attempt(write)

        writer = threading.Thread(target=drain, name="mlflow-writer", daemon=True)
        writer.start()
        self._writes = writes
        try:
            yield
        finally:
            self._writes = None
            writes.close()
            writer.join()

    def _attempt(self, write: Callable[[], Any]) -> None:
        """Do a queued write; a failure becomes a warning (the study goes on)."""
        try:
            write()
        except Exception as err:
            message = redact_text(f"{type(err).__name__}: {str(err).splitlines()[0]}")
            self.write_errors.append(message)
            log.warning("an MLflow write failed: %s", message)

    def _write(self, call: Callable[..., Any], run: RunRef, **kwargs: Any) -> None:
        """``call(run_id, **kwargs)``, now or queued; skipped for a run whose creation
        failed (that failure was reported once)."""

        def write() -> None:
            run_id = run_id_of(run)
            if run_id is not None:
                call(run_id, **kwargs)

        if self._writes is None:
            write()
        else:
            self._writes.put(write)

    def _write_first(self, create: Callable[[], Any]) -> None:
        """``create()`` now, or queued before every other write (a run's creation: the
        writes queued for it wait for it). Queued, a failure is one of
        :attr:`write_errors`; done now, it propagates."""
        if self._writes is None:
            create()
        else:
            self._writes.put(lambda: self._attempt(create), urgent=True)
