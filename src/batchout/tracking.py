"""MLflow tracking: the one module that imports mlflow. Runs are driven through ``MlflowClient`` by id,
so several runs may be open at once (a tune parent and its trials) without the fluent active-run stack.

Usage: ``configure(); with start_run("mnist", "mnist-lenet-s0", tags=run_tags()) as log: log.log_epoch(1, m)``

Store: ``sqlite:///<repo>/mlruns/mlflow.db`` with artifacts in ``<repo>/mlruns/artifacts``, unless the
``MLFLOW_TRACKING_URI`` environment variable names another store (e.g. ``http://host:5000``).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from batchout.errors import BatchoutError
from batchout.runmeta import (  # noqa: F401 (re-exported: part of the tracking API)
    artifact_root,
    flatten,
    metric_key,
    repo_root,
    run_tags,
    tracking_uri,
)

T = TypeVar("T")

_HEALTH_TIMEOUT_S = 5.0
_LOCK_RETRIES = 10  # with 0.05 s doubling backoff capped at 2 s: ~10 s of waiting on a locked db
_PICKLE_WARNING = "Saving pytorch model by Pickle"
_open_runs: list[str] = []  # run ids opened by start_run in this process, innermost last


# ---------------------------------------------------------------- store location and configuration

def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def _artifact_location(uri: str) -> str | None:
    """Artifacts sit beside a SQLite database; a server decides for itself (None)."""
    db = _sqlite_path(uri)
    return (db.parent / "artifacts").resolve().as_uri() if db is not None else None


def _check_server(uri: str) -> None:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=_HEALTH_TIMEOUT_S) as resp:
            resp.read(64)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise BatchoutError(
            f"MLflow tracking server {uri} is unreachable: {reason}; start it or unset MLFLOW_TRACKING_URI"
        ) from None


class _DropPickleWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # we chose pickle on purpose (see log_model)
        return not record.getMessage().startswith(_PICKLE_WARNING)


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
        _retry(lambda: mlflow.MlflowClient(uri).search_experiments(max_results=1))

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
    db = _sqlite_path(uri)
    if db is not None:
        _init_sqlite(uri, db)
    return uri


def _client() -> mlflow.MlflowClient:
    if not mlflow.is_tracking_uri_set():
        configure()
    return mlflow.MlflowClient(mlflow.get_tracking_uri())



def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _retry(fn: Callable[[], T]) -> T:
    """Call ``fn``, retrying with backoff while SQLite says the database is locked (parallel workers)."""
    for attempt in range(_LOCK_RETRIES - 1):
        try:
            return fn()
        except Exception as err:  # sqlite3 / SQLAlchemy / MlflowException all carry the same text
            if "locked" not in str(err).lower():
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (1 + random.random()))  # jitter: workers desync
    return fn()


# ---------------------------------------------------------------- one run
class RunLogger:
    """Logs into one run by id; every write retries while the SQLite store is locked."""

    def __init__(self, client: mlflow.MlflowClient, run_id: str) -> None:
        self._client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in flatten(params).items()]
        for chunk in _chunks(flat, MAX_PARAMS_TAGS_PER_BATCH):
            _retry(lambda c=chunk: self._client.log_batch(self.run_id, params=c))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now_ms = int(time.time() * 1000)
        rows = [Metric(k, float(v), now_ms, step or 0) for k, v in metrics.items()]
        for chunk in _chunks(rows, MAX_METRICS_PER_BATCH):
            _retry(lambda c=chunk: self._client.log_batch(self.run_id, metrics=c))

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        self.log_metrics(metrics, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        rows = [RunTag(k, str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()]
        for chunk in _chunks(rows, MAX_PARAMS_TAGS_PER_BATCH):
            _retry(lambda c=chunk: self._client.log_batch(self.run_id, tags=c))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A file, or a whole directory (its contents go under ``artifact_path``)."""
        path = Path(path)
        if not path.exists():
            raise BatchoutError(f"artifact {path}: does not exist; log an existing file or folder")
        log = self._client.log_artifacts if path.is_dir() else self._client.log_artifact
        _retry(lambda: log(self.run_id, str(path), artifact_path))

    def log_text(self, text: str, artifact_file: str) -> None:
        _retry(lambda: self._client.log_text(self.run_id, text, artifact_file))

    def log_dict(self, obj: Mapping[str, Any], artifact_file: str) -> None:
        _retry(lambda: self._client.log_dict(self.run_id, dict(obj), artifact_file))

    def log_model(self, model: Any, name: str = "model", input_example: Any = None) -> str:
        """Log a CPU copy of ``model`` as a pickled ``nn.Module`` (loads back with ``.eval()``, unlike
        the default ``pt2`` exported program); ``input_example`` (a tensor) only adds a signature.
        Returns the model URI for ``load_model``."""
        import mlflow.pytorch  # imports torch: kept out of module import for stages that never log models
        import torch

        cpu = copy.deepcopy(getattr(model, "_orig_mod", model)).to("cpu").eval()  # unwrap torch.compile
        signature = None
        if input_example is not None:
            x = torch.as_tensor(input_example).to("cpu")
            with torch.no_grad():
                y = cpu(x)
            signature = mlflow.models.infer_signature(x.numpy(), y.numpy())
        run = self._client.get_run(self.run_id)
        # Created here because MLflow would file it under the fluent active (else Default) experiment.
        logged = mlflow.initialize_logged_model(name=name, source_run_id=self.run_id, params=run.data.params,
                                                experiment_id=run.info.experiment_id)
        info = mlflow.pytorch.log_model(
            cpu, name=name, serialization_format="pickle", signature=signature, model_id=logged.model_id,
            run_id=self.run_id,
            # explicit requirements skip MLflow's slow subprocess that re-imports the model to infer them
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "cloudpickle"],
        )
        return info.model_uri


def load_model(model_uri: str) -> Any:
    """Load a model logged by ``RunLogger.log_model`` as an ``nn.Module`` (our own store: pickle allowed)."""
    import mlflow.pytorch

    key = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
    old = os.environ.get(key)
    os.environ[key] = "true"
    try:
        return mlflow.pytorch.load_model(model_uri, map_location="cpu")
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# ---------------------------------------------------------------- run lifecycle
def _experiment_id(client: mlflow.MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = _artifact_location(mlflow.get_tracking_uri())
        try:
            return _retry(lambda: client.create_experiment(name, artifact_location=location))
        except MlflowException as err:  # another worker created it between our get and create
            if "already exists" not in str(err).lower():
                raise
            exp = client.get_experiment_by_name(name)
            assert exp is not None
    if exp.lifecycle_stage == "deleted":
        _retry(lambda: client.restore_experiment(exp.experiment_id))
    return exp.experiment_id


def _existing_run(client: mlflow.MlflowClient, run_id: str | None) -> str | None:
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None  # store was wiped or the id is from another store: start afresh
    return run_id if run.info.lifecycle_stage == "active" else None


def _new_run(client: mlflow.MlflowClient, experiment: str, run_name: str, tags: dict[str, str]) -> str:
    exp_id = _experiment_id(client, experiment)
    run = _retry(lambda: client.create_run(exp_id, run_name=run_name, tags=tags))
    return run.info.run_id


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception so the run is closed as KILLED (and the CLI says 'interrupted')."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # someone else owns SIGTERM (or we cannot install handlers here)
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _close(client: mlflow.MlflowClient, run_id: str, status: str) -> None:
    try:
        _retry(lambda: client.set_terminated(run_id, status=status))
    except Exception as err:  # never hide the training error behind a bookkeeping one
        logging.getLogger(__name__).warning("could not mark MLflow run %s %s: %s", run_id, status, err)


@contextlib.contextmanager
def start_run(experiment: str, run_name: str, *, resume_run_id: str | None = None,
              tags: Mapping[str, Any] | None = None, nested: bool = False,
              parent_run_id: str | None = None) -> Iterator[RunLogger]:
    """Open (or resume) a run; on exit it is FINISHED, FAILED on an error, KILLED on Ctrl-C/SIGTERM."""
    client = _client()
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    parent = parent_run_id or (_open_runs[-1] if nested and _open_runs else None)
    if nested and parent is None:
        raise BatchoutError(f"run {run_name}: nested=True needs an open parent run or parent_run_id")
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run_id = _existing_run(client, resume_run_id)
    if run_id is None:
        run_id = _new_run(client, experiment, run_name, all_tags)
    else:  # a killed attempt resumes from its checkpoint: one run per model, whatever the restarts
        _retry(lambda: client.update_run(run_id, status="RUNNING"))
        RunLogger(client, run_id).set_tags(all_tags)
    logger = RunLogger(client, run_id)
    _open_runs.append(run_id)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        with _sigterm_as_interrupt():
            yield logger
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    finally:
        _open_runs.remove(run_id)
        _close(client, run_id, status)


@contextlib.contextmanager
def log_to_run(run_id: str) -> Iterator[RunLogger]:
    """Add metrics/tags/artifacts to an existing run, leaving its status (e.g. FINISHED) unchanged."""
    client = _client()
    try:
        client.get_run(run_id)
    except MlflowException as err:
        raise BatchoutError(
            f"MLflow run {run_id}: not found in {mlflow.get_tracking_uri()} ({err.error_code}); "
            "retrain the model or point MLFLOW_TRACKING_URI at the store that holds it"
        ) from None
    yield RunLogger(client, run_id)


def mark_stale_runs(experiment: str, run_name: str, keep_run_id: str | None) -> list[str]:
    """Set every RUNNING run named ``run_name`` (except ``keep_run_id``) to KILLED; return their ids."""
    client = _client()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    stale: list[str] = []
    page = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    while True:  # names are compared here, not in the filter string, so quotes in a name are harmless
        stale += [r.info.run_id for r in page if r.info.run_name == run_name and r.info.run_id != keep_run_id]
        if not page.token:
            break
        page = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", page_token=page.token)
    for run_id in stale:
        _retry(lambda r=run_id: client.set_terminated(r, status="KILLED"))
    return stale
