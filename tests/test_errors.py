"""BatchoutError prints on one line whatever it was built from, so other tests need not re-check it.

Usage: ``.venv/bin/pytest -q tests/test_errors.py``
"""

from __future__ import annotations

import traceback

import pytest

from batchout.errors import BatchoutError, choice_msg


@pytest.mark.parametrize(
    ("message", "line"),
    [
        ("data.subset.train: must be >= 1,\n  got 0", "data.subset.train: must be >= 1, got 0"),
        ("\n  leading and trailing\r\n\t", "leading and trailing"),
        ("tabs\tand\r\nCRLF\x0bvertical\x0cform feeds", "tabs and CRLF vertical form feeds"),
        ("already one line; allowed: a, b", "already one line; allowed: a, b"),
    ],
)
def test_a_multi_line_message_prints_as_one_line(message, line):
    err = BatchoutError(message)
    assert str(err) == line
    assert err.exit_code == 2


def test_a_wrapped_multi_line_cause_stays_one_line():
    """What the stages do: a library's multi-line text (pydantic, YAML, OS errors) quoted in the message."""
    try:
        raise ValueError("1 validation error for Params\ntrain.epochs\n  Input should be greater than 0")
    except ValueError as cause:
        err = BatchoutError(f"params: {cause}")
    assert str(err) == "params: 1 validation error for Params train.epochs Input should be greater than 0"
    # the last line of a traceback, as Python prints an uncaught error
    assert traceback.format_exception_only(err) == [f"batchout.errors.BatchoutError: {err}\n"]


def test_choice_msg_is_one_line_and_lists_the_allowed_values():
    msg = choice_msg("train.device", "tpu\n", ("auto", "cpu", "cuda"))
    assert str(BatchoutError(msg)) == r"train.device: unknown value 'tpu\n'; allowed: auto, cpu, cuda"
