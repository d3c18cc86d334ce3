"""System metrics of a run: CPU %, memory, disk and network, plus GPU utilisation, memory and power
through NVML when ``nvidia-ml-py`` is installed (``pip install -e '.[gpu]'``), logged as
``system/<name>`` metrics by MLflow's SystemMetricsMonitor from a daemon thread.

Usage: ``with system_metrics(run_id, sampling_interval_s(epochs * n_train)): train()``;
``start_run(..., system_metrics_s=2.0)`` does this for the run it opens.

The thread is stopped and joined when the block exits, however it exits (error, Ctrl-C, SIGTERM),
so no sampler outlives its run. MLflow's own ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` environment
variable, when set, overrides the interval chosen here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import mlflow
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

SHORT_INTERVAL_S = 2.0  # a quick-profile run lasts ~6 s: 2 s gives it a few points
LONG_INTERVAL_S = 10.0  # MLflow's default: a paper run lasts hours, 360 points an hour is plenty
LONG_RUN_IMAGE_EPOCHS = 200_000  # quick profile: 6000 x 3; paper: 45000-55000 x 30-60


def sampling_interval_s(image_epochs: int) -> float:
    """Seconds between samples for a run that trains ``image_epochs`` images (examples x epochs)."""
    return LONG_INTERVAL_S if image_epochs > LONG_RUN_IMAGE_EPOCHS else SHORT_INTERVAL_S


def _quiet() -> None:
    # Four INFO lines per run (GPU skipped, started, stopping, terminated) would drown the stage's output.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)


@contextlib.contextmanager
def system_metrics(run_id: str, interval_s: float, resume: bool = False) -> Iterator[None]:
    """Sample every ``interval_s`` seconds (one logged point per sample) while the block runs;
    ``resume``: a resumed run continues its earlier steps instead of restarting at 0."""
    _quiet()
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, samples_before_logging=1,
                                   resume_logging=resume, tracking_uri=mlflow.get_tracking_uri())
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()  # sets the stop event, joins the thread and flushes its last batch
