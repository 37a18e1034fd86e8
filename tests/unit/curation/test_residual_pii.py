from tasks.curation.expectations import mask_residual_pii, residual_pii_kinds
from thaw.checksums import iban_ok, luhn_ok


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")


def test_structured_pii_is_found():
    assert residual_pii_kinds("mail me at jo.doe@example.com") == "EMAIL"
    assert residual_pii_kinds("card 4111 1111 1111 1111 please") == "CREDIT_CARD"
    assert residual_pii_kinds("from GB82WEST12345698765432") == "IBAN"
    assert residual_pii_kinds("call +1 212-555-0199 now") == "PHONE"


def test_placeholders_and_order_numbers_are_clean():
    assert residual_pii_kinds("order #603712 for <PHONE_NUMBER_8a41f2> and <EMAIL_ADDRESS_0d2c11>") == ""
    assert residual_pii_kinds("card 4111 1111 1111 1112") == ""  # fails Luhn: not a card


def test_masking_removes_the_value():
    masked = mask_residual_pii("write to jo.doe@example.com")
    assert "jo.doe" not in masked and "[EMAIL?]" in masked


def test_a_card_number_is_found_whatever_a_paste_put_between_its_digits():
    """No-break and thin spaces, dots, slashes, soft hyphens, zero-width spaces: the
    scrubber's pattern knows these now, and the residual check finds cards without it."""
    from thaw.pii.rules import structured_spans
    from thaw.pii.shapes import card_shapes

    for sep in ("\u00a0", "\u202f", ".", "/", "\u00ad", "\u200b", " - "):
        text = f"card {sep.join(['4111', '1111', '1111', '1111'])} thanks"
        assert residual_pii_kinds(text) == "CREDIT_CARD", repr(sep)
        assert card_shapes(text) and "[CREDIT_CARD?]" in mask_residual_pii(text)
        if len(sep) == 1:
            assert [k for _, _, k in structured_spans(text)] == ["CREDIT_CARD"], repr(sep)
    assert residual_pii_kinds("order 4111 1111 1111 1112 shipped") == ""  # not Luhn-valid
    assert residual_pii_kinds("version 1.2.3.4 of 2024/01/01") == ""


def test_dates_times_and_number_lists_are_not_taken_for_cards():
    from thaw.pii.shapes import card_shapes

    for text in (
        "at 2024-01-01 12:30:45 and 2023-12-31 23:59:59",
        ", ".join(str(i) for i in range(40)),
        "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6",
    ):
        assert card_shapes(text) == [], text
