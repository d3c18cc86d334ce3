"""The names params.yaml may use for models, training methods, attacks and data sets, without their
implementations: the schema checks names against these tables, so validating params.yaml imports no
torch and no registry, and a stage's DVC dependencies are only the code it runs.

Usage: ``from batchout.names import MODELS, METHODS, ATTACKS, DATASETS``

Each registry refuses to register a name missing here and a test checks that each table equals its
registry (tests/test_names.py): a new model, attack or data set is added here and registered there.
"""

from __future__ import annotations

MODELS = ("lenet", "paper_cifar", "resnet_bottleneck", "vgg19")  # batchout.models
# Every training method, in the order reports list them (batchout.layers; adversarial: batchout.training)
METHODS = ("standard", "batchout", "batchout_final", "adversarial")
ATTACKS = ("apgd_ce", "apgd_t", "autoattack", "deepfool", "fab_t", "fgsm", "pgd", "pgd_dlr", "square")  # attacks
DATASETS = ("mnist", "cifar10", "cifar3")  # batchout.data.sources
# their class counts (sources.REGISTRY's class lists; tests/test_names.py): what the report's cost estimate
# needs without importing the data code
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar3": 3}


def check_listed(kind: str, name: str, table: tuple[str, ...]) -> None:
    """For a registry: refuse a name its table lacks, so params.yaml can never name an unknown thing
    and the table never lags its registry."""
    if name not in table:
        raise ValueError(f"{kind} {name!r} is not in batchout.names; add it there so params.yaml accepts it")
