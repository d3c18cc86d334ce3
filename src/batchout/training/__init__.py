"""Training: the loop shared by the train stage, the Optuna objective and the tests (``loop``), its LR
schedule (``schedule``), on-device batch augmentation (``augment``), torchrun data parallelism
(``distributed``) and model files and resumable checkpoints on disk (``checkpoint``).

Usage: ``from batchout.training.loop import Split, fit; state = fit(model, train, val, cfg, device)``

Knows nothing of MLflow, Optuna or DVC: callers log through the ``on_epoch`` hook. May import
``models``, ``layers``, ``attacks`` (adversarial training) and ``evaluation`` (accuracy).
"""
