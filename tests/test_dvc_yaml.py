"""dvc.yaml and params.yaml agree with the schema: every ``params:`` key exists in both."""

from __future__ import annotations

import re

import yaml
from pydantic import BaseModel

from batchout.config import Params


def _schema_has(path: list[str], model: type[BaseModel] = Params) -> bool:
    node: object = model
    for part in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            if part not in node.model_fields:
                return False
            node = node.model_fields[part].annotation
        else:  # a dict-valued field (train.runs.<name>): any key is structurally valid
            return True
    return True


def _doc_has(path: list[str], doc: dict) -> bool:
    node = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _stage_param_keys(dvc: dict, doc: dict) -> list[tuple[str, str]]:
    keys = []
    for stage, body in dvc["stages"].items():
        spec = body.get("do", body)
        items: list[str] = [""]
        if "foreach" in body:
            m = re.fullmatch(r"\$\{(.+)\}", body["foreach"])
            source = doc
            for part in m.group(1).split("."):
                source = source[part]
            items = list(source)
        for item in items:
            for key in spec.get("params", []):
                keys.append((stage, key.replace("${key}", str(item)).replace("${item}", str(item))))
    return keys


def test_every_stage_param_exists_in_schema_and_params(repo_root):
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    doc = yaml.safe_load((repo_root / "params.yaml").read_text())
    keys = _stage_param_keys(dvc, doc)
    assert len(keys) > 20
    for stage, key in keys:
        assert _schema_has(key.split(".")), f"{stage}: {key} not in the schema"
        assert _doc_has(key.split("."), doc), f"{stage}: {key} not in params.yaml"


def test_attack_stage_reads_no_train_params(repo_root):
    """Changing an attack setting must re-attack, never retrain (and the reverse)."""
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    for stage in ("attack", "attack_tuned"):
        assert all(p.startswith("attack") for p in dvc["stages"][stage]["do"]["params"])
    for stage in ("train", "train_tuned"):
        assert not any(p.startswith("attack") for p in dvc["stages"][stage]["do"]["params"])
