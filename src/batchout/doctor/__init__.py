"""``batchout doctor``: health checks of what the pipeline depends on (``checks``: interpreter,
packages, device, git/DVC, params, data; ``stores``: the MLflow store, the Optuna storage, disk),
each a :class:`~batchout.doctor.result.Check` with what was found and what to do.

Usage: ``from batchout.doctor import run, exit_code; checks = run(Path("."), quick=True)``

Pure: nothing printed, written or downloaded. Imports other subpackages only inside the checks that
need them, and never mlflow, optuna or torch at module level (``batchout doctor`` must start fast
and work when they are broken).
"""

from batchout.doctor.checks import run
from batchout.doctor.result import FAIL, OK, WARN, Check, exit_code

__all__ = ["FAIL", "OK", "WARN", "Check", "exit_code", "run"]
