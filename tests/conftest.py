"""Shared fixtures: the real params.yaml shrunk to tiny sizes, and the offline data mirror.

Usage: a test takes ``tiny_params`` or ``mirror`` as an argument.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from batchout.config import Params, load_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.manual_seed(0)
    yield


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def real_params() -> Params:
    return load_params(REPO / "params.yaml")


@pytest.fixture
def mirror() -> Path:
    """The read-only offline mirror named by BATCHOUT_DATA_MIRROR; tests needing it skip without it."""
    value = os.environ.get("BATCHOUT_DATA_MIRROR")
    if not value or not Path(value).is_dir():
        pytest.skip("BATCHOUT_DATA_MIRROR is not set to an existing folder")
    return Path(value)
