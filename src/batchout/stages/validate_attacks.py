"""Validate-attacks stage: every attack of ``attack.attacks``, and the tune objective's ensemble
``tune.attack``, built with its settings on a stand-in model, second in every ``dvc repro`` (after
validate, before any data is prepared).

Usage: ``summary = run(load_params("params.yaml"), Paths())``

Apart from the validate stage because checking a setting (``pgd.stepz``, ``pgd.steps: 0``) means
running the attack's own code: the schema checks attack names against ``batchout.names`` and imports
no attack, so validate (which every stage depends on) does not depend on the attacks. This stage
does, and only the attack stages depend on its marker, whose content never changes. The attack
stage makes the same check itself when run outside DVC.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from batchout.attacks.autoattack import checked
from batchout.attacks.registry import check_settings
from batchout.config import Params
from batchout.io import write_text
from batchout.paths import Paths

MARKER_TEXT = "every attack in params.yaml builds with its settings (attack.attacks, tune.attack)\n"  # constant
PREFIX = "attack.attacks."  # how a refusal names the key: attack.attacks.pgd.steps


def run(params: Params, paths: Paths) -> dict[str, Any]:
    """Write the marker when every attack builds; returns the attacks checked."""
    check_settings(params.attack.attacks, PREFIX)
    checked(nn.Identity(), params.tune.attack, "tune.attack")  # the tune objective's ensemble
    write_text(paths.attacks_valid, MARKER_TEXT)
    return {"attacks": list(params.attack.attacks)}
