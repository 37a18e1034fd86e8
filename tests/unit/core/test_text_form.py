"""The model's text form (entity types for pseudonyms) and the words a domain measure
counts (letters only: no placeholders, punctuation or numbers)."""

from thaw.text_form import cut_scrubbed, domain_words, label_words, model_text


def test_the_model_sees_entity_types_and_never_the_key():
    scrubbed = "Hi, I am <PERSON_8b1531>; card <CREDIT_CARD_ffffff> at <EMAIL_ADDRESS_0a1b2c>."
    assert model_text(scrubbed) == "Hi, I am <PERSON>; card <CREDIT_CARD> at <EMAIL_ADDRESS>."
    assert model_text(model_text(scrubbed)) == model_text(scrubbed)
    assert model_text("a <b>bold</b> claim, x<y_123456>z") == "a <b>bold</b> claim, x<y_123456>z"  # not a pseudonym


def test_domain_words_leave_out_placeholders_punctuation_and_numbers():
    text = "Refund order #4521 for <PERSON_8b1531> and [NAME], 3x faster!! can't <URL> café\u00a0Привет"
    assert domain_words(text) == ["refund", "order", "for", "and", "x", "faster", "can't", "café", "привет"]
    assert domain_words("<PERSON_8b1531> <IBAN_CODE_000000> 12:30 -- ;)") == []


def test_pseudonyms_no_longer_read_as_a_domain_gap(tiny_encoder):
    from transformers import AutoTokenizer

    from tasks.ladder.assessment import fragmented_word_share

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    plain = ["refund my order please", "password reset help"]
    scrubbed = [f"{t} <PERSON_{i:06x}> <PHONE_NUMBER_{i + 7:06x}>, order 88121" for i, t in enumerate(plain)]
    assert fragmented_word_share(scrubbed, tokenizer) == fragmented_word_share(plain, tokenizer)
    assert fragmented_word_share(["zqxv wvut"], tokenizer) == 1.0  # letters the vocabulary lacks as words


def test_labels_read_as_words_only_when_they_are_words():
    """The few-shot rung adds a label as a training row when it reads as words; codes add nothing."""
    words = label_words(["book_flight", "card-arrival", "BookHotel", "top_up.failed", "rollover_401k", "w2", "返金"])
    assert words == {
        "book_flight": "book flight",
        "card-arrival": "card arrival",
        "BookHotel": "book hotel",
        "top_up.failed": "top up failed",
        "rollover_401k": "rollover 401k",
        "返金": "返金",
    }
    assert label_words(["LABEL_0", "LABEL_1", "LABEL_2"]) == {}  # the word they share is no name
    assert label_words(["class_a", "class_b"]) == {}
    assert label_words(["flight_book", "flight_cancel"]) == {
        "flight_book": "flight book",
        "flight_cancel": "flight cancel",
    }
    assert label_words(["4", "A12", "x_y", "", "  ", "pin#blocked", "Réclamation_client"]) == {
        "Réclamation_client": "réclamation client"
    }
    assert label_words(["admiration"]) == {"admiration": "admiration"}  # one label: nothing is shared by the others


def test_a_cut_ends_before_a_pseudonym_it_would_split():
    text = "refund <PERSON_8b1531> now <EMAIL_ADDRESS_000000>"
    assert cut_scrubbed(text, 100) == text and cut_scrubbed(text, len(text)) == text
    assert cut_scrubbed(text, 7) == "refund " == cut_scrubbed(text, 10) == cut_scrubbed(text, 21)
    assert cut_scrubbed(text, 22) == "refund <PERSON_8b1531>"
    assert cut_scrubbed(text, len(text) - 1) == "refund <PERSON_8b1531> now "
    assert cut_scrubbed("a <b> c <NOT A PSEUDONYM>", 12) == "a <b> c <NOT"  # only pseudonyms are kept whole
