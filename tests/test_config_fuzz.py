"""Property test: any document is either valid params or refused with one line, never a crash."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchout.config import parse_params
from batchout.errors import BatchoutError

BASE = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["8/255", "1/0", "x/y", "auto", "cuda:7"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(BASE))


@st.composite
def mutated(draw):
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = doc
        for part in path[:-1]:
            node = node[part] if isinstance(node, dict) and isinstance(node.get(part), dict) else None
            if node is None:
                break
        if node is None:
            continue
        if draw(st.booleans()):
            node[path[-1]] = draw(values)
        else:
            node[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return doc


def _accepted_or_one_line(doc) -> None:
    try:
        parse_params(doc)
    except BatchoutError as err:
        msg = str(err)
        assert msg and "Traceback" not in msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_params_are_valid_or_refused_in_one_line(doc):
    _accepted_or_one_line(doc)


@settings(max_examples=100, deadline=None)
@given(values)
def test_any_document_shape(doc):
    _accepted_or_one_line(doc)
