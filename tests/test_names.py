"""batchout.names, the tables params.yaml's names are checked against, equal the registries, and a
registry refuses a name its table lacks (so the two can never drift apart).

Usage: ``.venv/bin/pytest tests/test_names.py -q``
"""

from __future__ import annotations

import pytest

from batchout import names


def test_each_table_equals_its_registry():
    from batchout.attacks.registry import list_attacks
    from batchout.data.sources import REGISTRY
    from batchout.layers import METHODS
    from batchout.models import list_models

    assert sorted(names.MODELS) == list_models()
    assert sorted(names.ATTACKS) == list(list_attacks())
    assert tuple(REGISTRY) == names.DATASETS
    assert names.NUM_CLASSES == {name: len(source.classes) for name, source in REGISTRY.items()}
    assert METHODS is names.METHODS


@pytest.mark.parametrize("kind", ["model", "attack"])
def test_a_registry_refuses_a_name_missing_from_its_table(kind):
    from batchout.attacks.base import register_attack
    from batchout.models.registry import register_model

    register = register_model if kind == "model" else register_attack
    with pytest.raises(ValueError, match=rf"^{kind} 'unlisted' is not in batchout.names; add it there"):
        register("unlisted")
