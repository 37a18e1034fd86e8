"""Street addresses and postal codes, for the PII scrubber (beside ``thaw.pii.rules``).

- street lines in English and continental forms: number + name + street type ("214 Beach
  Road"), street type + name + number ("Via Pasquale Scura 127"), one word with a street
  suffix + number ("Hammarvägen 15"), number + name + number ("4899 Úzká 1762"), and the
  unit lines (Apt, Suite, P.O. Box ...); the town after a comma;
- what follows an address cue ("address:", "lives at", "ship to");
- postal codes after a cue ("ZIP:", "postcode"), in the UK layout, or right after a place;
- address blocks: the short capitalised lines after a street line (town, region,
  country and code) and the one before it (the addressee).

Street patterns stay on one line; lines break at real line breaks (the rules run on
``pii_rules.plain_view``).
"""

from __future__ import annotations

from collections.abc import Iterable

import regex

from thaw.pii.rules import CAP, MONTHS
from thaw.pii.spans import Span

STREET_TYPES = (
    "street|st|road|rd|avenue|ave|av|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|terrace|ter|crescent|cres|"
    "close|heights|hts|row|square|sq|parkway|pkwy|highway|hwy|circle|cir|trail|trl|walk|hill|gardens|gdns|grove|mews|"
    "park|loop|path|pike|alley|plaza|ridge|view|point|run|green|crossing|expressway|freeway|motorway|quay|wharf|"
    "esplanade|parade|rise|vale|wynd|brae|gate|yard|junction|jct|estate|manor|fields|meadow|meadows|village"
)
STREET_PREFIXES = (
    r"via|viale|vicolo|piazza|piazzale|corso|largo|strada|rua|avenida|av\.|calle|c/|carrer|camino|paseo|plaza|rue|"
    r"chemin|allée|impasse|quai|route|boulevard|ul\.|ulica|al\.|aleja|plac|trg|ulitsa|ulitza|prospekt|odos|λ\.|οδός|"
    r"rruga|strada|stradă|bulevardul|calea|sokak|cadde|caddesi|jalan|jl\."
)
STREET_SUFFIXES = tuple(
    "straße strasse str. weg gasse platz allee ring damm ufer laan straat gracht plein kade singel dijk vej gade "
    "allé alléen vägen väg gatan gata gränd veien vegen veg gate gaten katu tie polku kuja utca út tér cesta iela "
    "gatvė tänav tee stígur stíg vegur braut teigur sokağı ulice náměstí třída".split()
)
SP, SP0, SP1 = r"[ \t\u00a0]+", r"[ \t\u00a0]*", r"[ \t\u00a0]?"  # street patterns stay on one line
HOUSE = r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,4}[A-Za-z]?)?"
WORD = r"[\p{L}][\p{L}'’.-]*"
# House numbers before a street come one to three at a time ("12 14 High Street"): an
# unbounded repeat made a pasted "1 1 1 ..." field quadratic and worse (4,000 characters: 11 s).
HOUSES = rf"(?:\b{HOUSE}{SP}){{1,3}}"
_STREET_EN = regex.compile(
    rf"(?i:{HOUSES}(?:{WORD}{SP}){{0,4}}(?:{STREET_TYPES})\b\.?)(?:{SP}(?:North|South|East|West|[NSEW])\b)?"
)
# ", Wageningen" after a street: the town, and the postal code before it where the
# continental layout puts it (", 75002 Paris", ", 1017 AB Amsterdam")
TOWN_CODE = r"\d{4,5}(?: ?[A-Z]{2}\b)?|\d{2}-\d{3}|\d{3} \d{2}"
_TOWN_AFTER_STREET = regex.compile(rf"\G,{SP0}(?:(?P<code>{TOWN_CODE}){SP})?(?P<town>{CAP}(?:[ -]{CAP}){{0,3}})")
_STREET_PREFIXED = regex.compile(
    rf"(?:\b{HOUSE}{SP})?(?i:(?<!\w)(?:{STREET_PREFIXES})){SP}(?:{WORD}{SP}){{0,4}}?{HOUSE}\b"
    rf"|{HOUSES}(?i:(?<!\w)(?:{STREET_PREFIXES}))(?:{SP}(?:{CAP}|de|da|do|del|la|le|des|du|e|di)){{1,5}}"
)
# "119 Hagaskog 22", "4899 Úzká 1762": a number, a capitalised name and a house number;
# not a date ("20 Aug 2002"), which as a street line also made the short capitalised
# lines around it an address block ("Quarterly Review", "Total Due")
_NUMBER_NAME_NUMBER = regex.compile(rf"\b{HOUSE}{SP}(?!{MONTHS}{SP}{HOUSE}\b)(?:{CAP}{SP}){{1,4}}{HOUSE}\b")
# a word and a house number; a street when the word ends in a street suffix ("Hammarvägen 15")
_WORD_AND_HOUSE = regex.compile(rf"(?:\b{HOUSE}{SP})?\b(\p{{L}}{{3,}}\.?){SP}{HOUSE}\b")
_UNIT = regex.compile(
    rf"(?i:\b(?:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building|p\.?{SP1}o\.?{SP1}box|po box|box|psc|"
    rf"dpo|apo|fpo)\.?){SP0}#?{SP0}[A-Z]{{0,2}}{SP1}\d+[A-Z]?\b"
)
POSTCODE = (
    r"(?:[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{4} ?[A-Z]{2}\b|\d{3} \d{2}\b|\d{5}-\d{4}|"
    r"\d{2}-\d{3}|\d{3,6})"
)
_POSTCODE_AFTER_CUE = regex.compile(
    rf"(?i:\b(?:zip(?:{SP1}code)?|postal{SP1}code|post{SP1}code|postcode|plz|postleitzahl|cep|pin{SP1}code|"
    rf"code{SP1}postal|c[oó]digo{SP1}postal|codice{SP1}postale)\b(?:{SP}(?:is|est|es|è))?[:#\s]*)({POSTCODE})"
)
_UK_POSTCODE = regex.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}\b")
_POSTCODE_AFTER_PLACE = regex.compile(
    rf"(?<=\p{{L}}[\p{{L}})]*\)?)(?:{SP}|{SP0}\n{SP0})(?!(?:19|20)\d\d\b)({POSTCODE})(?={SP0}(?:$|[,.;:!?\n]|\s\p{{Ll}}))"
)
_ADDRESS_CUES = regex.compile(
    r"(?i)\b(?:address(?:es)?|live[sd]? (?:at|on|in)|living at|located at|located on|is on|moved to|moving to|"
    r"ship(?:ped)? to|deliver(?:ed)? to|send (?:it )?to|return (?:it )?to|mail (?:it )?to|resides? at)\b[:\s]*"
)
FILLER = r"(?:is|are|at|on|in|to|the|of|my|our|new|now|here|they|it's|its|was|be)"
_ADDRESSY_AFTER_CUE = regex.compile(
    rf"\G(?:{FILLER}[:,]?{SP}){{0,4}}(?:{HOUSE}(?:{SP}{CAP}){{1,4}}(?:{SP}{HOUSE}\b)?|{CAP}(?:{SP}{CAP}){{0,4}}{SP}{HOUSE}\b)"
)
LINE_BREAK = regex.compile(r"\r?\n|\u2028")


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line, without the break and surrounding blanks/markup."""
    out, start = [], 0
    for m in [*LINE_BREAK.finditer(text), None]:
        end = m.start() if m else len(text)
        seg = text[start:end]
        lead = len(seg) - len(seg.lstrip(" \t}?>|*-"))
        trail = len(seg) - len(seg.rstrip(" \t,;"))
        if end - trail > start + lead:
            out.append((start + lead, end - trail))
        start = m.end() if m else len(text)
    return out


def _street_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    if not any(ch.isdigit() for ch in text):  # every street and unit pattern has a number
        return spans
    suffixed = [m for m in _WORD_AND_HOUSE.finditer(text) if m.group(1).casefold().endswith(STREET_SUFFIXES)]
    for rx in (_STREET_EN, _STREET_PREFIXED, suffixed, _NUMBER_NAME_NUMBER, _UNIT):
        for m in rx if isinstance(rx, list) else rx.finditer(text):
            spans.append(Span(m.start(), m.end(), "ADDRESS"))
            town = _TOWN_AFTER_STREET.match(text, m.end())
            if town and rx is not _UNIT:
                spans.append(Span(town.start("town"), town.end("town"), "LOCATION"))
                if town.group("code"):
                    spans.append(Span(town.start("code"), town.end("code"), "ADDRESS"))
    for cue in _ADDRESS_CUES.finditer(text):
        m = _ADDRESSY_AFTER_CUE.match(text, cue.end())
        if m:
            spans.append(Span(m.start(), m.end(), "ADDRESS"))
    return spans


def address_spans(text: str, places: Iterable[Span] = ()) -> list[Span]:
    """Street and unit lines, postal codes, and the address blocks they stand in."""
    streets = _street_spans(text)
    spans = streets + _address_blocks(text, [s for s in streets if s[2] == "ADDRESS"])
    spans += [Span(m.start(1), m.end(1), "ADDRESS") for m in _POSTCODE_AFTER_CUE.finditer(text)]
    spans += [Span(m.start(), m.end(), "ADDRESS") for m in _UK_POSTCODE.finditer(text)]
    return spans + postcodes_after(text, places)


def postcodes_after(text: str, places: Iterable[Span]) -> list[Span]:
    """Postal codes right after a place ("Cyprus 56960", "in Tallinn 12916 in its ...")."""
    spans = []
    for _, end, _ in places:
        m = _POSTCODE_AFTER_PLACE.match(text, end)
        if m:
            spans.append(Span(m.start(1), m.end(1), "ADDRESS"))
    return spans


def _address_blocks(text: str, streets: list[Span]) -> list[Span]:
    """Lines around a street or unit line: up to three lines after it (town, region,
    country and postal code) and the one before it (the addressee), when they are short
    and capitalised. The street line keeps its own spans (not the whole line)."""
    lines = _lines(text)
    if len(lines) < 2:
        return []
    street = [any(s < le and ls < e for s, e, _ in streets) for ls, le in lines]
    spans = []
    for i, is_street in enumerate(street):
        if not is_street:
            continue
        for j in range(i + 1, min(i + 4, len(lines))):
            if street[j]:
                continue  # its own spans are already there; the block goes on
            if not _short_capitalised(text[lines[j][0] : lines[j][1]], allow_digits=True):
                break
            spans.append(Span(lines[j][0], lines[j][1], "ADDRESS"))
        if i > 0 and not street[i - 1] and _short_capitalised(text[lines[i - 1][0] : lines[i - 1][1]]):
            spans.append(Span(lines[i - 1][0], lines[i - 1][1], "PERSON"))
    return spans


LINE_WORD = rf"(?:\(?{CAP}\)?|{POSTCODE})"  # "Svratka", "(Greek)", "45098"
_CAPITALISED_LINE = regex.compile(rf"(?:{LINE_WORD}|[A-Z]{{1,3}})(?:[ ,]+(?:{LINE_WORD}|de|da|do|la|le|von|van|nan))*")


def _short_capitalised(line: str, allow_digits: bool = False) -> bool:
    words = line.split()
    if not 1 <= len(words) <= 5 or (not allow_digits and any(ch.isdigit() for ch in line)):
        return False
    return _CAPITALISED_LINE.fullmatch(line.strip(" ,")) is not None
