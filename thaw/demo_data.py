"""thaw's own demo data: seeded, realistic customer-support messages.

``generate_support_tickets`` is a pure function of its seed and size: the same call on
any machine yields byte-identical CSV, which is what lets ``data.dvc`` pin it. The data
carries the things curation exists for: injected PII (names, emails, phones, card
numbers, IBANs, street addresses), exact and near duplicates, and a few invalid rows.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

from thaw.checksums import luhn_complete
from thaw.datasets import write_text_atomically

DEMO_SEED = 20261122
DEMO_ROWS = 3200
# Share of single-request tickets that carry the label of a neighbouring intent, as when
# annotators disagree: real labels are never clean, and a demo that scores 1.000 on
# every rung leaves the ladder and the approver nothing to decide.
DEMO_LABEL_NOISE = 0.07
CONFUSABLE = {
    "refund_request": "refund_status",
    "refund_status": "refund_request",
    "cancel_subscription": "pause_subscription",
    "pause_subscription": "cancel_subscription",
    "card_lost": "payment_declined",
    "payment_declined": "card_lost",
    "delivery_status": "update_address",
    "update_address": "delivery_status",
    "password_reset": "technical_issue",
    "technical_issue": "password_reset",
}
DEMO_RELPATH = Path("data/demo/support_tickets.csv")
COLUMNS = ("ticket_id", "message", "intent")

FIRST = [
    "Maria",
    "James",
    "Aisha",
    "Lukas",
    "Sofia",
    "Chen",
    "Olivia",
    "Mateo",
    "Priya",
    "Noah",
    "Emma",
    "Kwame",
    "Hannah",
    "Diego",
    "Yuki",
    "Fatima",
    "Liam",
    "Ingrid",
    "Omar",
    "Chloe",
]
LAST = [
    "Garcia",
    "Smith",
    "Khan",
    "Schneider",
    "Rossi",
    "Wang",
    "Johnson",
    "Fernandez",
    "Patel",
    "Brown",
    "Dubois",
    "Mensah",
    "Miller",
    "Lopez",
    "Tanaka",
    "Haddad",
    "Murphy",
    "Larsen",
]
STREETS = [
    "Maple Street",
    "Oak Avenue",
    "Elm Road",
    "High Street",
    "Baker Street",
    "Pine Lane",
    "Cedar Drive",
    "Station Road",
    "Park Avenue",
    "Mill Lane",
]
CITIES = ["Springfield", "Riverside", "Fairview", "Madison", "Georgetown", "Clinton"]
DOMAINS = ["example.com", "mailbox.org", "inbox.net", "post.example.org"]
PII_SLOTS = {
    "name": "PERSON",
    "email": "EMAIL_ADDRESS",
    "phone": "PHONE_NUMBER",
    "card": "CREDIT_CARD",
    "iban": "IBAN_CODE",
    "address": "ADDRESS",
}
# country -> (letters, digits) of the BBAN, per the IBAN registry
IBAN_COUNTRIES = [("DE", 0, 18), ("FR", 0, 23), ("NL", 4, 10), ("ES", 0, 20), ("GB", 4, 14)]
AREA_CODES = [212, 202, 206, 305, 312, 415, 512, 617, 646, 718, 720, 813]

# intent -> message templates; {slots} are filled from the pools below. Intents come in
# confusable pairs (refund request/status, cancel/pause, lost card/declined card, address
# change/delivery status, password/app problem) so that a frozen encoder is not enough.
INTENTS: dict[str, list[str]] = {
    "refund_request": [
        "I want a refund for order {order}",
        "please refund the {product}, it arrived broken",
        "can I return the {product} and get my money back",
        "I'd like my money back for order {order}",
        "refund me for the {product} please, it stopped working after a week",
        "the {product} is faulty, I want a refund",
        "I was charged twice for order {order}, please refund the extra payment",
    ],
    "refund_status": [
        "I returned the {product} but the refund has not arrived",
        "where is my refund for order {order}",
        "you approved a refund for order {order} two weeks ago and I still have nothing",
        "how long does the refund for the {product} take",
        "still waiting for my money back on order {order}",
        "my refund for the {product} has been pending for days",
        "the refund you promised for order {order} never reached my account",
    ],
    "cancel_subscription": [
        "please cancel my subscription",
        "I want to end my plan for good",
        "close my membership, I will not renew",
        "stop my subscription permanently",
        "how do I cancel the premium plan before it renews",
        "terminate my monthly plan please, I no longer need it",
    ],
    "pause_subscription": [
        "can I pause my subscription for a month",
        "I am travelling, put my plan on hold for a while",
        "freeze my membership for a few weeks, I want to keep it",
        "skip the next two months of my subscription",
        "temporarily stop my plan, I will be back",
        "hold my subscription while I am away, do not cancel it",
    ],
    "card_lost": [
        "I lost my card yesterday, please block it right away",
        "my card was stolen at the station, can you freeze it",
        "Someone took my wallet with the card ending {last4}, block it please",
        "I can't find my credit card anywhere, I think I dropped it",
        "please cancel my card {card}, it was stolen",
        "lost card, need a replacement sent to {address}",
    ],
    "payment_declined": [
        "my card {card} keeps getting declined at checkout",
        "why was my card declined when I tried to pay",
        "payment failed twice with my card, is something wrong",
        "the bank transfer from {iban} bounced",
        "my card is not accepted on your site",
        "checkout says card declined but my bank says the card is fine",
    ],
    "update_address": [
        "I moved, please change my address to {address}",
        "update my shipping address to {address} for future orders",
        "my billing address is wrong, it should be {address}",
        "new address for my account: {address}",
        "how do I edit the address saved in my profile",
        "please replace the old address on my account with {address}",
    ],
    "delivery_status": [
        "where is my order {order}? tracking has not moved in days",
        "my package was supposed to arrive on Monday, what is the status",
        "When will order {order} be delivered to {address}",
        "the courier says delivered but I never got the {product}",
        "Is there an update on the shipment of my {product}?",
        "tracking number for order {order} shows no information",
    ],
    "password_reset": [
        "I forgot my password and the reset email never arrives",
        "can't log in, how do I reset my password",
        "the password reset link says it expired, send a new one to {email}",
        "locked out of my account after too many attempts, help me reset the password",
        "How do I change my password? I think someone knows it",
        "reset password not working on the app",
    ],
    "technical_issue": [
        "the app crashes every time I open my orders page",
        "website shows an error 500 when I try to pay",
        "I can't upload a photo for my return, the button does nothing",
        "the page keeps loading forever on my phone",
        "notifications stopped working after the last update",
        "the app logs me out every few minutes",
    ],
}
# Sentences any intent may carry: they dilute a mean-pooled embedding, not the label.
CONTEXT = [
    "I have been a loyal customer for years.",
    "This is the second time I am writing about this.",
    "I tried both the app and the website.",
    "My account is under {email}.",
    "Order number {order} if that helps.",
    "Please get back to me today.",
    "I am really disappointed.",
    "My daughter ordered it for me.",
]
PRODUCTS = [
    "headphones",
    "coffee maker",
    "blender",
    "desk lamp",
    "backpack",
    "smart watch",
    "keyboard",
    "kettle",
    "phone case",
    "running shoes",
]
OPENERS = ["", "", "", "Hi, ", "Hello, ", "Hi there, ", "Good morning, ", "Hey, "]
CLOSERS = [
    "",
    "",
    "",
    "Thanks.",
    "Thank you!",
    "Regards, {name}.",
    "Call me on {phone}.",
    "You can reach me at {email}.",
    "- {name}",
    "My number is {phone}.",
]


@dataclass(frozen=True)
class InjectedPii:
    """Every PII value the generator wrote, by type (what tests look for afterwards)."""

    values: dict[str, tuple[str, ...]]


def _iban(rng: random.Random) -> str:
    country, letters, digits = rng.choice(IBAN_COUNTRIES)
    bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(letters))
    bban += "".join(rng.choice("0123456789") for _ in range(digits))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{bban}"


class _PiiFactory:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: dict[str, set[str]] = {}

    def keep_used(self, slots: dict[str, str], text: str) -> None:
        """Remember the PII values that made it into ``text``."""
        for slot, kind in PII_SLOTS.items():
            if slots[slot] in text:
                self.seen.setdefault(kind, set()).add(slots[slot])

    def slots(self) -> dict[str, str]:
        r = self.rng
        first, last = r.choice(FIRST), r.choice(LAST)
        card = luhn_complete("4" + "".join(r.choice("0123456789") for _ in range(14)))
        card_text = " ".join(card[i : i + 4] for i in range(0, 16, 4)) if r.random() < 0.5 else card
        phone = f"+1 {r.choice(AREA_CODES)}-{r.randint(201, 989)}-{r.randint(1000, 9999)}"
        return {
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{r.randint(1, 99)}@{r.choice(DOMAINS)}",
            "phone": phone,
            "card": card_text,
            "iban": _iban(r),
            "address": f"{r.randint(2, 240)} {r.choice(STREETS)}, {r.choice(CITIES)}",
            "last4": card[-4:],
            "order": f"#{r.randint(100000, 999999)}",
            "product": r.choice(PRODUCTS),
        }


def _perturb(text: str, rng: random.Random) -> str:
    """A near duplicate: the same message with a small edit."""
    words = text.split()
    choice = rng.random()
    plain = [i for i, w in enumerate(words) if w.isalpha() and w.islower()]
    if choice < 0.4 and plain:
        i = rng.choice(plain)  # a typo in an ordinary word, never inside a PII value
        words[i] = words[i] + words[i][-1]
    elif choice < 0.7:
        words.append(rng.choice(["please", "thanks", "asap", "!!"]))
    else:
        words.insert(0, rng.choice(["Urgent:", "Hi again,", "Sorry,", "Re:"]))
    return " ".join(words)


def _render(template: str, pii: _PiiFactory, rng: random.Random) -> str:
    slots = pii.slots()
    text = rng.choice(OPENERS) + template.format(**slots)
    if rng.random() < 0.5:
        context = rng.choice(CONTEXT).format(**slots)
        text = f"{context} {text}" if rng.random() < 0.5 else f"{text.rstrip('.?!')}. {context}"
    closer = rng.choice(CLOSERS).format(**slots)
    if closer:
        text = f"{text.rstrip('.?!')}{rng.choice(['.', '.', ',', ''])} {closer}"
    pii.keep_used(slots, text)
    return text[0].upper() + text[1:] if rng.random() < 0.6 else text


def _compound(intents: list[str], pii: _PiiFactory, rng: random.Random) -> tuple[str, str]:
    """Two requests in one message; the label is the one the customer leads with.

    Mean-pooled frozen features blur which request came first; an adapted encoder can
    learn that what follows "Also," is secondary. This is where deeper rungs earn their keep.
    """
    first, second = rng.sample(intents, 2)
    lead = _render(rng.choice(INTENTS[first]), pii, rng).rstrip(".?! ")
    aside = rng.choice(INTENTS[second]).format(**pii.slots())
    joiner = rng.choice([". Also, ", ". Also ", ", and also ", ". By the way, "])
    return f"{lead}{joiner}{aside[0].lower()}{aside[1:]}", first


def generate_support_tickets(
    rows: int = DEMO_ROWS, seed: int = DEMO_SEED, label_noise: float = 0.0
) -> tuple[str, InjectedPii]:
    """Return (CSV text, injected PII) for ``rows`` tickets; deterministic in its arguments.

    About 4% of rows are exact duplicates, 4% near duplicates, a quarter carry two
    requests (labelled by the first), and a handful have an empty message or no intent
    (curation must count and remove them). ``label_noise``: the share of single-request
    tickets labelled with the neighbouring intent (``CONFUSABLE``) instead of their own.
    """
    rng = random.Random(seed)
    pii = _PiiFactory(rng)
    intents = sorted(INTENTS)
    records: list[tuple[str, str]] = []
    while len(records) < rows:
        roll = rng.random()
        if records and roll < 0.04:
            records.append(rng.choice(records))
        elif records and roll < 0.08:
            text, intent = rng.choice(records)
            records.append((_perturb(text, rng), intent))
        elif roll < 0.33:
            records.append(_compound(intents, pii, rng))
        else:
            intent = rng.choice(intents)
            text = _render(rng.choice(INTENTS[intent]), pii, rng)
            records.append((text, CONFUSABLE[intent] if label_noise and rng.random() < label_noise else intent))
    for k in range(6):  # invalid rows: empty text, missing label
        i = rng.randrange(len(records))
        records[i] = ("", records[i][1]) if k % 2 == 0 else (records[i][0], "")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, (text, intent) in enumerate(records):
        writer.writerow((f"T{i + 1:06d}", text, intent))
    injected = InjectedPii({k: tuple(sorted(v)) for k, v in pii.seen.items()})
    return out.getvalue(), injected


def write_demo_data(workspace: Path, rows: int = DEMO_ROWS, seed: int = DEMO_SEED) -> Path:
    """Write the demo CSV under ``workspace`` (atomically) and return its path."""
    text, _ = generate_support_tickets(rows, seed, DEMO_LABEL_NOISE)
    return write_text_atomically(workspace / DEMO_RELPATH, text)
