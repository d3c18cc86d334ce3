"""The model registry: a training run's logged model as a version of a registered model, with aliases.

Usage: ``set_aliases("batchout-mnist", {"best-robust": {"run_id": ..., "run": "mnist-lenet-batchout-s1"}})``;
``register(run_id, "batchout-mnist", ["best-robust"])`` ->
``{"name": "batchout-mnist", "version": 3, "run_id": ..., "aliases": ["best-robust"], "created": False}``;
then ``mlflow.pyfunc.load_model("models:/batchout-mnist@best-robust")`` (with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``: our models are pickled, see ``RunLogger.log_model``).

Idempotent: a run has at most one version per registered model, so registering the same runs again
(every ``dvc repro`` of the report) only moves aliases. MLflow 3 keeps a model under its LoggedModel,
not under the run's artifacts, so ``runs:/<run_id>/model`` would resolve only through a lookup (and a
warning); the lookup is done here and the version's source is ``models:/<model_id>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from batchout.errors import BatchoutError
from batchout.tracking import store
from batchout.tracking.store import retry

MODEL_NAME = "model"  # RunLogger.log_model's default name


def model_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def _model_id(client: MlflowClient, run_id: str) -> str:
    """The newest model named MODEL_NAME logged by the run (a re-scored run logs the same weights again)."""
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise BatchoutError(f"MLflow run {run_id}: not found in this store ({err.error_code}); "
                            "retrain it or point MLFLOW_TRACKING_URI at the store that holds it") from None
    found = client.search_logged_models([run.info.experiment_id], f"source_run_id = '{run_id}'")
    models = [m for m in found if m.name == MODEL_NAME]
    if not models:
        raise BatchoutError(f"MLflow run {run_id} ({run.info.run_name}): no logged model named {MODEL_NAME!r}; "
                            "rerun its train stage")
    return max(models, key=lambda m: m.creation_timestamp).model_id


def _ensure_model(client: MlflowClient, name: str, description: str | None) -> None:
    try:
        client.get_registered_model(name)
        return
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        retry(lambda: client.create_registered_model(name, description=description))
    except MlflowException as err:  # created by another process between our get and create
        if "already exists" not in str(err).lower():
            raise


def _version_of_run(client: MlflowClient, name: str, run_id: str) -> int | None:
    found = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    return min((int(v.version) for v in found), default=None)


def _link(client: MlflowClient, model_id: str, name: str, version: int) -> None:
    """Record the version on the logged model too, as ``mlflow.register_model`` does (the UI links them)."""
    old = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    versions = [*json.loads(old or "[]"), {"name": name, "version": version}]
    retry(lambda: client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)}))


def register(run_id: str, name: str, aliases: Sequence[str], tags: Mapping[str, Any] | None = None,
             description: str | None = None) -> dict[str, Any]:
    """Make ``run_id``'s model a version of ``name`` (created if missing; reused if the run already has
    one) and point ``aliases`` at it. ``tags`` go on a new version; ``description`` on a new model."""
    client = store.client()
    version = _version_of_run(client, name, run_id)
    created = version is None
    if version is None:
        model_id = _model_id(client, run_id)  # first: a run this store lacks creates nothing
        _ensure_model(client, name, description)
        mv = retry(lambda: client.create_model_version(name, f"models:/{model_id}", run_id=run_id,
                                                       tags={k: str(v) for k, v in (tags or {}).items()},
                                                       model_id=model_id))
        version = int(mv.version)
        _link(client, model_id, name, version)
    for alias in aliases:
        retry(lambda a=alias: client.set_registered_model_alias(name, a, str(version)))
    return {"name": name, "version": version, "run_id": run_id, "aliases": list(aliases), "created": created}


def set_aliases(name: str, chosen: Mapping[str, Mapping[str, Any] | None],
                description: str | None = None) -> list[dict[str, Any]]:
    """Alias -> the chosen run (a mapping with ``run_id`` and ``run``, the run's name) or None: register
    each run, point its alias at it, drop an alias nobody qualifies for. One row per alias, as in
    summary.json; a run this store does not hold is skipped with a warning (the report does not
    depend on the registry), its alias left where it was."""
    rows = []
    for alias, run in chosen.items():
        row: dict[str, Any] = {"alias": alias, "name": name, **(run or {"run": None})}
        if run is None:
            drop_alias(name, alias)
        else:
            try:
                row["version"] = register(run["run_id"], name, [alias], {"run": run["run"]}, description)["version"]
            except BatchoutError as err:
                logging.getLogger(__name__).warning("registry %s@%s: %s", name, alias, err)
                row["skipped"] = str(err)
        rows.append(row)
    return rows


def drop_alias(name: str, alias: str) -> bool:
    """Remove ``alias`` from ``name`` (say no run qualifies any more); False when there was none."""
    client = store.client()
    try:
        client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return False
    retry(lambda: client.delete_registered_model_alias(name, alias))
    return True
