"""What the PII detector's name echoes take: every other occurrence of a token of a
detected name (``thaw.pii.rules.propagate_names``), on text nobody here wrote.

``python -m bench.name_echoes [SET ...] [--rows N]`` scrubs N training texts of each set
(a fixed shuffle, default 800; SpamAssassin's mails unless sets are named) twice with
the shipped detector, once with both echo recognizers and once without them, and prints
the spans found only with the echoes (an echo that overlaps a span found anyway merges
with it, and the merged span counts), the texts that have any, and the values most
often among them, with the number of texts each is in. A token taken dozens of times in one mail ("XML",
"Weblog") is most likely one of NER's false names spread across it; a real name's
echoes are what the rule is for ("Eija Pesälä ... calls me Eija").
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time

from bench import ladder

ECHOES = ("name_echoes", "name_echoes_after_ner")


def probe(name: str, rows: int, top: int) -> None:
    from thaw.config import PiiConfig
    from thaw.pii.detector import PiiDetector

    texts = [text for text, _ in ladder.SETS[name][1]()["train"]]
    random.Random(0).shuffle(texts)
    texts = texts[:rows]
    started = time.perf_counter()
    with_echoes = [spans for spans, _ in PiiDetector(PiiConfig()).detect(texts)]
    without = [spans for spans, _ in PiiDetector(PiiConfig(disabled_recognizers=list(ECHOES))).detect(texts)]
    taken: collections.Counter[str] = collections.Counter()
    texts_with: collections.Counter[str] = collections.Counter()
    changed = 0
    for text, a, b in zip(texts, with_echoes, without, strict=True):
        added = set(a) - set(b)
        changed += bool(added)
        words = [text[s.start : s.end] for s in added]
        taken.update(words)
        texts_with.update(set(words))
    print(
        f"{name}: {len(texts)} training texts, {sum(map(len, with_echoes))} spans with the name echoes, "
        f"{sum(map(len, without))} without; the echoes add {sum(taken.values())} spans in {changed} texts "
        f"({time.perf_counter() - started:.0f} s)"
    )
    print(f"{name}: most taken: " + ", ".join(f"{w!r} {n} ({texts_with[w]})" for w, n in taken.most_common(top)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.name_echoes", description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="*", default=["spamassassin"], choices=sorted(ladder.SETS))
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    for name in ladder.available_sets(args.sets):  # no encoder: only the detector runs
        probe(name, args.rows, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
