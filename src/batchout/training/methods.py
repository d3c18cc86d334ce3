"""Per training method, the code it runs on each batch beyond the shared loop, imported only for runs
of that method.

Usage: ``perturb = batch_perturbation(cfg.method)`` -> ``perturb(model, x, y, cfg)``, or None

Only adversarial training has such code (it runs FGSM or PGD). It is loaded by module name, so the
shared loop's imports never reach the attack code and a standard or BatchOut run never depends on
it: dvc.yaml adds it to the train stage of adversarial arms alone, through
``pipeline/method_deps/<method>/`` (links to the files), and tests/test_dvc_yaml.py walks the imports of
each module named in :data:`MODULES` to check those links are complete.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

MODULES = {"adversarial": "batchout.training.adversarial"}  # method -> module with ``perturb_batch``


def batch_perturbation(method: str) -> Callable[..., Any] | None:
    """The method's ``perturb_batch(model, x, y, cfg) -> x`` (adversarial examples in the batch), or None."""
    name = MODULES.get(method)
    return None if name is None else importlib.import_module(name).perturb_batch
