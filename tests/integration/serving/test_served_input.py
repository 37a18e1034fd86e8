"""The served model sees what it trained on: raw text is scrubbed by the same detector
curation ran, PII becoming entity types, and text curation already scrubbed passes
through unchanged. What model.json says about scrubbing is validated before use."""

import json

import numpy as np
import pytest

from thaw.config import BackboneConfig, PiiConfig
from thaw.errors import UserError
from thaw.pii.detector import PiiDetector, PiiSecret, scrub_texts
from thaw.pii.masking import (
    clear_cache,
    detector_for,
    input_form,
    mask_texts,
    served_max_chars,
    served_pii_config,
)
from thaw.text_form import PSEUDONYM, cut_scrubbed, model_text

RAW = [
    "Hi, I am Maria Gonzalez, mail maria.gonzalez@example.com or call +1 312-545-3252 about my refund",
    "card 4111 1111 1111 1111 was\u00a0blocked, please help",
    "password reset please",
    "Привет, Olga Ivanova here, order 88121 never arrived",
]


def test_raw_text_becomes_entity_types_and_scrubbed_text_stays_as_it_is():
    cfg = PiiConfig()
    masked = mask_texts(RAW, cfg)
    assert "<PERSON>" in masked[0] and "<EMAIL_ADDRESS>" in masked[0] and "<PHONE_NUMBER>" in masked[0]
    assert "Maria" not in masked[0] and "4111" not in masked[1] and "<CREDIT_CARD>" in masked[1]
    assert masked[2] == RAW[2]
    curated = list(scrub_texts(RAW, PiiDetector(cfg), PiiSecret(b"k" * 32, "test")))
    assert "<PERSON_" in curated[0]
    assert mask_texts(curated, cfg) == masked  # what evaluation scores is what serving predicts on
    assert mask_texts(masked, cfg) == masked
    assert mask_texts(RAW, None)[0] == RAW[0]  # a model trained on unscrubbed text gets text as it is


def test_clearing_the_cache_forgets_masked_texts_and_on_request_the_detector():
    """A cost measured twice in one process (bench.ladder's two regimes of one test file)
    pays for scrubbing, and for the detector's load, each time."""
    cfg = PiiConfig()
    mask_texts(RAW[:1], cfg)
    detector = detector_for(cfg)
    clear_cache()
    assert detector_for(cfg) is detector  # a latency measurement keeps the loaded detector
    calls = []
    detect = detector.detect
    detector.detect = lambda views: calls.append(len(views)) or detect(views)
    try:
        mask_texts(RAW[:1], cfg)
        assert calls == [1]  # scrubbed again, not read back
        mask_texts(RAW[:1], cfg)
        assert calls == [1]  # until the cache is cleared, read back
    finally:
        del detector.detect
    clear_cache(detectors=True)
    assert detector_for(cfg) is not detector


def test_a_long_field_is_masked_in_one_pass():
    long = "refund please " * 7000 + "from Maria Gonzalez"
    (masked,) = mask_texts([long], PiiConfig())
    assert "Gonzalez" not in masked and masked.startswith("refund please refund") and masked.endswith(">")


@pytest.mark.parametrize(
    "recorded,needle",
    [
        ("PERSON", "must be a mapping"),
        ({"pii_entities": "PERSON"}, "pii_entities must be a list"),
        ({"pii_entities": ["PERSON", "os.system('x')"]}, "not a plain name"),
        ({"pii_entities": ["PERSON"], "pii_disabled_recognizers": ["../../x"]}, "not a plain name"),
        ({"pii_entities": ["X"] * 65}, "at most 64"),
        ({"pii_entities": ["PERSON"], "pii_score_threshold": "0.4; rm"}, "between 0 and 1"),
    ],
)
def test_what_model_json_says_about_scrubbing_is_validated(recorded, needle):
    with pytest.raises(UserError, match=needle) as err:
        served_pii_config(recorded, "v3/model.json")
    assert str(err.value).startswith("v3/model.json")


def test_the_recorded_form_round_trips_and_no_entities_means_no_detector():
    cfg = PiiConfig(entities=("PERSON", "EMAIL_ADDRESS"), disabled_recognizers=("addresses",))
    recorded = json.loads(json.dumps(input_form(cfg, 2000)))
    back = served_pii_config(recorded, "m")
    assert back.entities == cfg.entities and back.spacy_model == PiiConfig().spacy_model
    assert served_max_chars(recorded, "m") == 2000 and served_max_chars({"pii_entities": []}, "m") is None
    assert served_pii_config(None, "m") is None and served_pii_config({"pii_entities": []}, "m") is None


def _frozen_model(directory, tiny_encoder, **meta):
    """A frozen-rung model on the test encoder, a random head, ``meta`` added to its model.json."""
    from tasks.ladder.frozen_rung import save_linear_head
    from thaw.modeling import resolve_backbone

    ref, _ = resolve_backbone(BackboneConfig(path=tiny_encoder))
    base = {
        "rung": "frozen",
        "kind": "head_on_frozen_encoder",
        "backbone": json.loads(ref.to_json()),
        "pooling": "mean",
    }
    rng = np.random.default_rng(0)
    save_linear_head(directory, rng.normal(size=(2, 32)), rng.normal(size=2), ("a", "b"), base | meta)
    return directory


def test_the_predictor_gives_raw_and_curated_text_the_same_answer(tiny_encoder, tmp_path):
    from thaw.serving import ThawPredictor

    predictor = ThawPredictor(
        _frozen_model(tmp_path / "m", tiny_encoder, max_length=64, input_form=input_form(PiiConfig(), 2000))
    )
    curated = list(scrub_texts(RAW, PiiDetector(PiiConfig()), PiiSecret(b"other key", "test")))
    assert np.allclose(predictor.probabilities(RAW), predictor.probabilities(curated), atol=1e-5)
    assert predictor.model_inputs(RAW[:1])[0].startswith("Hi, I am <PERSON>")


def test_a_model_json_asking_for_more_tokens_than_its_backbone_reads_is_refused_at_load(tiny_encoder, tmp_path):
    from thaw.serving import ThawPredictor

    long_text = "refund my order please " * 100  # past 128 tokens: cut at 128, not an index error
    fits = ThawPredictor(_frozen_model(tmp_path / "fits", tiny_encoder, max_length=128))
    assert fits.probabilities([long_text]).shape == (1, 2)
    with pytest.raises(UserError, match="backbone.max_length is 256, but backbone .* reads at most 128 tokens"):
        ThawPredictor(_frozen_model(tmp_path / "past", tiny_encoder, max_length=256))


def test_a_served_text_is_cut_where_curation_cut_its_training_text():
    """Curation scrubs each text to keyed pseudonyms and then cuts it to
    data.max_text_chars; the model reads that with entity types. A served text, given the
    limit its model.json records, is cut at the same place: its words past the cut were
    never in a training row (a 100,000-character field was read whole)."""
    cfg = PiiConfig()
    raw = RAW[0] + " and " + RAW[1] + " " + "where is it now " * 20
    (keyed,) = scrub_texts([raw], PiiDetector(cfg), PiiSecret(b"k" * 32, "test"))
    inside = {i for m in PSEUDONYM.finditer(keyed) for i in range(m.start() + 1, m.end())}
    limits = [n for n in range(1, len(keyed) + 20) if n not in inside]
    assert len(limits) > 150
    for limit in limits:
        assert mask_texts([raw], cfg, limit) == [model_text(keyed[:limit])], limit
    for limit in sorted(inside):  # a cut inside a pseudonym ends before it, on both sides
        assert mask_texts([raw], cfg, limit) == [model_text(cut_scrubbed(keyed, limit))], limit
        assert not mask_texts([raw], cfg, limit)[0].endswith(tuple("0123456789abcdef_")), limit
    assert mask_texts([raw], None, 30) == [model_text(raw[:30])]  # trained on text not scrubbed: cut as it is
    assert mask_texts(RAW, cfg, 100_000) == mask_texts(RAW, cfg)  # shorter texts are as they were


@pytest.mark.parametrize("value", [0, -5, True, "2000", 2.5, 10**9])
def test_a_recorded_length_that_thaw_would_not_write_is_refused(value):
    with pytest.raises(UserError, match="v3/model.json: input_form.max_text_chars must be a whole number"):
        served_max_chars({"pii_entities": ["PERSON"], "max_text_chars": value}, "v3/model.json")


def test_the_predictor_answers_a_long_raw_text_as_its_curated_form(tiny_encoder, tmp_path):
    from thaw.serving import ThawPredictor

    limit = 60
    predictor = ThawPredictor(
        _frozen_model(tmp_path / "m", tiny_encoder, max_length=128, input_form=input_form(PiiConfig(), limit))
    )
    raw = [RAW[0] + " zebra quokka" * 8000, RAW[2]]  # the first: 104,096 characters
    scrubbed = scrub_texts(raw, PiiDetector(PiiConfig()), PiiSecret(b"other key", "test"))
    curated = [cut_scrubbed(t, limit) for t in scrubbed]  # as curation cuts
    assert predictor.model_inputs(raw) == [model_text(t) for t in curated]
    assert predictor.model_inputs(curated) == [model_text(t) for t in curated]  # what evaluation scores: not cut again
    assert np.allclose(predictor.probabilities(raw), predictor.probabilities(curated), atol=1e-5)
