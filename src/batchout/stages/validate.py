"""Validate stage: the whole params.yaml against the schema, first in every ``dvc repro``.

Usage: ``summary = run(load_params("params.yaml"), Paths())``

The schema checks model, method, attack and data set names against ``batchout.names`` and imports no
implementation, so this stage, which every other stage depends on, depends on no model or attack
code; attack settings are checked by the validate_attacks stage.

Each other stage lists only the keys it reads, so without this stage an unknown or misspelled key
(``train.epoch``) would never be read by anyone and ``dvc repro`` would report "up to date". This
stage depends on the whole file, so any edit reruns it; loading the file (the caller's job) refuses
a bad key in one line naming it and its closest valid spelling. Its output is a marker every other
stage depends on, whose content never changes: a valid edit reruns only the stages that read the
edited keys.
"""

from __future__ import annotations

from typing import Any

from batchout.config import Params
from batchout.io import write_text
from batchout.paths import Paths

MARKER_TEXT = "params.yaml passed the schema check (batchout.config.Params)\n"  # constant: see the docstring


def run(params: Params, paths: Paths) -> dict[str, Any]:
    """Write the marker for valid ``params``; returns what was checked."""
    write_text(paths.params_valid, MARKER_TEXT)
    return {"arms": len(params.train.all_runs()), "runs": len(params.train.run_names()),
            "datasets": list(params.data.datasets), "attacks": list(params.attack.attacks)}
