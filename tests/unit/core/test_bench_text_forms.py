"""bench.text_forms compares the shipped text form with surrogates: every entity type
thaw scrubs by default must have a surrogate, or the probe would score a mix of forms."""

from __future__ import annotations

from bench.text_forms import SURROGATES, surrogates
from thaw.config import DEFAULT_PII_ENTITIES


def test_every_default_entity_type_has_a_surrogate():
    assert set(SURROGATES) == set(DEFAULT_PII_ENTITIES)


def test_surrogates_replace_entity_types_and_leave_other_placeholders():
    typed = "Hi <PERSON>, see <URL> or call <PHONE_NUMBER>. [NAME] wrote <TOKEN>."
    assert surrogates(typed) == "Hi Alex, see http://example.com or call 555-0100. [NAME] wrote <TOKEN>."
