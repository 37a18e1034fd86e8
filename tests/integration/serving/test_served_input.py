"""The served model sees what it trained on: raw text is scrubbed by the same detector
curation ran, PII becoming entity types, and text curation already scrubbed passes
through unchanged. What model.json says about scrubbing is validated before use."""

import json

import numpy as np
import pytest

from thaw.config import BackboneConfig, PiiConfig
from thaw.errors import UserError
from thaw.pii.detector import PiiDetector, PiiSecret, scrub_texts
from thaw.pii.masking import clear_cache, detector_for, input_form, mask_texts, served_pii_config

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
    back = served_pii_config(json.loads(json.dumps(input_form(cfg))), "m")
    assert back.entities == cfg.entities and back.spacy_model == PiiConfig().spacy_model
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
        _frozen_model(tmp_path / "m", tiny_encoder, max_length=64, input_form=input_form(PiiConfig()))
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
