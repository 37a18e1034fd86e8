"""The rungs of the adaptation ladder, registered in climbing order.

A rung is a ``RungMethod``: its name and place on the ladder, when the decision table
plans it, how reports label it, and, for a rung that trains the encoder, what it opens
(``surface``), its learning rates, its training loop's settings and its named training
phases. A rung is added the way PEFT adds a method (``register_peft_method``): one module
that calls ``register_rung``. thaw's own rungs are the modules of ``thaw.rung_methods``,
loaded on the first look-up; the configuration's rung list, the decision table, the
trainer and the reports all read this registry, so a new rung edits no other module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thaw.config import FineTuneConfig, LadderConfig

# The situations the decision table tells apart (``thaw.decision_table.regime``).
FEW_LABELS, FAR_DOMAIN, MANY_LABELS, MODERATE = "few_labels", "far_domain", "many_labels", "moderate"
REGIMES = (FEW_LABELS, FAR_DOMAIN, MANY_LABELS, MODERATE)
BUILTIN_PACKAGE = "thaw.rung_methods"


@dataclass(frozen=True)
class Phase:
    """One named step of a rung's training (the few-shot rung: ``train_embeddings`` then
    ``train_classifier``, as SetFit's trainer splits them). ``run`` gets the fit's state
    (``thaw.rung_methods.phases.FitState``) and changes its model in place."""

    name: str
    run: Callable[[Any], None]


@dataclass(frozen=True)
class RungMethod:
    """A rung of the ladder. ``open_surface`` (None for a rung that trains no encoder
    weight, the frozen one) makes the rung's encoder parameters trainable in a frozen
    model and returns (method, what stays frozen)."""

    name: str
    order: int  # place on the ladder: lower rungs are simpler and climbed first
    label: str  # how the transfer note and the model card name it
    planned_in: frozenset[str]  # regimes in which the decision table plans it
    first_in: frozenset[str] = frozenset()  # regimes in which it is the suggested first move
    open_surface: Callable[[Any, LadderConfig], tuple[str, str]] | None = None
    learning_rate: Callable[[LadderConfig], tuple[float, float]] | None = None  # (base rate, layer decay)
    loop: Callable[[LadderConfig], FineTuneConfig] | None = None  # the shared training loop's settings
    phases: tuple[Phase, ...] = ()
    # the method as reports print it, from the surface's method and the ladder settings
    describe: Callable[[str, LadderConfig], str] = field(default=lambda method, ladder: method)

    def __post_init__(self) -> None:
        unknown = (self.planned_in | self.first_in) - set(REGIMES)
        if unknown:
            raise ValueError(f"rung {self.name!r}: unknown regimes {sorted(unknown)}; known: {', '.join(REGIMES)}")
        trains = (self.open_surface, self.learning_rate, self.loop)
        if any(trains) and not (all(trains) and self.phases):
            raise ValueError(f"rung {self.name!r}: an adapted rung needs open_surface, learning_rate, loop and phases")

    @property
    def adapted(self) -> bool:
        """True when the rung trains encoder weights (every rung but the frozen one)."""
        return self.open_surface is not None


_RUNGS: dict[str, RungMethod] = {}
_builtin_loaded = False
_BUILTIN: set[str] = set()  # the rungs thaw.rung_methods registered


def register_rung(method: RungMethod) -> RungMethod:
    """Add ``method`` to the ladder; refuses a name or a place already taken."""
    for other in _RUNGS.values():
        if other.name != method.name and other.order == method.order:
            raise ValueError(f"rung {method.name!r}: place {method.order} is taken by {other.name!r}")
    if method.name in _RUNGS and _RUNGS[method.name] != method:
        raise ValueError(f"rung {method.name!r} is already registered")
    _RUNGS[method.name] = method
    return method


def unregister_rung(name: str) -> None:
    """Remove a rung (for tests that register one of their own)."""
    _RUNGS.pop(name, None)


def _load_builtin() -> None:
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        before = set(_RUNGS)
        importlib.import_module(BUILTIN_PACKAGE)  # each of its modules registers one rung
        _BUILTIN.update(set(_RUNGS) - before)


def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of thaw's own rungs, registered in every process that looks
    one up (a rung registered by a user's code exists only in the process that ran it)."""
    _load_builtin()
    return name in _BUILTIN


def rung_methods() -> tuple[RungMethod, ...]:
    """Every registered rung, in climbing order."""
    _load_builtin()
    return tuple(sorted(_RUNGS.values(), key=lambda m: m.order))


def rung_names() -> tuple[str, ...]:
    """Every registered rung's name, in climbing order."""
    return tuple(m.name for m in rung_methods())


def rung_method(name: str) -> RungMethod:
    """The registered rung ``name``; ValueError naming the registered ones otherwise."""
    _load_builtin()
    try:
        return _RUNGS[name]
    except KeyError:
        raise ValueError(f"unknown rung {name!r}; registered: {', '.join(rung_names())}") from None


def base_rung() -> str:
    """The rung every ladder starts with: the lowest registered one."""
    return rung_methods()[0].name
