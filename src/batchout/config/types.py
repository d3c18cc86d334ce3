"""Field types the params sections share: pixel budgets that accept "8/255", devices, and names
checked against the registries.

Usage: ``class RunSpec(Strict): model: ModelName; adv_eps: PixelFloat | None = None``

Model, method, attack and data set names are checked against their registries (``batchout.models``,
``batchout.layers``, ``batchout.attacks``, ``batchout.data.sources``), imported when a name is
validated: registering a model makes it usable in params.yaml without touching the schema.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


def registered(kind: str) -> tuple[str, ...]:
    """The names a registry holds; imported on demand (the model and attack registries import torch)."""
    if kind == "model":
        from batchout.models import list_models
        return tuple(list_models())
    if kind == "method":
        from batchout.layers import METHODS
        return METHODS
    if kind == "attack":
        from batchout.attacks import list_attacks
        return list_attacks()
    from batchout.data.sources import REGISTRY
    return tuple(REGISTRY)


def _one_of(kind: str) -> AfterValidator:
    def check(value: str) -> str:
        allowed = registered(kind)
        if value not in allowed:
            raise ValueError(f"unknown value {value!r}; allowed: {', '.join(allowed)}")
        return value
    return AfterValidator(check)


ModelName = Annotated[str, _one_of("model")]
MethodName = Annotated[str, _one_of("method")]


def _number(v: Any) -> Any:
    """Accept ``"8/255"`` as well as ``0.0314``: pixel budgets are usually written in 1/255 units."""
    if isinstance(v, str) and "/" in v:
        try:
            return float(Fraction(v.strip()))
        except (ValueError, ZeroDivisionError):
            return v
    return v


PixelFloat = Annotated[float, BeforeValidator(_number), Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_device(device: str, key: str) -> None:
    ok = device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    if not ok:
        raise ValueError(f"{key}: got {device!r}; allowed: auto, cpu, cuda, cuda:N")


def check_attack_settings(name: str, settings: dict[str, Any]) -> None:
    """Build attack ``name`` on a stand-in model, so a bad setting is refused when params.yaml is read,
    named by its params key (the attack names its own argument, ``pgd.steps``)."""
    from torch import nn

    from batchout.attacks import create_attack
    from batchout.errors import BatchoutError

    try:
        create_attack(name, nn.Identity(), **settings)
    except BatchoutError as err:
        raise ValueError(f"attacks.{err}") from None
