"""Optuna storage for the k, n search: where a study lives (journal file or SQLAlchemy URL), the
file lock that survives a killed holder, and failing + re-queueing the trials of dead workers.

Usage: ``study_storage = open_storage(storage_spec(None, Path("tune/optuna.journal")))``;
``fail_stale_trials(study)`` when a study is (re)opened; ``with keep_alive(trial, enabled): ...``

The design (why a journal, why flock, how dead workers are detected) is in batchout.tuning's docstring.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.study import Study
from optuna.trial import FrozenTrial, Trial, TrialState

from batchout.errors import BatchoutError
from batchout.io import process_dead

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "heartbeat_unix_s"
WORKER_KEY = "worker"  # host~pid~start of the process running the trial (batchout.io.process_token)
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120  # 4 missed heartbeats: a trial that long silent belongs to a dead worker
SCHEMA_RETRIES = 3  # two workers creating the tables of a fresh database at once: one retries
MAX_RETRY = 2  # a trial whose worker died is re-queued (same k, n) at most this many times


# ---------------------------------------------------------------- storage
def _is_url(spec: str) -> bool:
    return "://" in spec


def storage_spec(url: str | None, default_journal: Path) -> str:
    """What every worker reopens: an SQLAlchemy URL as given, else an absolute journal file path."""
    if url and _is_url(url):
        return url
    return str(Path(url or default_journal).resolve())


def _safe(url: str) -> str:
    """The URL with its password masked, for error messages."""
    head, sep, tail = url.partition("://")
    creds, at, host = tail.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{head}{sep}{creds.split(':', 1)[0]}:***@{host}"


class FlockLock:
    """Journal lock held with ``flock`` on ``<journal>.flock``: released by the kernel when its
    holder dies, so a worker killed mid-write never blocks the next one. One descriptor per
    thread (the heartbeat thread writes too), and flock locks conflict across descriptors."""

    def __init__(self, journal: str) -> None:
        self._path = f"{journal}.flock"
        self._local = threading.local()

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._local.fd = fd
        return True

    def release(self) -> None:
        fd = self._local.fd
        self._local.fd = None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _trim_torn_tail(journal: str, lock: FlockLock) -> None:
    """Cut a last line left without its newline by a writer killed mid-append: the next append
    would glue onto it and corrupt the journal for every reader."""
    path = Path(journal)
    if not path.is_file() or path.stat().st_size == 0:
        return
    lock.acquire()
    try:
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        log.warning("journal %s: dropping a torn last record (%d bytes)", journal, len(data) - keep)
        with open(path, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
    finally:
        lock.release()


def open_storage(spec: str) -> BaseStorage:
    """A journal file storage for a path, an ``RDBStorage`` with heartbeats for a URL."""
    if not _is_url(spec):
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
        lock = FlockLock(spec)
        _trim_torn_tail(spec, lock)
        return JournalStorage(JournalFileBackend(spec, lock_obj=lock))  # type: ignore[arg-type]
    for attempt in range(SCHEMA_RETRIES + 1):
        try:
            return _rdb_storage(spec)
        except Exception as err:  # a fresh database: another machine's worker is creating the tables
            if attempt == SCHEMA_RETRIES or "already exists" not in str(err):
                _storage_error(spec, err)
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _rdb_storage(spec: str) -> RDBStorage:
    return RDBStorage(
        spec, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S,
        # Optuna 5 name of the retry hook (``failed_trial_callback`` is deprecated since 4.9).
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        engine_kwargs=None if spec.startswith("sqlite") else {"pool_pre_ping": True},
    )


def _storage_error(spec: str, err: Exception) -> None:
    """SQLAlchemy: unknown dialect, missing driver, unreachable server: one line, password masked."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    raise BatchoutError(
        f"tune.storage: cannot open {_safe(spec)!r} ({first}); allowed: a journal file path or an "
        "SQLAlchemy URL such as postgresql+psycopg://user:password@host/db"
    ) from None


def has_heartbeat(study: Study) -> bool:
    # Optuna offers no public accessor; RDB storages come wrapped in a cache that forwards this call.
    interval = getattr(study._storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


# ---------------------------------------------------------------- dead workers
def _last_alive(trial: FrozenTrial) -> float:
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(start, float(trial.user_attrs.get(HEARTBEAT_KEY, 0.0)))


def _fail_and_requeue(study: Study, trial: FrozenTrial, why: str) -> bool:
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, RuntimeError):  # its worker finished it meanwhile: not stale after all
        return False
    RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, study.get_trials(deepcopy=True)[trial.number])
    log.warning("trial %d: %s; marked FAIL and re-queued", trial.number, why)
    return True


def fail_stale_trials(study: Study, grace_s: float = GRACE_PERIOD_S, now: float | None = None) -> list[int]:
    """Fail RUNNING trials whose worker on this host is dead, or (any host) silent for ``grace_s``
    seconds, and re-queue their k, n; return their numbers. For heartbeat storages (RDB) Optuna
    applies the silence rule itself; we only trigger it now."""
    running = study.get_trials(deepcopy=True, states=(TrialState.RUNNING,))
    failed = [t.number for t in running if process_dead(t.user_attrs.get(WORKER_KEY, ""))
              and _fail_and_requeue(study, t, f"its worker {t.user_attrs[WORKER_KEY]} is gone")]
    running = [t for t in running if t.number not in failed]
    if has_heartbeat(study):
        optuna.storages.fail_stale_trials(study)
        now_failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        return sorted(failed + [t.number for t in running if t.number in now_failed])
    now = time.time() if now is None else now
    for trial in running:
        silent = now - _last_alive(trial)
        if silent >= grace_s and _fail_and_requeue(study, trial, f"no heartbeat for {silent:.0f} s"):
            failed.append(trial.number)
    return sorted(failed)


@contextmanager
def keep_alive(trial: Trial, enabled: bool, interval_s: float = HEARTBEAT_INTERVAL_S) -> Iterator[None]:
    """Refresh the trial's heartbeat attribute every ``interval_s`` seconds while the body runs."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            trial.set_user_attr(HEARTBEAT_KEY, time.time())
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()  # before Optuna finishes the trial: a late write would hit a finished trial
