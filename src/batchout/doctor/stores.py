"""Doctor checks of the stores a run writes to: the MLflow tracking store, the Optuna storage, free disk.

Usage: ``check_tracking(Path("."), os.environ); check_optuna(root, "sqlite:///x.db"); check_disk(root)``
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from batchout.doctor.result import FAIL, OK, WARN, Check, rel_path, writable
from batchout.paths import SQLITE_PREFIX, Paths, sqlite_db
from batchout.tracking.meta import probe_http

PROBE_TIMEOUT_S = 3.0  # a dead server or database costs at most this long per probe
GIB = 2**30
DISK_WARN_BYTES, DISK_FAIL_BYTES = 5 * GIB, 1 * GIB
DISK_NEEDS = ("the quick profile uses about 0.5 GiB (raw + prepared data, models, DVC cache, MLflow); "
              "the paper profile several GiB (full data sets, every model kept 3x: models/, DVC cache, MLflow)")
_DBAPI_PIP = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient"}
_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


def _sqlite_problem(db: Path) -> str | None:
    """Why a SQLite database file cannot serve as a store (None: fine, or creatable); opened read-only."""
    if not db.exists():
        return None if writable(db.parent) else f"{db.parent} is not writable, so {db.name} cannot be created"
    if not os.access(db, os.W_OK) or not os.access(db.parent, os.W_OK):  # SQLite writes a journal beside it
        return f"{db} or its folder is not writable"
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=PROBE_TIMEOUT_S)) as con:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        return f"{db} is not a usable SQLite database ({err})"
    return None


def check_tracking(root: Path, env: Mapping[str, str]) -> Check:
    """The MLflow store ``batchout.tracking.meta.tracking_uri`` picks: MLFLOW_TRACKING_URI, else mlruns/mlflow.db."""
    uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    uri = uri or SQLITE_PREFIX + Paths(root.resolve()).mlflow_db.as_posix()
    if uri.startswith(("http://", "https://")):
        why = probe_http(uri.rstrip("/") + "/health", PROBE_TIMEOUT_S)
        if why:
            return Check("mlflow store", FAIL, f"{uri} unreachable within {PROBE_TIMEOUT_S:.0f} s: {why}",
                         "start the server or unset MLFLOW_TRACKING_URI")
        return Check("mlflow store", OK, f"{uri} (server answers /health)")
    if (db := sqlite_db(uri)) is not None:
        why = _sqlite_problem(db)
        if why:
            return Check("mlflow store", FAIL, why, "make mlruns/ writable, or set MLFLOW_TRACKING_URI to "
                                                  "sqlite:////<writable path>/mlflow.db")
        return Check("mlflow store", OK, uri)
    if uri.startswith("file:") or "://" not in uri:
        return Check("mlflow store", FAIL, f"MLFLOW_TRACKING_URI={uri}: file stores are not supported",
                     "use sqlite:///<abs path>.db or http(s)://host:port, or unset MLFLOW_TRACKING_URI")
    return Check("mlflow store", WARN, f"{uri}: not probed (only sqlite and http(s) are)", "")


def _rdb_storage(url: str) -> Check:
    """An SQLAlchemy URL: the server port answers (TCP, short timeout), then the DB driver imports."""
    import socket

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        return Check("optuna storage", FAIL, f"tune.storage: {err}", "use an SQLAlchemy URL or a journal file path")
    shown = parsed.render_as_string(hide_password=True)
    port = parsed.port or _DB_PORTS.get(parsed.get_backend_name())
    if parsed.host and port:
        try:
            socket.create_connection((parsed.host, port), timeout=PROBE_TIMEOUT_S).close()
        except OSError as err:
            return Check("optuna storage", FAIL, f"{shown}: {parsed.host}:{port} unreachable ({err})",
                         "start the database, or set tune.storage: null (a local journal file)")
    try:
        dialect.import_dbapi()
    except ImportError as err:
        module = (err.name or "").split(".")[0]
        return Check("optuna storage", FAIL, f"{shown}: driver {module or err} not installed",
                     f"pip install {_DBAPI_PIP.get(module, module)}")
    return Check("optuna storage", OK, f"{shown} (server port answers, driver installed)")


def check_optuna(root: Path, storage: str | None) -> Check:
    """tune.storage: a journal file (default tune/optuna.journal) must be creatable; an RDB URL reachable."""
    if storage and (db := sqlite_db(storage)) is not None:
        why = _sqlite_problem(db)
        return Check("optuna storage", FAIL, why, "fix tune.storage") if why else Check("optuna storage", OK, storage)
    if storage and "://" in storage:
        return _rdb_storage(storage)
    path = Path(storage) if storage else Paths(root).tune_journal
    if not writable(path):
        return Check("optuna storage", FAIL, f"journal {path} cannot be written", "make tune/ writable or set "
                     "tune.storage to a writable journal path")
    return Check("optuna storage", OK, f"journal file {rel_path(path, root)}")


def check_disk(root: Path) -> Check:
    where = next(p for p in (root, *root.resolve().parents) if p.exists())
    free = shutil.disk_usage(where).free
    found = f"{free / GIB:.1f} GiB free at {where}"
    if free < DISK_FAIL_BYTES:
        return Check("disk", FAIL, f"{found} (< {DISK_FAIL_BYTES // GIB} GiB)", f"free space: {DISK_NEEDS}")
    if free < DISK_WARN_BYTES:
        return Check("disk", WARN, f"{found} (< {DISK_WARN_BYTES // GIB} GiB)", f"enough for quick only: {DISK_NEEDS}")
    return Check("disk", OK, found)
