"""Reference numbers to set ours beside: the BatchOut paper's (digitized from its figures) and the
seed project's single runs.

Usage: ``PAPER["mnist"]["fgsm"]["BatchOut"]``; ``for ds, model, quantity, eps, std, final in SEED_RESULTS``
"""

from __future__ import annotations

from typing import Any

from batchout.reporting.groups import MAIN_ATTACK

PAPER_CITATION = 'Subramanya, Mopuri, Babu, "BatchOut", ICVGIP 2018'
PAPER_METHODS = {"standard": "standard", "adversarial": "FGSM-AT", "batchout": "BatchOut"}
# FGSM accuracy (%) digitized from the paper's figures; "clean" is its clean test accuracy (%).
PAPER: dict[str, dict[str, Any]] = {
    "mnist": {"eps": [0.1, 0.2, 0.3, 0.4, 0.5],
              "fgsm": {"standard": [80.2, 33.9, 19.4, 13.3, 10.9], "FGSM-AT": [96.4, 97.6, 96.2, 95.1, 88.2],
                       "BatchOut": [96.5, 96.3, 96.0, 95.6, 94.9]},
              "clean": {"standard": 99.47, "FGSM-AT": 99.31, "BatchOut": 99.12}},
    "cifar10": {"eps": [v / 255 for v in (1, 2, 3, 4, 5)],
                "fgsm": {"standard": [54.7, 43.6, 41.0, 39.9, 39.3], "FGSM-AT": [73.3, 67.7, 61.1, 54.1, 48.3],
                         "BatchOut": [70.4, 61.5, 56.5, 54.2, 53.0]},
                "clean": {"standard": 80.22, "FGSM-AT": 80.01, "BatchOut": 80.79}},
}
# The seed project's own single-run numbers (%): (dataset, model, quantity, eps or None, standard, final).
# quantity "clean" = test accuracy, "pgd" = our main attack at eps, None = the seed does not say.
SEED_RESULTS = (("cifar3", "resnet_bottleneck", "clean", None, 90.66, 90.86),
                ("cifar3", "resnet_bottleneck", MAIN_ATTACK, 5 / 255, 58.0, 64.0),
                ("cifar10", "resnet_bottleneck", "clean", None, 78.3, 85.2))  # test accuracy per the notes
