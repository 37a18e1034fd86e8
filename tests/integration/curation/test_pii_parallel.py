"""The forked detection workers, which scrub every input of 5,000 rows or more on a
machine with two cores or more, give what one process gives, inside a flow run as
`thaw run` has them: with the flow's SIGTERM handler installed when they fork."""

from __future__ import annotations

import signal

import pytest

from thaw.config import PiiConfig
from thaw.pii.detector import PiiDetector, PiiSecret, ScrubStats, scrub_texts, scrub_texts_parallel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SECRET = PiiSecret(b"k" * 32, "test")
TEXTS = [
    f"ticket {i}: " + ("Maria Gonzalez (maria@example.com) asked for a refund" if i % 3 else "reset my password")
    for i in range(45)
] + ["card 4111 1111 1111 1111 was\u00a0declined, call +1 312-545-3252", ""]


def test_forked_workers_in_a_flow_run_scrub_as_one_process_does(prefect_harness):
    from prefect import flow

    detector = PiiDetector(PiiConfig(workers=2, parallel_min_rows=1, chunk_rows=10))

    @flow(name="scrub-in-forked-workers")
    def scrub_in_a_flow() -> tuple[list[str], dict, bool]:
        stats = ScrubStats()
        scrubbed = list(scrub_texts_parallel(TEXTS, detector, SECRET, stats))
        return (
            scrubbed,
            {"rows": stats.rows_seen, "changed": stats.rows_changed},
            callable(signal.getsignal(signal.SIGTERM)),
        )

    forked, counts, flow_handler = scrub_in_a_flow()
    stats = ScrubStats()
    assert forked == list(scrub_texts(TEXTS, detector, SECRET, stats))
    assert counts == {"rows": stats.rows_seen, "changed": stats.rows_changed} == {"rows": 47, "changed": 31}
    assert flow_handler  # the workers forked under a handler that runs in Python, and still ended
    assert "Maria" not in " ".join(forked) and "4111" not in forked[-2]
