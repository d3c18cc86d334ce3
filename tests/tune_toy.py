"""Params for the tune tests' toy data set (an image folder data set named ``toy``).

Usage: ``from tune_toy import make_params; params = make_params(n_trials=2)``
"""

from __future__ import annotations

from batchout.config import parse_params

# The tune objective's ensemble at a test budget: APGD-CE 2 steps, Square 10 queries, escalated at most twice.
CHEAP_ATTACK = {"apgd_ce": {"steps": 2}, "apgd_t": False, "fab_t": False, "square": {"n_queries": 10}}
CHEAP_CONVERGE = {"tolerance": 1, "cap": {"steps": 8, "n_targets": 9, "n_queries": 40, "restarts": 1}}


def make_params(**tune):
    """Params for the toy data set: tiny batches, CPU, a cheap converged objective."""
    doc = {
        "data": {"datasets": ["toy"], "image_folders": {"toy": "raw/toy"}},
        "train": {"device": "cpu", "batch_size": 32, "eval_batch_size": 128},
        "tune": {"dataset": "toy", "n_trials": 3, "epochs": 2, "val_subset": 48, "attack": CHEAP_ATTACK,
                 "converge": CHEAP_CONVERGE, "attack_eps": 0.1, **tune},
    }
    return parse_params(doc)
