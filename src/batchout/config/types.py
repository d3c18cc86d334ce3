"""Field types the params sections share: pixel budgets that accept "8/255", devices, and names
checked against the registries.

Usage: ``class RunSpec(Strict): model: ModelName; adv_eps: PixelFloat | None = None``

Model, method, attack and data set names are checked against ``batchout.names``, the tables their
registries are checked against, so validating params.yaml imports no implementation: a stage then
depends (in dvc.yaml) only on the code it runs. An attack's settings are checked by building it
(``batchout.attacks.registry.check_settings``) in the ``validate_attacks`` stage and the attack stage.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from batchout.names import ATTACKS, DATASETS, METHODS, MODELS


def registered(kind: str) -> tuple[str, ...]:
    """The names a registry holds, from ``batchout.names`` (no implementation is imported)."""
    return {"model": MODELS, "method": METHODS, "attack": ATTACKS, "dataset": DATASETS}[kind]


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
