"""The params schema: the real params.yaml is valid, bad input gets one precise line."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from batchout.config import Params, parse_params
from batchout.config.run import resolve_run, runs_of
from batchout.errors import BatchoutError


@pytest.fixture
def doc(repo_root) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def _error(doc: dict) -> str:
    with pytest.raises(BatchoutError) as info:
        parse_params(doc)
    return str(info.value)


def test_real_params_files_are_valid(repo_root):
    for name in ("params.yaml", "params.paper.yaml"):
        path = repo_root / name
        if path.exists():
            params = parse_params(yaml.safe_load(path.read_text()))
            assert params.train.runs, name


def test_fraction_strings_become_pixel_floats(doc):
    doc["attack"]["eps"]["cifar10"] = ["1/255", 0.5, "8/255"]
    params = parse_params(doc)
    assert params.attack.eps["cifar10"] == pytest.approx([1 / 255, 0.5, 8 / 255])


def test_unknown_key_names_closest_valid_key(doc):
    doc["train"]["epoch"] = 3
    msg = _error(doc)
    assert msg.startswith("train.epoch: unknown key")
    assert "did you mean 'epochs'" in msg


def test_nested_unknown_key(doc):
    doc["train"]["optimizer"]["lrr"] = 0.1
    msg = _error(doc)
    assert msg.startswith("train.optimizer.lrr: unknown key") and "'lr'" in msg


def test_wrong_type_names_key_and_value(doc):
    doc["train"]["epochs"] = "many"
    msg = _error(doc)
    assert msg.startswith("train.epochs:") and "'many'" in msg


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        (("train", "batchout", "k"), 1.5, "train.batchout.k: Input should be less than or equal to 1"),
        (("train", "epochs"), 0, "train.epochs: Input should be greater than or equal to 1"),
        (("data", "val_fraction"), 0.0, "data.val_fraction: Input should be greater than 0"),
        (("attack", "checks", "tolerance"), -1, "attack.checks.tolerance:"),
    ],
)
def test_ranges(doc, path, value, expect):
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    assert _error(doc).startswith(expect)


def test_unknown_dataset_lists_allowed(doc):
    doc["data"]["datasets"] = ["mnist", "svhn"]
    assert _error(doc) == "data.datasets.1: unknown value 'svhn'; allowed: mnist, cifar10, cifar3"


def test_unknown_model_and_method(doc):
    bad = copy.deepcopy(doc)
    bad["train"]["runs"]["mnist-lenet-standard"]["model"] = "alexnet"
    msg = _error(bad)
    assert msg.startswith("train.runs.mnist-lenet-standard.model:") and "lenet" in msg and "vgg19" in msg
    doc["train"]["runs"]["mnist-lenet-standard"]["method"] = "mixup"
    assert "batchout_final" in _error(doc)


def test_unknown_attack_name(doc):
    doc["attack"]["attacks"]["cw"] = {}
    allowed = "apgd_ce, apgd_t, autoattack, deepfool, fab_t, fgsm, pgd, pgd_dlr, square"
    assert _error(doc) == f"attack.attacks.cw: unknown value 'cw'; allowed: {allowed}"


def test_the_escalated_attack_must_be_in_the_grid_unless_left_at_its_default(doc):
    doc["attack"]["attacks"] = {"fgsm": {}, "pgd": {}}
    assert _error(copy.deepcopy(doc)) == "attack.converge.attack: unknown value 'autoattack'; allowed: fgsm, pgd, null"
    del doc["attack"]["converge"]["attack"]  # the default: the ensemble when the grid has one, else nothing
    params = parse_params(doc)
    assert params.attack.converge.attack is None
    # a stage writes the resolved Params back as its params.yaml: it must read back the same
    again = parse_params(yaml.safe_load(yaml.safe_dump(params.model_dump(mode="json"))))
    assert again == params
    doc["attack"]["attacks"]["autoattack"] = {}
    assert parse_params(doc).attack.converge.attack == "autoattack"


def test_names_come_from_the_name_tables_and_import_no_implementation(doc):
    """params.yaml names are checked against batchout.names: validating imports no torch, no registry."""
    run = doc["train"]["runs"]["mnist-lenet-standard"]
    run["model"] = "tiny_mlp"
    with pytest.raises(BatchoutError, match="model: unknown value 'tiny_mlp'; allowed: lenet, paper_cifar"):
        parse_params(copy.deepcopy(doc))
    run["model"] = "lenet"
    code = ("import sys, yaml; from batchout.config import parse_params; "
            f"parse_params(yaml.safe_load({yaml.safe_dump(doc)!r})); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('batchout.models', "
            "'batchout.attacks', 'batchout.layers', 'batchout.data'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_dataset_must_be_known(doc):
    doc["train"]["runs"]["mnist-lenet-standard"]["dataset"] = "imagenet"
    assert _error(doc).startswith("train.runs.mnist-lenet-standard.dataset: unknown value 'imagenet'")


def test_custom_image_folder_dataset_is_allowed(doc):
    doc["data"]["image_folders"] = {"pets": "data/pets"}
    doc["data"]["datasets"] = ["pets"]
    assert parse_params(doc).data.datasets == ["pets"]


def test_n_range_and_tune_ranges(doc):
    bad = copy.deepcopy(doc)
    bad["train"]["batchout"]["n"] = [0.2, 0.1]
    assert _error(bad) == "train.batchout.n: range low 0.2 > high 0.1"
    bad = copy.deepcopy(doc)
    bad["tune"]["k"] = {"low": 0.1, "high": 1.5}
    assert _error(bad).startswith("tune.k: range must lie in (0, 1]")
    doc["tune"]["n"] = {"low": 0.5, "high": 0.1}
    assert _error(doc).startswith("tune.n: low 0.5 > high 0.1")


def test_from_tune_outside_tuned_runs_is_refused(doc):
    doc["train"]["batchout"]["from_tune"] = True
    assert "needs the run under train.tuned_runs" in _error(doc)


def test_not_a_mapping():
    with pytest.raises(BatchoutError, match="expected a mapping"):
        parse_params([1, 2])


def test_empty_document_gives_defaults():
    assert parse_params(None) == Params()


def test_resolve_run_merges_overrides(doc):
    doc["train"]["runs"]["cifar3-x"] = {"dataset": "cifar3", "model": "resnet_bottleneck", "method": "standard",
                                        "seeds": [2], "model_kwargs": {"blocks": [1, 1, 1]}, "epochs": 7,
                                        "augment": {"crop_padding": 4, "flip": True}}
    params = parse_params(doc)
    cfg = resolve_run(params.train, "cifar3-x-s2")
    assert cfg.augment.crop_padding == 4 and cfg.epochs == 7 and cfg.optimizer == params.train.optimizer
    assert cfg.model_kwargs == {"blocks": [1, 1, 1]} and cfg.batchout == params.train.batchout
    assert (cfg.arm, cfg.seed) == ("cifar3-x", 2)
    with pytest.raises(BatchoutError, match="allowed: mnist-lenet-standard-s0"):
        resolve_run(params.train, "nope")
    with pytest.raises(BatchoutError, match="run: unknown value 'mnist-lenet-standard-s9'"):
        resolve_run(params.train, "mnist-lenet-standard-s9")  # a seed the arm does not list


def test_arms_expand_to_one_run_per_seed(doc):
    doc["train"]["runs"]["mnist-lenet-standard"]["seeds"] = [0, 4]
    train = parse_params(doc).train
    assert train.run_names("mnist-lenet-standard") == ["mnist-lenet-standard-s0", "mnist-lenet-standard-s4"]
    assert runs_of(train, "mnist-lenet-standard-s4") == ["mnist-lenet-standard-s4"]
    assert resolve_run(train, "mnist-lenet-standard-s4").seed == 4
    with pytest.raises(BatchoutError, match="run: unknown value 'mnist-lenet'; allowed: mnist-lenet-standard,"):
        runs_of(train, "mnist-lenet")


@pytest.mark.parametrize(("seeds", "why"), [([], "at least 1 item"), ([1, 1], "distinct"), ([-1], "distinct")])
def test_bad_seeds_are_refused(doc, seeds, why):
    doc["train"]["runs"]["mnist-lenet-standard"]["seeds"] = seeds
    msg = _error(doc)
    assert msg.startswith("train.runs.mnist-lenet-standard.seeds:") and why in msg


def test_an_arm_named_like_a_run_is_refused(doc):
    doc["train"]["runs"]["mnist-lenet-x-s3"] = doc["train"]["runs"]["mnist-lenet-standard"]
    assert _error(doc).startswith("train.runs.mnist-lenet-x-s3: an arm name must not end in -s<N>")


def test_tuned_run_takes_k_and_n_from_tune(doc):
    params = parse_params(doc)
    name = params.train.run_names(next(iter(params.train.tuned_runs)))[0]
    cfg = resolve_run(params.train, name, {"k": 0.25, "n": 0.05})
    assert (cfg.batchout.k, cfg.batchout.n) == (0.25, 0.05)
    with pytest.raises(BatchoutError, match="dvc repro tune"):
        resolve_run(params.train, name)


def test_attack_settings_are_checked_by_the_validate_attacks_stage(doc, tmp_path):
    """The attack names its own argument (pgd.steps); the refusal adds the params path. The schema
    checks the name only (it imports no attack), so the setting is refused by building the attack."""
    from batchout.paths import Paths
    from batchout.stages import validate_attacks

    paths = Paths(tmp_path)
    doc["attack"]["attacks"]["pgd"] = {"steps": 0}
    with pytest.raises(BatchoutError, match=r"^attack\.attacks\.pgd\.steps: got 0; allowed: an integer >= 1$"):
        validate_attacks.run(parse_params(copy.deepcopy(doc)), paths)
    doc["attack"]["attacks"]["pgd"] = {"stepz": 10}
    with pytest.raises(BatchoutError, match=r"^attack\.attacks\.pgd\.stepz: unknown setting; did you mean 'steps'\?"):
        validate_attacks.run(parse_params(copy.deepcopy(doc)), paths)
    assert not paths.attacks_valid.exists()  # nothing written
    doc["attack"]["attacks"]["pgd"] = {"steps": 3}
    assert validate_attacks.run(parse_params(doc), paths)["attacks"] == list(doc["attack"]["attacks"])
    assert paths.attacks_valid.read_text() == validate_attacks.MARKER_TEXT
