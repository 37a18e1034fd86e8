"""Checksums that tell a real card number or IBAN from a digit string that looks like one."""


def _luhn_sum(digits: str, double_first: bool) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if (i % 2 == 0) == double_first:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    return _luhn_sum(digits, double_first=False) % 10 == 0


def luhn_complete(payload: str) -> str:
    """``payload`` with the Luhn check digit appended."""
    return payload + str((10 - _luhn_sum(payload, double_first=True) % 10) % 10)


def iban_ok(candidate: str) -> bool:
    """True when the IBAN passes its ISO 7064 mod-97 check."""
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
