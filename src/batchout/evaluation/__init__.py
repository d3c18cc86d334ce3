"""Evaluation: clean accuracy and accuracy under attack over an eps grid (``robust``), and the
gradient-masking checks that say whether those numbers can be trusted (``checks``).

Usage: ``from batchout.evaluation.robust import robust_grid``;
``grid = robust_grid(model, x, y, {"pgd": {"steps": 10}}, [0.1], 500, "cpu")``

Tensors in, JSON-ready dicts out: no files, no MLflow, no training. Every evaluation runs the model
in eval mode and fp32 and gives the caller's mode back.
"""
