"""The attack base class: model handling, bounds and input checks shared by every attack.

Usage: ``@register_attack("mine") class MyAttack(Attack): def perturb(self, x, y, eps): ...``; then
``x_adv = MyAttack(model)(x, y, eps)`` (or ``batchout.attacks.registry.create_attack("mine", model)``)

Every attack works in pixel space: the model takes images in [0, 1] (normalization is its first
layer), eps is an L-infinity budget in the same [0, 1] units, and ``x_adv`` is always projected
back to ``[0, 1]`` and to the eps ball around ``x``.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from batchout.errors import BatchoutError
from batchout.modes import fp32_region, frozen
from batchout.names import ATTACKS, check_listed

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example ``z_y - max_{i != y} z_i``: positive while the example is classified correctly."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return z_y - others.amax(dim=1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed over the batch in one fused kernel (only the sum's input gradient is ever used)."""
    return F.cross_entropy(logits, y, reduction="sum")


def project(x_adv: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Clip into the box ``[lo, hi]``, where ``lo = max(x - eps, 0)`` and ``hi = min(x + eps, 1)``."""
    return torch.clamp(x_adv, lo, hi)


def box(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The feasible set of an L-infinity attack on [0, 1] images, as elementwise bounds."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


A = TypeVar("A", bound="type[Attack]")
_REGISTRY: dict[str, type[Attack]] = {}  # name -> class, filled as attack modules are imported


def register_attack(name: str) -> Callable[[A], A]:
    """Class decorator: make the attack available as ``name`` (a params.yaml key, listed in
    ``batchout.names.ATTACKS``). Here, not in ``registry``, so that an attack module imports only this
    file: adversarial training, which runs FGSM or PGD, depends on those two files and this one."""
    check_listed("attack", name, ATTACKS)

    def deco(cls: A) -> A:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attack {name!r} registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


class Attack:
    """Base of every attack: ``attack(x, y, eps) -> x_adv``.

    The call puts the model in eval mode with frozen parameters (both restored afterwards), runs
    with autocast off (fp32), never modifies ``x`` in place, and projects the result onto
    ``[0, 1]`` and the eps ball as a safety net. Subclasses implement :meth:`perturb`.
    """

    name: ClassVar[str] = "attack"  # the registry's name (params.yaml key)
    label: ClassVar[str] = "attack"  # how a report writes it: "PGD", "APGD-CE"

    def __init__(self, model: nn.Module, **settings: Any) -> None:
        self.model = model
        self.settings = settings

    @classmethod
    def accepted(cls) -> dict[str, Any]:
        """The settings this attack accepts, with their defaults (the paper defaults)."""
        params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # skip self, model
        return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    @classmethod
    def build(cls, model: nn.Module, **settings: Any) -> Attack:
        """``cls(model, **settings)``; an unknown setting is a one-line error naming the allowed ones."""
        allowed = cls.accepted()
        for key in settings:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                names = ", ".join(allowed) or "(none)"
                raise BatchoutError(f"{cls.name}.{key}: unknown setting; {hint}allowed: {names}")
        return cls(model, **settings)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({inner})"

    def __call__(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        eps = check_eps(eps)
        _check_batch(x, y)
        # Inference tensors (made under torch.inference_mode) cannot enter autograd; clones made
        # outside inference mode are ordinary tensors.
        with torch.inference_mode(False), torch.enable_grad(), frozen(self.model), fp32_region(x.device):
            x0 = x.detach().clone()
            y0 = y.detach().clone().long()
            if eps == 0.0:
                return x0
            x_adv = self.perturb(x0, y0, eps).detach()
            lo, hi = box(x0, eps)
            return project(x_adv, lo, hi)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        """The attack and its budget in words, for a report: "PGD 40 steps x 2 restarts", "APGD-T 3x10"
        (targets x steps), "Square 100 queries"."""
        s = self.settings
        words = [self.label]
        if s.get("steps") is not None:
            words.append(f"{s['n_targets']}x{s['steps']}" if s.get("n_targets") else f"{s['steps']} steps")
        if s.get("restarts", 1) > 1:
            words.append(f"x {s['restarts']} restarts")
        if s.get("n_queries") is not None:
            words.append(f"{s['n_queries']} queries")
        return " ".join(words)

    def budget(self) -> dict[str, Any]:
        """The settings a result rests on (an ensemble: each member's)."""
        return dict(self.settings)

    def parts(self) -> dict[str, Attack]:
        """The attacks a cascade of this one runs, in order (an ensemble: its members; else itself)."""
        return {self.name: self}

    def gradient_budget(self) -> tuple[int, int]:
        """(restarts, steps) of this attack's gradient steps (1, 1 for one step or none)."""
        return self.settings.get("restarts") or 1, self.settings.get("steps") or 1

    def escalated(self, cap: Mapping[str, int], classes: int) -> Attack | None:
        """The same attack with its budget doubled, for the next round of an escalation: steps, targets (at
        most ``classes - 1``) and queries, each up to ``cap``; once none of them can grow, the restarts (up
        to ``cap["restarts"]``). A setting is never lowered to the cap. None: nothing can grow (at the cap,
        or the attack has no budget, like FGSM)."""
        grown = _doubled(self.settings, GROWS, cap, classes) or _doubled(self.settings, ("restarts",), cap, classes)
        if grown is None:
            return None
        try:
            return type(self)(self.model, **grown)
        except BatchoutError:  # a budget this attack refuses (DeepFool stops at 5 steps): it is at its cap
            return None

    def input_grad(self, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed per-example loss with respect to ``x``, and the logits.

        ``loss_fn`` returns per-example losses or their sum: summing (never averaging) keeps each
        example's gradient independent of the batch size. A model whose output does not depend on
        ``x`` through autograd (a masked model) yields zeros."""
        x = x.detach().requires_grad_(True)
        logits = self.model(x).float()
        loss = loss_fn(logits, y)
        loss = loss.sum() if loss.dim() else loss
        grad = None
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
        return (torch.zeros_like(x) if grad is None else grad), logits.detach()

    # ------------------------------------------------------------------ setting checks
    def check_int(self, key: str, value: Any, low: int, high: int | None = None) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        ok = ok and (high is None or value <= high)
        if not ok:
            allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
            raise BatchoutError(f"{self.key(key)}: got {value!r}; allowed: {allowed}")
        return value

    def check_float(self, key: str, value: Any, low: float, high: float, *, none_ok: bool = False) -> float | None:
        if value is None and none_ok:
            return None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and low <= value <= high):
            extra = " or null" if none_ok else ""
            raise BatchoutError(f"{self.key(key)}: got {value!r}; allowed: a number in [{low}, {high}]{extra}")
        return float(value)

    def check_bool(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise BatchoutError(f"{self.key(key)}: got {value!r}; allowed: true or false")
        return value

    def key(self, setting: str) -> str:
        """How errors name a constructor argument: ``pgd.steps`` (params.yaml adds ``attack.attacks.``)."""
        return f"{self.name}.{setting}"


GROWS = ("steps", "n_targets", "n_queries")  # what an escalation round doubles first; then "restarts"


def _doubled(settings: Mapping[str, Any], keys: tuple[str, ...], cap: Mapping[str, int],
             classes: int) -> dict[str, Any] | None:
    """``settings`` with each of ``keys`` it has doubled up to its cap (targets: at most ``classes - 1``);
    None when none of them grew."""
    out, grew = dict(settings), False
    for key in keys:
        value = settings.get(key)
        if value is None or key not in cap:
            continue
        limit = min(cap[key], classes - 1) if key == "n_targets" else cap[key]
        out[key] = max(value, min(2 * value, limit))
        grew |= out[key] > value
    return out if grew else None


def check_eps(eps: Any) -> float:
    number = isinstance(eps, int | float) and not isinstance(eps, bool)
    if not (number and 0.0 <= eps <= 1.0):
        raise BatchoutError(f"eps: got {eps!r}; allowed: a pixel budget in [0, 1] (e.g. 0.3 or 8/255)")
    return float(eps)


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if not (torch.is_tensor(x) and x.is_floating_point() and x.dim() >= 2):
        got = f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
        raise BatchoutError(f"attack input x: got {got}; allowed: a float tensor N x ... of pixels in [0, 1]")
    if not (torch.is_tensor(y) and y.shape == x.shape[:1]):
        got = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
        raise BatchoutError(f"attack labels y: got shape {got}; allowed: one label per image ({len(x)})")
