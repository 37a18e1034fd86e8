"""The frozen rung: the backbone as it is, a head on its cached features
(``tasks.ladder.frozen_rung``). Always first: every later rung starts from its linear head."""

from thaw.rung_registry import FAR_DOMAIN, FEW_LABELS, MANY_LABELS, MODERATE, RungMethod, register_rung

FROZEN = register_rung(
    RungMethod(
        name="frozen",
        order=0,
        label="frozen backbone + head",
        planned_in=frozenset({FEW_LABELS, FAR_DOMAIN, MANY_LABELS, MODERATE}),
    )
)
