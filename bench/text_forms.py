"""Which text form costs the frozen recipe least: a measurement behind
``thaw.text_form.model_text``, beside the plain baseline, on the same rows in one run.

``python -m bench.text_forms spamassassin clinc150 goemotions`` draws 10 training rows
per class (seeds 13-17, the draws of ``bench.ladder SET:10shot:SEED``) and fits the
plain recipe (``bench.plain_baseline``: frozen MiniLM, logistic regression at the
library defaults) on each of three forms of the same rows, scored on each set's whole
test file in the same form:

- ``entity types``: the PII thaw's detector finds replaced by its type (``<PERSON>``),
  the form thaw's models train and serve on (``thaw.pii.masking.mask_texts``);
- ``surrogates``: each of those replaced by one realistic value of its type, the same
  for every row ("Alex", "http://example.com", "555-0100"), the other form the issue
  that asked for a model-side text form named;
- ``raw``: nothing scrubbed, what the plain baseline reads.

A surrogate is a constant per type: a value that depends on the original (a keyed one)
would need the PII key at serving. Every setting is fixed before the run; the figures
are test accuracy, per draw and their mean.
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np

from bench import ladder, plain_baseline

DRAWS = (13, 14, 15, 16, 17)
# one value per default entity type (thaw.config.DEFAULT_PII_ENTITIES), from ranges kept
# for examples where there are some (RFC 2606 and 5737 domains and addresses, 555-01xx)
SURROGATES = {
    "PERSON": "Alex",
    "EMAIL_ADDRESS": "alex@example.com",
    "PHONE_NUMBER": "555-0100",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "GB82 WEST 1234 5698 7654 32",
    "IP_ADDRESS": "192.0.2.1",
    "URL": "http://example.com",
    "LOCATION": "Springfield",
    "ADDRESS": "1 Main Street",
    "DATE_OF_BIRTH": "1 January 1980",
    "US_SSN": "000-00-0000",
    "LONG_NUMBER": "123456789",
}
_ENTITY = re.compile(r"<(" + "|".join(SURROGATES) + r")>")


def surrogates(text: str) -> str:
    """``text`` in entity types with each type replaced by its surrogate."""
    return _ENTITY.sub(lambda m: SURROGATES[m.group(1)], text)


def forms(raw: list[str]) -> dict[str, list[str]]:
    from thaw.config import PiiConfig
    from thaw.pii.masking import mask_texts

    typed = mask_texts(raw, PiiConfig())
    return {"entity types": typed, "surrogates": [surrogates(t) for t in typed], "raw": raw}


def probe(name: str, encoder) -> list[str]:
    from sklearn.linear_model import LogisticRegression

    splits = ladder.SETS[name][1]()
    test = splits["test"]
    started = time.perf_counter()
    test_forms = forms([t for t, _ in test])
    changed = sum(a != b for a, b in zip(test_forms["raw"], test_forms["entity types"], strict=True))
    x_test = {form: plain_baseline.embed(texts, *encoder) for form, texts in test_forms.items()}
    y_test = np.asarray([y for _, y in test])
    lines = [
        f"{name}: {len(test)} test rows ({changed} with PII found) scrubbed and embedded in three forms "
        f"in {time.perf_counter() - started:.0f} s"
    ]
    print(lines[0], flush=True)
    scores: dict[str, list[float]] = {form: [] for form in test_forms}
    for seed in DRAWS:
        rows = ladder.few_per_class(splits["train"], 10, seed)
        y = np.asarray([label for _, label in rows])
        for form, texts in forms([t for t, _ in rows]).items():
            fitted = LogisticRegression(max_iter=1000).fit(plain_baseline.embed(texts, *encoder), y)
            scores[form].append(float((fitted.predict(x_test[form]) == y_test).mean()))
        lines.append(f"{name} draw {seed}: " + "; ".join(f"{f} {s[-1]:.4f}" for f, s in scores.items()))
        print(lines[-1], flush=True)
    lines.append(f"{name} mean of {len(DRAWS)}: " + "; ".join(f"{f} {np.mean(s):.4f}" for f, s in scores.items()))
    print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    sys.exit(ladder.probe_sets(sys.argv[1:], probe))
