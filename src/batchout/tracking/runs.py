"""MLflow runs, driven through ``MlflowClient`` by id, so several runs may be open at once (a tune parent
and its trials) without the fluent active-run stack.

Usage: ``with start_run("mnist", "mnist-lenet-s0", tags=run_tags()) as log: log.log_epoch(1, m)``
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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
from batchout.paths import artifacts_beside
from batchout.tracking import store
from batchout.tracking.datasets import dataset_inputs
from batchout.tracking.meta import flatten
from batchout.tracking.store import chunks, retry
from batchout.tracking.system import system_metrics


# ---------------------------------------------------------------- one run
class RunLogger:
    """Logs into one run by id; every write retries while the SQLite store is locked."""

    def __init__(self, client: mlflow.MlflowClient, run_id: str) -> None:
        self._client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in flatten(params).items()]
        for chunk in chunks(flat, MAX_PARAMS_TAGS_PER_BATCH):
            retry(lambda c=chunk: self._client.log_batch(self.run_id, params=c))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now_ms = int(time.time() * 1000)
        rows = [Metric(k, float(v), now_ms, step or 0) for k, v in metrics.items()]
        for chunk in chunks(rows, MAX_METRICS_PER_BATCH):
            retry(lambda c=chunk: self._client.log_batch(self.run_id, metrics=c))

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        self.log_metrics(metrics, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        rows = [RunTag(k, str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()]
        for chunk in chunks(rows, MAX_PARAMS_TAGS_PER_BATCH):
            retry(lambda c=chunk: self._client.log_batch(self.run_id, tags=c))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A file, or a whole directory (its contents go under ``artifact_path``)."""
        path = Path(path)
        if not path.exists():
            raise BatchoutError(f"artifact {path}: does not exist; log an existing file or folder")
        log = self._client.log_artifacts if path.is_dir() else self._client.log_artifact
        retry(lambda: log(self.run_id, str(path), artifact_path))

    def log_dict(self, obj: Mapping[str, Any], artifact_file: str) -> None:
        retry(lambda: self._client.log_dict(self.run_id, dict(obj), artifact_file))

    def log_dataset(self, meta: Mapping[str, Any], name: str, source: str) -> None:
        """The prepared data set (its meta.json) at ``source`` as inputs: one per split, see ``datasets``.
        Logging it again is a no-op: MLflow keeps one input per (run, name, digest)."""
        inputs = dataset_inputs(meta, name, source)
        retry(lambda: self._client.log_inputs(self.run_id, datasets=inputs))

    def log_model(self, model: Any, name: str = "model") -> str:
        """Log a CPU copy of ``model`` as a pickled ``nn.Module``: it loads back with ``.eval()``, unlike
        the default ``pt2`` exported program (which also needs an input example). Returns the model URI
        for ``load_model``."""
        import mlflow.pytorch  # imports torch: kept out of module import for stages that never log models
        import torch

        cpu = copy.deepcopy(model).to("cpu").eval()
        run = self._client.get_run(self.run_id)
        # Created here because MLflow would file it under the fluent active (else Default) experiment.
        logged = mlflow.initialize_logged_model(name=name, source_run_id=self.run_id, params=run.data.params,
                                                experiment_id=run.info.experiment_id)
        info = mlflow.pytorch.log_model(
            cpu, name=name, serialization_format="pickle", model_id=logged.model_id,
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
        location = artifacts_beside(mlflow.get_tracking_uri())
        try:
            return retry(lambda: client.create_experiment(name, artifact_location=location))
        except MlflowException as err:  # another worker created it between our get and create
            if "already exists" not in str(err).lower():
                raise
            exp = client.get_experiment_by_name(name)
            assert exp is not None
    if exp.lifecycle_stage == "deleted":
        retry(lambda: client.restore_experiment(exp.experiment_id))
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
    run = retry(lambda: client.create_run(exp_id, run_name=run_name, tags=tags))
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
        retry(lambda: client.set_terminated(run_id, status=status))
    except Exception as err:  # never hide the training error behind a bookkeeping one
        logging.getLogger(__name__).warning("could not mark MLflow run %s %s: %s", run_id, status, err)


@contextlib.contextmanager
def start_run(experiment: str, run_name: str, *, resume_run_id: str | None = None,
              tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
              system_metrics_s: float | None = None) -> Iterator[RunLogger]:
    """Open (or resume) a run; on exit it is FINISHED, FAILED on an error, KILLED on Ctrl-C/SIGTERM.
    ``system_metrics_s``: sample CPU, memory (and GPU) every that many seconds while the run is open."""
    client = store.client()
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run_id = _existing_run(client, resume_run_id)
    resumed = run_id is not None
    if run_id is None:
        run_id = _new_run(client, experiment, run_name, all_tags)
    else:  # a killed attempt resumes from its checkpoint: one run per model, whatever the restarts
        retry(lambda: client.update_run(run_id, status="RUNNING"))
        RunLogger(client, run_id).set_tags(all_tags)
    logger = RunLogger(client, run_id)
    status = RunStatus.to_string(RunStatus.FAILED)
    sampler = system_metrics(run_id, system_metrics_s, resumed) if system_metrics_s else contextlib.nullcontext()
    try:
        # the sampler stops (thread joined) before SIGTERM's handler goes and before the run is closed
        with _sigterm_as_interrupt(), sampler:
            yield logger
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    finally:
        _close(client, run_id, status)


@contextlib.contextmanager
def log_to_run(run_id: str) -> Iterator[RunLogger]:
    """Add metrics/tags/artifacts to an existing run, leaving its status (e.g. FINISHED) unchanged."""
    client = store.client()
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
    client = store.client()
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
        retry(lambda r=run_id: client.set_terminated(r, status="KILLED"))
    return stale
