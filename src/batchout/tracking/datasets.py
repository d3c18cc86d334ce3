"""A prepared data set as MLflow dataset inputs of a run, from its meta.json alone (no array is read
or hashed again: the digests come from the sha256 that the prepare stage wrote).

Usage: ``RunLogger.log_dataset(meta, "mnist", "data/prepared/mnist")``, or
``client.log_inputs(run_id, datasets=dataset_inputs(meta, "mnist", "data/prepared/mnist"))``

One input per split, each with MLflow's context tag (training / validation / testing), because a
training run uses all three for different things: it fits on train, selects nothing but logs
per-epoch accuracy on val, and scores its final ``test_acc`` on test. Separate digests let a search
(``datasets.digest = '...'``) find the runs that trained on the same train split even when another
test subset was scored, which one digest over all six files would hide.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # split -> MLflow context
DIGEST_CHARS = 16  # of a sha256 hex; MLflow stores at most 36 and shows ~8-10 in its UI


class _Prepared(MetaDataset):
    """A MetaDataset (metadata only) that also carries a profile: MetaDataset itself logs none."""

    def __init__(self, source_uri: str, name: str, digest: str, profile: dict[str, Any]) -> None:
        self._profile = profile
        source = get_dataset_source_from_json(json.dumps({"uri": source_uri}), "local")
        super().__init__(source, name=name, digest=digest)

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile, sort_keys=True)}


def split_digest(meta: Mapping[str, Any], split: str) -> str:
    """The split's images and labels, as the first DIGEST_CHARS hex of sha256 over their two sha256."""
    sha = meta["sha256"]
    both = f"{sha[f'x_{split}.npy']}:{sha[f'y_{split}.npy']}"
    return hashlib.sha256(both.encode()).hexdigest()[:DIGEST_CHARS]


def _profile(meta: Mapping[str, Any], split: str) -> dict[str, Any]:
    """What the MLflow UI shows of one split: its size, the image shape and the checkable file hashes."""
    return {
        "split": split,
        "examples": int(meta["counts"][split]),
        "counts": dict(meta["counts"]),  # every split's size, so any one input tells the whole layout
        "shape": list(meta["shape"]),
        "num_classes": int(meta["num_classes"]),
        "sha256": {f: meta["sha256"][f] for f in (f"x_{split}.npy", f"y_{split}.npy")},
        "raw_source": meta.get("source"),  # {"kind": ..., "where": ...} of the raw files it was cut from
    }


def dataset_inputs(meta: Mapping[str, Any], name: str, source: str) -> list[DatasetInput]:
    """train/val/test of the prepared folder ``source`` (meta.json already loaded) as DatasetInputs."""
    out = []
    for split, context in CONTEXTS.items():
        d = _Prepared(source, name, split_digest(meta, split), _profile(meta, split)).to_dict()
        entity = Dataset(d["name"], d["digest"], d["source_type"], d["source"], profile=d["profile"])
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag("split", split)]
        out.append(DatasetInput(entity, tags=tags))
    return out
