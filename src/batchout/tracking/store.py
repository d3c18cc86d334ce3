"""The MLflow store: where it is, creating a local one safely, and retrying writes while SQLite is locked.

Usage: ``configure(root)`` once per process; ``client()``; ``retry(lambda: client().create_run(...))``

Store: ``sqlite:///<repo>/mlruns/mlflow.db`` with artifacts in ``<repo>/mlruns/artifacts``, unless the
``MLFLOW_TRACKING_URI`` environment variable names another store (e.g. ``http://host:5000``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import mlflow

from batchout.errors import BatchoutError
from batchout.paths import sqlite_db
from batchout.tracking.meta import probe_http, tracking_uri

T = TypeVar("T")

_HEALTH_TIMEOUT_S = 5.0
_LOCK_RETRIES = 10  # with 0.05 s doubling backoff capped at 2 s: ~10 s of waiting on a locked db
PICKLE_WARNING = "Saving pytorch model by Pickle"


def _check_server(uri: str) -> None:
    why = probe_http(uri.rstrip("/") + "/health", _HEALTH_TIMEOUT_S)
    if why:
        raise BatchoutError(
            f"MLflow tracking server {uri} is unreachable: {why}; start it or unset MLFLOW_TRACKING_URI"
        )


class _DropPickleWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # we chose pickle on purpose (see log_model)
        return not record.getMessage().startswith(PICKLE_WARNING)


def _quiet_logging() -> None:
    # First use of a SQLite db runs ~100 alembic migrations that log at INFO.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)
    pt_logger = logging.getLogger("mlflow.pytorch")
    if not any(isinstance(f, _DropPickleWarning) for f in pt_logger.filters):
        pt_logger.addFilter(_DropPickleWarning())


def _init_sqlite(uri: str, db: Path) -> None:
    """Create the tables under a file lock, so two fresh workers do not both run the migrations;
    an existing database is only opened, in parallel (the lock then waits only for a creator)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    (db.parent / "artifacts").mkdir(exist_ok=True)

    def touch() -> None:  # the first query makes MLflow create or check the schema
        retry(lambda: mlflow.MlflowClient(uri).search_experiments(max_results=1))

    with open(db.parent / f".{db.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fresh = not db.exists() or db.stat().st_size == 0
            if fresh:
                touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if not fresh:
        touch()


def _set_uri_keeping_env(uri: str) -> None:
    """``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI; undo that, or the env var (which we
    read as the user's choice) would pin every later ``configure(other_root)`` to the first store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def configure(root: Path | None = None) -> str:
    """Point MLflow at the store (env var wins), create it if local, fail fast on a dead server."""
    uri = tracking_uri(root)
    if uri.startswith("file:") or "://" not in uri:
        raise BatchoutError(
            f"MLFLOW_TRACKING_URI={uri}: file stores are not supported; use sqlite:///<abs path>.db or http(s)://"
        )
    _quiet_logging()
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    _set_uri_keeping_env(uri)
    db = sqlite_db(uri)
    if db is not None:
        _init_sqlite(uri, db)
    return uri


def client() -> mlflow.MlflowClient:
    if not mlflow.is_tracking_uri_set():
        configure()
    return mlflow.MlflowClient(mlflow.get_tracking_uri())



def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def retry(fn: Callable[[], T]) -> T:
    """Call ``fn``, retrying with backoff while SQLite says the database is locked (parallel workers)."""
    for attempt in range(_LOCK_RETRIES - 1):
        try:
            return fn()
        except Exception as err:  # sqlite3 / SQLAlchemy / MlflowException all carry the same text
            if "locked" not in str(err).lower():
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (1 + random.random()))  # jitter: workers desync
    return fn()

