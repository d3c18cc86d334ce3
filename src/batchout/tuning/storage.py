"""Where a study lives (a journal file, or an SQLAlchemy URL for many machines: docs/recipes.md) and
what becomes of the trials of dead workers.

Usage: ``storage = open_storage(storage_spec(None, Path("tune/optuna.journal")))``; ``fail_stale_trials(study)``
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.study import Study
from optuna.trial import Trial, TrialState

from batchout.errors import BatchoutError
from batchout.io import process_dead, process_token

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats etc., on purpose
log = logging.getLogger(__name__)

HEARTBEAT_KEY = "heartbeat_unix_s"  # journal trials: user attr refreshed while the trial runs (unix s)
WORKER_KEY = "worker"  # host~pid~start of the process running the trial (batchout.io.process_token)
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120  # 4 missed heartbeats: a trial silent that long belongs to a dead worker
SCHEMA_RETRIES = 3
# Optuna's re-queue of a dead worker's trial (same k, n), at most twice: a k, n that kills its worker
# every time (out of memory, say) would otherwise be retried forever.
RETRY = RetryHeartbeatStaleTrialCallback(max_retry=2)
OPENED: weakref.WeakKeyDictionary[Study, BaseStorage] = weakref.WeakKeyDictionary()  # Optuna's own ref is private


def storage_spec(url: str | None, default_journal: Path) -> str:
    """What every worker reopens: an SQLAlchemy URL as given, else an absolute journal file path."""
    return url if url and "://" in url else str(Path(url or default_journal).resolve())


class FlockLock:
    """Journal lock: Optuna's default symlink lock, left behind by a writer killed while holding it,
    stalls every later writer for 30 s; the kernel drops a ``flock`` when its holder dies. One fd per
    thread: flock does not exclude two users of one fd (the heartbeat thread writes too)."""

    def __init__(self, journal: str) -> None:
        self._path, self._local = f"{journal}.flock", threading.local()

    def acquire(self) -> bool:
        self._local.fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._local.fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        fcntl.flock(self._local.fd, fcntl.LOCK_UN)
        os.close(self._local.fd)


def open_storage(spec: str) -> BaseStorage:
    """A journal file storage for a path (SQLite would fail with "database is locked" under concurrent
    workers), an ``RDBStorage`` with Optuna's heartbeat for a URL."""
    if "://" not in spec:
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
        lock = FlockLock(spec)
        lock.acquire()
        try:  # a writer killed mid-append leaves a torn last line; appended to, it breaks every reader
            data = Path(spec).read_bytes() if Path(spec).is_file() else b""
            if data and not data.endswith(b"\n"):
                log.warning("journal %s: dropping a torn last record: %r", spec, data[data.rfind(b"\n") + 1 :][:60])
                os.truncate(spec, data.rfind(b"\n") + 1)
        finally:
            lock.release()
        return JournalStorage(JournalFileBackend(spec, lock_obj=lock))  # type: ignore[arg-type]
    for attempt in range(SCHEMA_RETRIES + 1):
        try:  # pool_pre_ping: a pooled connection the server has dropped (idle timeout) fails its next query
            return RDBStorage(spec, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S,
                              heartbeat_stale_trial_callback=RETRY,
                              engine_kwargs=None if spec.startswith("sqlite") else {"pool_pre_ping": True})
        except Exception as err:  # workers creating a fresh database's tables at once: the losers' CREATE
            if attempt < SCHEMA_RETRIES and "already exists" in str(err):  # fails, and a retry finds them
                time.sleep(0.5 + attempt)
                continue
            head, sep, tail = spec.partition("://")
            creds, _, host = tail.rpartition("@")
            safe = f"{head}{sep}{creds.split(':')[0]}:***@{host}" if ":" in creds else spec  # password masked
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise BatchoutError(f"tune.storage: cannot open {safe!r} ({first}); allowed: a journal file path or "
                                "an SQLAlchemy URL such as postgresql+psycopg://user:password@host/db") from None


def has_heartbeat(study: Study) -> bool:
    """RDB storages beat by themselves (Optuna's thread); a journal needs :func:`keep_alive`."""
    return isinstance(OPENED[study], RDBStorage)


def stamp_worker(study: Study, number: int) -> None:
    """Record this process as the one running trial ``number`` (read by :func:`fail_stale_trials`)."""
    storage = OPENED[study]
    study_id = storage.get_study_id_from_name(study.study_name)
    storage.set_trial_user_attr(storage.get_trial_id_from_study_id_trial_number(study_id, number), WORKER_KEY,
                                process_token())


def fail_stale_trials(study: Study, grace_s: float = GRACE_PERIOD_S, now: float | None = None) -> list[int]:
    """Fail the RUNNING trials of dead workers, re-queue their k, n, return their numbers. Dead: its
    process on this host is gone (a rerun right after a kill would otherwise count that trial as
    claimed for the grace period and end one trial short), or silent for ``grace_s`` s."""
    now = time.time() if now is None else now
    running = study.get_trials(deepcopy=True, states=(TrialState.RUNNING,))
    for t in running:
        silent = now - max(t.datetime_start.timestamp(), float(t.user_attrs.get(HEARTBEAT_KEY, 0.0)))
        if process_dead(t.user_attrs.get(WORKER_KEY, "")) or (not has_heartbeat(study) and silent >= grace_s):
            with suppress(ValueError, RuntimeError):  # raised when its worker finished it meanwhile
                study.tell(t.number, state=TrialState.FAIL)
                RETRY(study, t)
                log.warning("trial %d: worker %s dead or silent for %.0f s; failed and re-queued", t.number,
                            t.user_attrs.get(WORKER_KEY, "?"), silent)
    optuna.storages.fail_stale_trials(study)  # RDB: Optuna's heartbeat rule, now, to report them to MLflow too
    failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return [t.number for t in running if t.number in failed]


@contextmanager
def keep_alive(trial: Trial, interval_s: float = HEARTBEAT_INTERVAL_S) -> Iterator[None]:
    """Refresh the trial's heartbeat attribute every ``interval_s`` s while the body runs: Optuna 5 has no
    heartbeat for journal storages, and a worker that died where its pid cannot be checked (another host
    on a shared disk, no /proc) would leave its trial RUNNING for good."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            trial.set_user_attr(HEARTBEAT_KEY, time.time())

    trial.set_user_attr(HEARTBEAT_KEY, time.time())
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()  # before Optuna finishes the trial: a later write would hit a finished trial
