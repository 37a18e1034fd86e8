"""thaw's own PII rules, beside Presidio's recognizers and spaCy's NER.

Pure functions over one text that return ``(start, end, entity)`` spans:

- ``structured_spans``: card numbers (Luhn), IBANs (mod 97), e-mail addresses and phone
  numbers in any national format. The residual-PII expectation runs exactly these after
  scrubbing, so anything it could flag was already offered to the scrubber.
- ``date_of_birth_spans``: full dates with a year.
- ``person_spans``: names after cue words (``my name is``, ``Name:``, titles, greetings,
  sign-offs, ``said``), ``First X. Last`` with a middle initial, and capitalised runs
  that start with a first name of the US census (``names`` package, pinned by digest).
- ``place_spans``: country and state names (ISO 3166, from ``pycountry``) and
  capitalised names after a place word (``lives in``, ``moved from``).
- ``propagate_names``: every other occurrence of a token of a detected name that is
  shaped like a name and that the text does not also write in lower case.

Street addresses and postal codes are in ``thaw.pii.addresses``.

Case and script: capitalised means an upper-case letter in any script (``\\p{Lu}``), so
"Ágatha", "Søren" and "ΠΑΦΟΣ" count. The rules run on ``plain_view(text)``, where a
literal ``\\n`` (text exported from JSON often keeps those) is a line break.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import regex

from thaw.checksums import iban_ok, luhn_ok
from thaw.pii.spans import Span, covered

# --- structured -----------------------------------------------------------------------

EMAIL_RX = regex.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# Between a card's digits: a space or hyphen as typed, a no-break or thin space as pasted
# from web pages, dots or slashes, and the invisible soft hyphen or zero-width characters.
CARD_SEPARATOR = "[ \\-\u00a0\u202f\u2009\u2007./\u00ad\u200b\u200c\u200d\u2060]"
CARD_RX = regex.compile(rf"(?<!\d)(?:\d{CARD_SEPARATOR}?){{11,18}}\d(?!\d)")
CARD_CUE_RX = regex.compile(r"(?i)\b(?:card|cc|credit|debit|visa|mastercard|maestro|amex|pan)\b")
IBAN_RX = regex.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# A phone number in any national or international layout: 7 to 15 digits in groups
# joined by spaces, dots, dashes or brackets, optionally after + or 00, optionally with
# an extension. Dates (2024-01-31, 31.01.2024) and plain long digit runs (order numbers)
# are not phones; a run with no separator counts only after a phone cue.
PHONE_RX = regex.compile(
    r"(?<![\w+#/.-])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]?\(?\d{1,5}\)?){1,6}(?:\s*(?:x|ext\.?)\s*\d{1,5})?"
    r"(?![\w/]|-\d)"
)
PHONE_CUE_RX = regex.compile(
    r"(?i)\b(?:(?:tele)?phone[sd]?|tel|mobile|cell|fax|call(?:s|ed|ing)?|ring(?:s|ing)?|rang|texts?|sms|"
    r"messages?|messaging|voicemail|whatsapp|signal|telegram|hotline|helpline|desk|office|number|no|"
    r"contact(?:ed)?|reach(?:ed)?|registered|dial(?:led)?|answer(?:s|ed|ing)?)\b"
)
DATE_LIKE_RX = regex.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def plain_view(text: str) -> str:
    """``text`` with each literal two-character ``\\n`` turned into a real line break and a
    space: the same length, so offsets found in the view are offsets in ``text``."""
    return text.replace("\\n", "\n ") if "\\n" in text else text


def structured_spans(text: str) -> list[Span]:
    """E-mail addresses, Luhn-valid card numbers, checksummed IBANs and phone numbers
    (``text`` as given or its ``plain_view``)."""
    spans: list[Span] = [Span(m.start(), m.end(), "EMAIL_ADDRESS") for m in EMAIL_RX.finditer(text)]
    for m in CARD_RX.finditer(text):
        digits = _digits(m.group())
        # 13-19 Luhn-valid digits anywhere; 12 (Maestro) only after a card word
        short_card = len(digits) == 12 and CARD_CUE_RX.search(text, max(0, m.start() - 30), m.start())
        if (13 <= len(digits) <= 19 or short_card) and luhn_ok(digits):
            spans.append(Span(m.start(), m.end(), "CREDIT_CARD"))
    spans += [Span(m.start(), m.end(), "IBAN_CODE") for m in IBAN_RX.finditer(text) if iban_ok(m.group())]
    spans += [Span(m.start(), m.end(), "PHONE_NUMBER") for m in CN_MOBILE_RX.finditer(text) if _in_chinese(text, m)]
    taken = [(s, e) for s, e, _ in spans]
    for m in PHONE_RX.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken) or not _phone_like(text, m):
            continue
        spans.append(Span(m.start(), m.end(), "PHONE_NUMBER"))
    return spans


# Chinese mobile numbers run on from the characters before them ("电话13800138000"), where
# no word boundary separates them for the general phone pattern.
CN_MOBILE_RX = regex.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")
_HAN = regex.compile(r"\p{Han}")


def _in_chinese(text: str, m: regex.Match) -> bool:
    return _HAN.search(text, max(0, m.start() - 8), m.start()) is not None


def _phone_like(text: str, m: regex.Match) -> bool:
    """7-15 digits, not a date; grouped in three or more, or with an international
    prefix, or 9+ digits in two groups; or near a phone word (then 6 digits in three
    groups will do: "35 88 32")."""
    value = m.group().strip()
    digits = _digits(value)
    if not 6 <= len(digits) <= 15 or DATE_LIKE_RX.match(value):
        return False
    groups = len(regex.findall(r"\d+", value))
    if len(digits) >= 7 and (value.startswith(("+", "00")) or groups >= 3 or (groups == 2 and len(digits) >= 9)):
        return True
    near = text[max(0, m.start() - 40) : m.start()] + " " + text[m.end() : m.end() + 12]
    return PHONE_CUE_RX.search(near) is not None and (len(digits) >= 7 or groups >= 3)


# English month names and their abbreviations ("Sept." too), as dates write them
MONTHS = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?)"
)
DATE_OF_BIRTH_RX = regex.compile(
    r"\b(?:(?:0?[1-9]|[12]\d|3[01])[/.-](?:0?[1-9]|1[0-2])|(?:0?[1-9]|1[0-2])[/.-](?:0?[1-9]|[12]\d|3[01]))"
    r"[/.-](?:19|20)\d{2}\b"
    r"|\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b"
    rf"|\b{MONTHS}\s+\d{{1,2}},?\s+(?:19|20)\d{{2}}\b"
    rf"|\b(?:0?[1-9]|[12]\d|3[01])\s+{MONTHS},?\s+(?:19|20)\d{{2}}\b"  # "20 Aug 2002", as mail headers write it
)


_YEAR = regex.compile(r"(?:19|20)\d\d")


def date_of_birth_spans(text: str) -> list[Span]:
    """Full dates with a year (a birth date is one; "yesterday" and "Monday" are not)."""
    if not _YEAR.search(text):
        return []
    return [Span(m.start(), m.end(), "DATE_OF_BIRTH") for m in DATE_OF_BIRTH_RX.finditer(text)]


# --- web addresses ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _url_rx() -> regex.Pattern:
    """Presidio's URL shapes (its top-level domains, scheme optional) as one pattern that
    starts only where a run of domain characters starts and takes at most 8 labels of 63:
    Presidio's own pattern retries a 253-character greedy run against ~670 domains at
    every position, 1.5 ms a character on "0.0.0.0..." (100,000 of them: minutes)."""
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    tlds = sorted(set(regex.findall(r"\(\?:([a-z0-9-]+)\)", UrlRecognizer.BASE_URL_REGEX)), key=lambda t: (-len(t), t))
    return regex.compile(
        r"(?i)(?<![\w.@-])(?:(?:https?|ftp)://(?:[^\s/?#@]{1,256}@)?)?(?:www\d{0,3}\.)?(?:[a-z0-9-]{1,63}\.){1,8}"
        rf"(?:{'|'.join(tlds)})(?![\w-])(?:[/?#][^\s<>\"']{{0,2048}})?"
    )


URL_HINT = regex.compile(r"(?i)[a-z0-9-]\.[a-z]{2}")


def url_spans(text: str) -> list[Span]:
    """Web addresses: with or without a scheme, ``www.``, a known top-level domain."""
    if not URL_HINT.search(text):
        return []
    return [Span(m.start(), m.end(), "URL") for m in _url_rx().finditer(text)]


# --- places and names -----------------------------------------------------------------

CAP = r"\p{Lu}[\p{Ll}\p{Lu}'’-]*"
NAME = r"\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)*"
INITIAL = r"\p{Lu}\.?"
NOT_NAMES = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
    "august september october november december i i'm i'd i've i'll the a an this that please thanks thank "
    "hello hi hey dear regards sincerely yes no ok okay sir madam team support customer service".split()
)


@functools.lru_cache(maxsize=1)
def place_names() -> frozenset[str]:
    """Country names (official, common and short) and the subdivisions of a few large
    federations, case-folded: ISO 3166 through ``pycountry``."""
    import pycountry

    names: set[str] = set()
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            value = getattr(country, attr, None)
            if value:
                names.add(value.split(",")[0])
    names |= {"USA", "U.S.A.", "UK", "U.K.", "Great Britain", "England", "Scotland", "Wales", "Czechia", "Holland"}
    for sub in pycountry.subdivisions:
        if sub.country_code in ("US", "CA", "AU", "IN", "BR", "MX", "DE") and sub.type in ("State", "Province", "Land"):
            names.add(sub.name)
    return frozenset(n.casefold() for n in names if len(n) >= 4 or n.isupper())


_PLACE_CANDIDATE = regex.compile(rf"{CAP}(?:[ -](?:and |of |the )?{CAP}){{0,3}}")


PLACE_CUES = (
    r"[Ll]ives? in|[Ll]iving in|[Mm]oved (?:here )?(?:from|to)|[Ff]rom|[Ii]n|[Aa]t|[Tt]o|[Bb]ased in|[Nn]ear|"
    r"[Vv]isit(?:ing|ed)?|[Tt]ravel(?:l?ing|l?ed)? to|[Ff]l(?:y|ew|ying) to|[Aa]rrived? (?:at|in)|[Bb]orn in"
)
PLACE_JOINERS = r"u|pri|de|del|della|di|da|do|dos|la|le|les|sur|am|im|upon|na|nad|pod"
_PLACE_AFTER_CUE = regex.compile(
    rf"(?<=\b(?:{PLACE_CUES})\s+)({CAP}(?:[ -]{CAP}|[ -](?:{PLACE_JOINERS})[ -]{CAP}|\s\p{{Lu}}\b){{0,3}})"
)
NOT_PLACES = NOT_NAMES | frozenset(
    "english french german spanish italian chinese japanese christmas easter covid internet google amazon "
    "paypal visa mastercard apple microsoft facebook twitter app email".split()
)


def place_spans(text: str) -> list[Span]:
    """Country and state names written with capitals ("Spain", "NEW ZEALAND"), and
    capitalised names after a place word ("lives in DUNDULA", "moved here from Casola")."""
    spans = _known_places(text)
    for m in _PLACE_AFTER_CUE.finditer(text):
        if m.group(1).split()[0].casefold() not in NOT_PLACES:
            spans.append(Span(m.start(1), m.end(1), "LOCATION"))
    return spans


def _known_places(text: str) -> list[Span]:
    known = place_names()
    spans = []
    for m in _PLACE_CANDIDATE.finditer(text):
        words = m.group().split(" ")
        for size in range(len(words), 0, -1):  # the longest known name inside the run
            for first in range(len(words) - size + 1):
                phrase = " ".join(words[first : first + size])
                if phrase.casefold() in known:
                    start = m.start() + len(" ".join(words[:first])) + (1 if first else 0)
                    spans.append(Span(start, start + len(phrase), "LOCATION"))
            if spans and spans[-1][0] >= m.start():
                break
    return spans


# First names of the US 1990 census (the ``names`` package, MIT): files pinned by digest.
FIRST_NAME_FILES = {
    "dist.male.first": "0a5078ef6effe3b483d15b0f7f95047662126c9bfb624ecd5e5b978fc0f2470b",
    "dist.female.first": "bd2f310fc4e5d5e5ea122c9d4342c9821145823118eb20db1647f305ec77b358",
}
# First names that are also common English words: a name only beside another name.
WORDLIKE_NAMES = frozenset(
    "will may mark bill grant hope faith joy rose june april august art guy frank dean rich page lane case bell "
    "gene sue pat ray don sunny summer autumn dawn eve chance honor honey jewel star crystal amber angel "
    "ruby pearl iris ivy holly daisy lily violet hazel olive ginger sandy misty brandy candy penny cherry "
    "major king prince duke earl baron lord bishop carol christian lance jack jimmy bob rob sterling "
    "wade miles max price long young white black brown green gray grey love wood hill stone bear wolf fox "
    "buck cole cliff drew dale glen rod chase hunter hunt gay sol son sky rain storm river "
    "mason tanner taylor parker porter cooper baker carter fisher walker "
    "in an to is it be he me we us so no go do on or of at by my up as if am".split()
)


@functools.lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    """Case-folded first names of the US 1990 census, less those that are English words."""
    import hashlib
    from importlib.resources import files

    out: set[str] = set()
    for name, digest in FIRST_NAME_FILES.items():
        blob = files("names").joinpath(name).read_bytes()
        if hashlib.sha256(blob).hexdigest() != digest:
            raise RuntimeError(f"names/{name} does not match its recorded sha256 {digest[:12]}")
        out |= {line.split()[0].casefold() for line in blob.decode().splitlines() if line.strip()}
    return frozenset(out - WORDLIKE_NAMES)


PERSON_CUES = regex.compile(
    r"(?:\b(?:[Mm]y name is|[Nn]ame is|[Nn]ame\s*[:?]|[Nn]amed(?: him| her)?|[Cc]all(?:s)? me|[Cc]alled|"
    r"[Tt]his is|[Ii] am|[Ii]'m|[Ss]aid|[Ss]peak (?:to|with)|[Aa]sk for|[Dd]ear|[Hh]i|[Hh]ello|[Hh]ey|"
    r"[Tt]hanks|[Rr]egards|[Ss]incerely|[Cc]heers|[Bb]est|[Yy]ours|[Ff]rom|[Bb]y|[Ww]ith|[Tt]o|[Aa]nd|under)"
    r"[,:?]?\s+)"
)
TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau|Sr|Sra)\.?"
_TITLED = regex.compile(rf"\b{TITLE}\s+((?:{NAME}|{INITIAL})(?:\s+(?:{NAME}|{INITIAL})){{0,3}})")
_WITH_INITIAL = regex.compile(rf"\b{NAME}\s+{INITIAL}\s+{NAME}\b")
_AFTER_CUE = regex.compile(rf"(?<={PERSON_CUES.pattern})({NAME}(?:\s+(?:{NAME}|{INITIAL})){{0,2}})")
# a dash sign-off ending its line or clause: "... thanks - Kwame Dubois", "- Lukas Rossi, and also"
_SIGNED = regex.compile(rf"(?m)(?:^|\s)[-–—~]\s*({NAME}(?:\s+(?:{INITIAL}\s+)?{NAME}){{0,2}})(?=\s*(?:$|[,.;!]))")
# After these weak cues a name must have two parts ("to Tamara Olsen", not "to London").
_WEAK_CUES = ("from", "by", "with", "to", "and", "under")


_NAME_RUN = regex.compile(rf"{NAME}(?:\s+(?:{INITIAL}\s+)?{NAME}){{0,2}}")

# A self-introduction, whatever the case or script of the name that follows it: "this is
# john smith", "my name is محمد عبد الله", "меня зовут Иван", "это Иван", "我叫王小明".
# After a cue that names ("my name is") any script will do; after one that may not ("this
# is", "это", "أنا": also "this is fine") only a capitalised Cyrillic or Greek word.
_NAMING_CUE = r"(?i:\b(?:my name is|name is|call me)|меня зовут|зовут|اسمي|שמי)"
_WEAK_INTRO = r"(?i:\b(?:this is|i am|i'm)|это|я)"
SCRIPT_WORD = r"[\p{Cyrillic}\p{Arabic}\p{Hebrew}\p{Greek}\p{Devanagari}\p{Thai}\p{Hangul}]{2,}"
CASED_WORD = r"(?=[\p{Cyrillic}\p{Greek}])\p{Lu}[\p{Cyrillic}\p{Greek}]+"
_INTRO_OTHER_SCRIPT = regex.compile(
    rf"{_NAMING_CUE}[,:]?\s+({SCRIPT_WORD}(?:\s+{SCRIPT_WORD}){{0,2}})"
    rf"|{_WEAK_INTRO}[,:]?\s+({CASED_WORD}(?:\s+{CASED_WORD}){{0,2}})"
)
_INTRO_LOWER = regex.compile(r"(?i:\b(?:my name is|this is|i am|i'm|call me))\s+(\p{Ll}+(?:\s+\p{Ll}+)?)")
_HAN_INTRO = regex.compile(r"(?:我叫|叫我|我的名字是|名字是|我姓)\s*(\p{Han}{2,3})")


def intro_spans(text: str) -> list[Span]:
    """Names after a self-introduction in another script, in Chinese, or in lower case
    (then only when the first word is a known first name and the next is no stop word)."""
    spans = [Span(m.start(1), m.end(1), "PERSON") for m in _HAN_INTRO.finditer(text)]
    for m in _INTRO_OTHER_SCRIPT.finditer(text):
        group = 1 if m.group(1) else 2
        spans.append(Span(m.start(group), m.end(group), "PERSON"))
    known = first_names()
    for m in _INTRO_LOWER.finditer(text):
        words = m.group(1).split()
        if words[0] not in known or words[0] in NOT_NAMES:
            continue
        end = (
            m.end(1)
            if len(words) > 1 and words[1] not in NOT_NAMES and words[1] not in _LOWER_STOP
            else m.start(1) + len(words[0])
        )
        spans.append(Span(m.start(1), end, "PERSON"))
    return spans


_LOWER_STOP = frozenset("from of at in on the and or but with for to is was here there calling about".split())


def person_spans(text: str) -> list[Span]:
    """Names after a title, a cue word or a sign-off dash, with a middle initial, and runs
    of capitalised words that start with a known first name ("Janice", "Stephanie Costa")."""
    spans = [Span(m.start(1), m.end(1), "PERSON") for rx in (_TITLED, _SIGNED) for m in rx.finditer(text)]
    known = first_names()
    for m in _NAME_RUN.finditer(text):
        offset = m.start()
        for word in m.group().split():  # "Producer Daniel Payne": from the first known first name on
            if word.casefold() in known:
                spans.append(Span(offset, m.end(), "PERSON"))
                break
            offset = text.index(word, offset) + len(word)
            offset += len(text[offset:]) - len(text[offset:].lstrip())
    spans += [Span(m.start(), m.end(), "PERSON") for m in _WITH_INITIAL.finditer(text)]
    for m in _AFTER_CUE.finditer(text):
        name = m.group(1)
        if name.split()[0].casefold() in NOT_NAMES:
            continue
        cue = text[max(0, m.start(1) - 12) : m.start(1)].strip(" ,:?").split()[-1:]
        if cue and cue[0].casefold() in _WEAK_CUES and len(name.split()) < 2:
            continue
        spans.append(Span(m.start(1), m.end(1), "PERSON"))
    return spans + intro_spans(text)


# A name's other occurrences are taken for its tokens that look like a name: a census
# first name ("Eija" is not one, "John" and "JOHN" are); a word capitalised then in lower
# case ("Pesälä", "O'Brien"), with a surname particle ("McDonald"); a word in capitals in
# a name written wholly in capital words and initials ("MRS M. SESE-SEKO"; not "ASP.NET
# Databases") or beside a first name ("Captain JOHN OKELE"). Except for first names
# (people write "per john hall"), not a word the text also writes in lower case, standing
# alone, outside the values already found ("Groups" beside "groups"; not
# "matthias@example.org" or "eckel-oo-programming"). NER's false names ("XML", "DivX",
# "MP3", "Groups") were otherwise replaced wherever they occurred (``python -m
# bench.name_echoes``); the occurrence NER found is still replaced.
_ECHO_SHAPE = regex.compile(rf"(?:Mc|Mac|De|Di|Da|Du|La|Le|Van|Von)?{NAME}")
_LETTERS = regex.compile(r"\p{L}+")
_CAPITALS_WORD = regex.compile(r"\p{Lu}+(?:-\p{Lu}+)*\.?")  # "SESE-SEKO", "M.": not "ASP.NET", "XG3"


def _name_tokens(text: str, spans: Iterable[Span]) -> tuple[set[str], set[str]]:
    """(first names, other name-shaped tokens) of the detected names (see above)."""
    known = first_names()
    firsts: set[str] = set()
    others: set[str] = set()
    for s, e, kind in spans:
        if kind != "PERSON":
            continue
        beside_first = any(w.casefold() in known for w in _LETTERS.findall(text[s:e]))
        words = text[s:e].split()
        in_capitals = len(words) >= 2 and all(_CAPITALS_WORD.fullmatch(w) for w in words)
        for token in regex.findall(r"\w{3,}", text[s:e]):
            if token.casefold() in NOT_NAMES:
                continue
            if token.casefold() in known and (token.isupper() or _ECHO_SHAPE.fullmatch(token)):
                firsts.add(token)
            elif token.isupper():
                if token.isalpha() and (in_capitals or beside_first):
                    others.add(token)
            elif _ECHO_SHAPE.fullmatch(token):
                others.add(token)
    return firsts, others


def _written_lower(token: str, text: str, taken: Callable[[int], bool]) -> bool:
    """Whether ``text`` writes ``token`` in lower case as a word of its own (not inside
    an address or a hyphenated name) outside the values already found."""
    lower = regex.finditer(rf"(?<![\w@./-]){regex.escape(token.lower())}(?![\w@/-]|\.\w)", text)
    return any(not taken(m.start()) for m in lower)


def propagate_names(text: str, spans: Iterable[Span]) -> list[Span]:
    """Other occurrences of the tokens of detected names ("Eija Pesälä ... calls me
    Eija"), for the tokens that look like a name (see above)."""
    spans = list(spans)
    tokens, others = _name_tokens(text, spans)
    if others:
        taken = covered(spans)
        tokens |= {t for t in others if not _written_lower(t, text, taken)}
    if not tokens:
        return []
    pattern = regex.compile(
        r"\b(?:" + "|".join(regex.escape(t) for t in sorted(tokens, key=len, reverse=True)) + r")\b"
    )
    return [Span(m.start(), m.end(), "PERSON") for m in pattern.finditer(text)]
