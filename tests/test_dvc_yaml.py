"""dvc.yaml agrees with the code: every ``params:`` key exists in the schema and params.yaml, and every
stage depends on all the code it imports."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import yaml
from pydantic import BaseModel

from batchout.config import Params
from batchout.names import METHODS
from batchout.training.methods import MODULES


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


def _resolved(repo: Path, deps: list[str]) -> list[str]:
    """``deps`` with every folder of links (``pipeline/method_deps/<method>``) replaced by the files
    they point to, as DVC hashes them."""
    out = []
    for d in deps:
        folder = repo / d
        links = sorted(p for p in folder.iterdir() if p.is_symlink()) if folder.is_dir() else []
        out += [str(p.resolve().relative_to(repo.resolve())) for p in links] or [d]
    return out


def test_every_stage_depends_on_all_the_code_it_imports(repo_root):
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    assert set(dvc["stages"]) >= {"validate", "validate_attacks", "prepare", "train", "train_tuned", "attack",
                                  "attack_tuned", "tune", "report"}
    for stage, body in dvc["stages"].items():
        spec = body.get("do", body)
        module = spec["cmd"].split()[2]  # python -m pipeline.<stage> ...
        deps = [d for d in spec["deps"] if "${item.method}" not in d]  # per-method code: the next test
        missing = sorted(str(p) for p in import_closure(repo_root, module) if not _covered(p, deps))
        assert not missing, f"dvc.yaml stage {stage} imports code it does not depend on: {missing}"
        stale = [d for d in deps if d.startswith(("src/", "pipeline/")) and not (repo_root / d).exists()]
        assert not stale, f"dvc.yaml stage {stage} depends on paths that do not exist: {stale}"


def test_each_methods_own_training_code_is_a_dependency_of_its_arms_only(repo_root):
    """A method's extra code (``training.methods.MODULES``, loaded by name so the shared loop never imports
    it) reaches its arms through ``pipeline/method_deps/<method>``: links, complete and only there."""
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    folders = {p.name for p in (repo_root / "pipeline" / "method_deps").iterdir() if p.is_dir()}
    assert folders == set(METHODS)  # every method has a folder, or DVC would miss a dependency
    shared = import_closure(repo_root, "pipeline.train")
    assert not any("attacks" in str(p) for p in shared)  # the shared loop imports no attack
    for stage in ("train", "train_tuned"):
        template = dvc["stages"][stage]["do"]["deps"]
        assert "pipeline/method_deps/${item.method}" in template
        for method in METHODS:
            deps = _resolved(repo_root, [d.replace("${item.method}", method) for d in template])
            code = import_closure(repo_root, MODULES[method]) if method in MODULES else set()
            missing = sorted(str(p) for p in code | shared if not _covered(p, deps))
            assert not missing, f"{stage} of a {method} arm imports code it does not depend on: {missing}"
            extra = _resolved(repo_root, [f"pipeline/method_deps/{method}"])
            unused = [f for f in extra if f.startswith("src/") and Path(f) not in code]
            assert not unused, f"pipeline/method_deps/{method} links code its training never imports: {unused}"
    adversarial = _resolved(repo_root, ["pipeline/method_deps/adversarial"])
    assert "src/batchout/attacks/fgsm.py" in adversarial and "src/batchout/attacks/apgd.py" not in adversarial


def test_the_import_walk_sees_lazy_and_package_imports(repo_root):
    """The walk itself can miss nothing the stages rely on: function-level imports (pipeline/*.py
    import their stage lazily), a lazy package's modules (batchout.tracking) and package __init__s."""
    files = {str(p) for p in import_closure(repo_root, "pipeline.train")}
    assert {"src/batchout/stages/train.py", "src/batchout/tracking/runs.py", "src/batchout/tracking/store.py",
            "src/batchout/training/__init__.py", "src/batchout/training/methods.py"} <= files
    # building attacks by name (the registry) imports every attack; one attack module imports itself
    # and the base (and the package's empty __init__) only
    attack = {str(p) for p in import_closure(repo_root, "pipeline.attack")}
    assert "src/batchout/attacks/square.py" in attack and "src/batchout/attacks/registry.py" in attack
    fgsm = {str(p) for p in import_closure(repo_root, "batchout.attacks.fgsm")}
    assert {p for p in fgsm if "attacks" in p} == {"src/batchout/attacks/__init__.py", "src/batchout/attacks/base.py",
                                                     "src/batchout/attacks/fgsm.py"}
    # params validation imports no implementation: no torch-side registry, and data does not import config back
    validate = {str(p) for p in import_closure(repo_root, "pipeline.validate")}
    assert not any(p.startswith(("src/batchout/models", "src/batchout/attacks", "src/batchout/layers",
                                 "src/batchout/data")) for p in validate), validate
    # and a dep list that lacks the attacks would be caught
    assert not _covered(Path("src/batchout/attacks/fgsm.py"), ["src/batchout/training", "src/batchout/models"])


def test_every_subpackage_is_packaged(repo_root):
    """pyproject lists packages explicitly: a new subpackage left out would be missing from a wheel."""
    listed = set(tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(repo_root / "src").parts) for p in (repo_root / "src").rglob("__init__.py")}
    assert found | {"pipeline"} == listed
