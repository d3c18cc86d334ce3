"""Params for the tune tests' toy data set (an image folder data set named ``toy``).

Usage: ``from tune_toy import make_params; params = make_params(n_trials=2)``
"""

from __future__ import annotations

from batchout.config import parse_params


def make_params(**tune):
    """Params for the toy data set: tiny batches, CPU, a cheap PGD."""
    doc = {
        "data": {"datasets": ["toy"], "image_folders": {"toy": "raw/toy"}},
        "train": {"device": "cpu", "batch_size": 32, "eval_batch_size": 128},
        "tune": {"dataset": "toy", "n_trials": 3, "epochs": 2, "val_subset": 48, "attack_steps": 2,
                 "attack_eps": 0.1, **tune},
    }
    return parse_params(doc)
