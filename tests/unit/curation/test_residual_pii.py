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
