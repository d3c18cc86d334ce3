"""dvc.yaml agrees with the code: every ``params:`` key exists in the schema and params.yaml, and every
stage depends on all the code it imports."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from dvc_project import make_project
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


# ---------------------------------------------------------------- deps against the real import graph
ROOTS = {"batchout": Path("src") / "batchout", "pipeline": Path("pipeline")}


def _module_file(repo: Path, name: str) -> Path | None:
    top, *rest = name.split(".")
    if top not in ROOTS:
        return None
    base = repo / ROOTS[top] / Path(*rest) if rest else repo / ROOTS[top]
    for cand in (base / "__init__.py", base.with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module named by an import anywhere in the file (function-level lazy imports included);
    ``from a import b`` also names ``a.b``, which is a module when b is a submodule."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and path.name == "__init__.py":
            # a lazy package (PEP 562) hands out any of its modules: all of them count as imported
            names.update(f"{module}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__")
    return names


def import_closure(repo: Path, start: str) -> set[Path]:
    """Files of every project module that running ``start`` can import (parent packages included)."""
    seen: dict[str, Path] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        path = _module_file(repo, name)
        if path is None or name in seen:
            continue
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imported_names(path, name)
    return {p.relative_to(repo) for p in seen.values()}


def _covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def test_every_stage_depends_on_all_the_code_it_imports(repo_root):
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    assert set(dvc["stages"]) >= {"prepare", "train", "train_tuned", "attack", "attack_tuned", "tune", "report"}
    for stage, body in dvc["stages"].items():
        spec = body.get("do", body)
        module = spec["cmd"].split()[2]  # python -m pipeline.<stage> ...
        deps = spec["deps"]
        missing = sorted(str(p) for p in import_closure(repo_root, module) if not _covered(p, deps))
        assert not missing, f"dvc.yaml stage {stage} imports code it does not depend on: {missing}"
        stale = [d for d in deps if d.startswith(("src/", "pipeline/")) and not (repo_root / d).exists()]
        assert not stale, f"dvc.yaml stage {stage} depends on paths that do not exist: {stale}"


def test_the_import_walk_sees_lazy_and_package_imports(repo_root):
    """The walk itself can miss nothing the stages rely on: function-level imports (pipeline/*.py
    import their stage lazily), a lazy package's modules (batchout.tracking) and package __init__s."""
    files = {str(p) for p in import_closure(repo_root, "pipeline.train")}
    assert {"src/batchout/stages/train.py", "src/batchout/tracking/runs.py", "src/batchout/tracking/store.py",
            "src/batchout/attacks/fgsm.py", "src/batchout/training/__init__.py"} <= files
    # adversarial training imports the attack registry, which imports every attack
    assert "src/batchout/attacks/square.py" in files
    # and a dep list that lacks the attacks would be caught
    assert not _covered(Path("src/batchout/attacks/fgsm.py"), ["src/batchout/training", "src/batchout/models"])


def test_every_subpackage_is_packaged(repo_root):
    """pyproject lists packages explicitly: a new subpackage left out would be missing from a wheel."""
    listed = set(tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(repo_root / "src").parts) for p in (repo_root / "src").rglob("__init__.py")}
    assert found | {"pipeline"} == listed


@pytest.mark.slow
def test_changing_fgsm_marks_the_adversarially_trained_model_stale(tmp_path):
    """The adversarial run trains with FGSM: editing the attack must make DVC retrain it."""
    adv = "mnist-lenet-adversarial"
    proj = make_project(tmp_path / "repo", runs=(f"{adv}-s0",))
    proj.dvc("repro", f"train@{adv}")
    assert "up to date" in proj.dvc("status", f"train@{adv}")
    fgsm = proj.root / "src/batchout/attacks/fgsm.py"
    fgsm.write_text(fgsm.read_text() + "\n# a deliberate change to FGSM\n")
    status = proj.dvc("status", f"train@{adv}")
    assert f"train@{adv}" in status and "modified:" in status and "src/batchout/attacks" in status, status
