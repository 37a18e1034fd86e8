"""The served model's input form: raw text scrubbed by the same detector curation ran,
each PII span replaced by its entity type (``<PERSON>``), which is what the model trained
on (curated pseudonyms become entity types in ``thaw.text_form.model_text``).

What a model was scrubbed with is recorded in its ``model.json`` (``input_form``) when it
is trained and read back when it is served. That record is input like any other: only
entity names and recognizer names of a plain shape are accepted; the spaCy model is the
serving side's own, never a name taken from the file.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

from thaw.config import PiiConfig
from thaw.errors import UserError
from thaw.text_form import PLACEHOLDER, TEXT_FORM, cut_scrubbed, model_text

_ENTITY = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_RECOGNIZER = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_NAMES = 64
_DETECTORS: dict[str, object] = {}
_MASKED: OrderedDict[tuple[str, str], str] = OrderedDict()
# characters of masked text remembered per process (evaluation masks one test set for each
# rung it scores); bounded in characters, since a served field may be 100,000 of them
_MASKED_MAX_CHARS = 20_000_000
_masked_chars = [0]
# a keyed pseudonym's six hex digits (``thaw.pii.detector.pseudonym``): any six keep its
# length, which is all the cut needs; ``model_text`` then reads it as its entity type
_KEY_STAND_IN = "000000"
_MAX_TEXT_CHARS = 10_000_000  # a recorded length past this is not one thaw's config allows


def input_form(cfg: PiiConfig, max_text_chars: int) -> dict:
    """What ``model.json`` records of how the training text was scrubbed and cut."""
    return {
        "text_form": TEXT_FORM,
        "pii_entities": list(cfg.entities),
        "pii_disabled_recognizers": list(cfg.disabled_recognizers),
        "pii_score_threshold": cfg.score_threshold,
        "max_text_chars": max_text_chars,
    }


def served_max_chars(recorded: object, where: str) -> int | None:
    """The length a served model's training texts were cut to, validated; None when the
    model predates the record (it is then served whole, as it was before)."""
    if not isinstance(recorded, dict) or recorded.get("max_text_chars") is None:
        return None
    value = recorded["max_text_chars"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_TEXT_CHARS:
        raise UserError(f"{where}: input_form.max_text_chars must be a whole number from 1 to {_MAX_TEXT_CHARS:,}")
    return value


def served_pii_config(recorded: object, where: str) -> PiiConfig | None:
    """The detector settings a served model asks for, validated; None when its training
    text was not scrubbed (or the model predates the record)."""
    if recorded is None:
        return None
    if not isinstance(recorded, dict):
        raise UserError(f"{where}: input_form must be a mapping")
    entities = recorded.get("pii_entities") or []
    disabled = recorded.get("pii_disabled_recognizers") or []
    threshold = recorded.get("pii_score_threshold", PiiConfig().score_threshold)
    for name, values, shape in (
        ("pii_entities", entities, _ENTITY),
        ("pii_disabled_recognizers", disabled, _RECOGNIZER),
    ):
        if not isinstance(values, list) or len(values) > _MAX_NAMES:
            raise UserError(f"{where}: input_form.{name} must be a list of at most {_MAX_NAMES} names")
        bad = next((v for v in values if not isinstance(v, str) or not shape.fullmatch(v)), None)
        if bad is not None:
            raise UserError(f"{where}: input_form.{name} holds {str(bad)[:80]!r}, not a plain name")
    if not entities:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise UserError(f"{where}: input_form.pii_score_threshold must be a number between 0 and 1")
    from thaw.pii.recognizers import recognizer_names

    known = set(recognizer_names())  # a recognizer this process lacks is off anyway
    return PiiConfig(
        entities=tuple(entities),
        disabled_recognizers=tuple(d for d in disabled if d in known),
        score_threshold=float(threshold),
    )


def detector_for(cfg: PiiConfig):
    """The detector for ``cfg``, built once per process (spaCy and Presidio load in
    seconds: a server builds it when it loads the model, not on its first request)."""
    key = cfg.model_dump_json()
    if key not in _DETECTORS:
        from thaw.pii.detector import PiiDetector

        _DETECTORS[key] = PiiDetector(cfg)
    return _DETECTORS[key]


def clear_cache(detectors: bool = False) -> None:
    """Forget every masked text (a latency measurement must pay for scrubbing each time)
    and, with ``detectors``, the detectors built (a measurement of their load)."""
    _MASKED.clear()
    _masked_chars[0] = 0
    if detectors:
        _DETECTORS.clear()


def mask_texts(texts: Sequence[str], cfg: PiiConfig | None, max_chars: int | None = None) -> list[str]:
    """``texts`` in the model's text form: pseudonyms as entity types and, with ``cfg``,
    the PII the detector finds replaced by entity types too. Placeholders already in the
    text are hidden from the detector, so scrubbed text comes back as it went in.

    With ``max_chars`` (``data.max_text_chars`` of the rows the model trained on, from its
    ``model.json``) each text is cut where curation cut training text: after scrubbing, at
    ``max_chars`` characters of the scrubbed form, where each found span is a keyed
    pseudonym (``<PERSON_1a2b3c>``, as long whatever the key) before it becomes the entity
    type the model reads, and before a pseudonym the cut would split
    (``thaw.text_form.cut_scrubbed``). A served text is then no longer than any text the
    model learned from: its words past the cut were never in a training row."""
    if cfg is None:
        return [model_text(t if max_chars is None else cut_scrubbed(t, max_chars)) for t in texts]
    formed = [model_text(t) for t in texts]
    key = f"{cfg.model_dump_json()}|{max_chars}"
    done = {t: _MASKED[(key, t)] for t in dict.fromkeys(formed) if (key, t) in _MASKED}
    todo = [t for t in dict.fromkeys(formed) if t not in done]
    if todo:
        from thaw.pii.detector import replace_spans_with

        views = [PLACEHOLDER.sub(lambda m: " " * len(m.group()), t) for t in todo]
        for text, (spans, _) in zip(todo, detector_for(cfg).detect(views), strict=True):
            keyed = replace_spans_with(text, spans, lambda span, value: f"<{span.entity}_{_KEY_STAND_IN}>")
            done[text] = model_text(keyed if max_chars is None else cut_scrubbed(keyed, max_chars))
            _MASKED[(key, text)] = done[text]
            _masked_chars[0] += len(text) + len(done[text])
        while _masked_chars[0] > _MASKED_MAX_CHARS and _MASKED:
            (_, old), masked = _MASKED.popitem(last=False)
            _masked_chars[0] -= len(old) + len(masked)
    return [done[t] for t in formed]
