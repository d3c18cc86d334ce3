"""batchout: the library behind the pipeline (data, models, BatchOut layers, attacks, training,
evaluation, tracking). It knows nothing of typer or DVC.

Usage: ``from batchout.config import load_params``
"""

__version__ = "0.1.0"
