"""A version's summary tags read against what its run recorded.

Registration copies the selected rung and its test scores onto the version as tags
(``thaw.rung``, ``thaw.transfer.method``, ``thaw.test_accuracy``, ``thaw.test_macro_f1``)
so the registry's pages show them without opening the run. Anyone allowed to edit the
model can rewrite those tags; a run's params cannot be changed once logged, and its
metrics are only ever appended to. So what an approver or an auditor reads comes from
the run, and a tag that says otherwise is reported (the gate counts it as a lineage
problem). A metric logged again with another value, even with an earlier timestamp, is
reported too: the record then says two things.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tasks.tracking.dataset_inputs import edited_tags

# version tag -> the run's param that recorded the same fact
PARAM_TAGS = {"thaw.rung": "rung", "thaw.transfer.method": "rung.method"}
# version tag -> the run's metric (the tag holds it with 4 decimals)
METRIC_TAGS = {"thaw.test_accuracy": "test_accuracy", "thaw.test_macro_f1": "test_macro_f1"}
RUN_ID = re.compile(r"[0-9a-f]{32}")  # as MLflow makes them; a version's run id is registry input
SEARCH_CHUNK = 100  # run ids per search
EXPERIMENTS_PAGE = 1000  # experiments per page read (MLflow's default page; it allows up to 50,000)


@dataclass(frozen=True)
class RunRecord:
    """The facts a version's run recorded (None: the run recorded nothing for it) and
    each summary tag of the version that disagrees with them, one line each."""

    values: dict[str, str | None]  # by tag name, as the run recorded them (metrics with 4 decimals)
    problems: tuple[str, ...]
    contradicted: frozenset[str] = frozenset()  # tags whose metric the run logged with several values

    def shown(self, tags: dict[str, str], tag: str) -> str | None:
        """What to show for ``tag``: the run's record; the tag where the run recorded
        nothing (a version registered before the run logged it); nothing where the run's
        record contradicts itself (the problems say so)."""
        if tag in self.contradicted:
            return None
        recorded = self.values.get(tag)
        return recorded if recorded is not None else tags.get(tag)


def read_run_record(client, run, tags: dict[str, str]) -> RunRecord:
    """``run`` (an MLflow Run already read, or None when the version has none) against the
    version's ``tags``."""
    if run is None:
        return RunRecord(dict.fromkeys((*PARAM_TAGS, *METRIC_TAGS)), ())
    values: dict[str, str | None] = {tag: run.data.params.get(param) for tag, param in PARAM_TAGS.items()}
    problems: list[str] = []
    contradicted: set[str] = set()
    for tag, metric in METRIC_TAGS.items():
        logged = logged_values(client, run.info.run_id, metric)
        if len(logged) > 1:
            problems.append(f"the run's {metric} was logged with {len(logged)} values ({', '.join(logged[:3])})")
            contradicted.add(tag)
        values[tag] = logged[0] if len(logged) == 1 else None
    problems += edited_tags(recorded_values(values), tags)
    return RunRecord(values, tuple(problems), frozenset(contradicted))


def recorded_values(values: dict[str, str | None]) -> dict[str, str]:
    """The summary tags a run recorded a value for, and those values."""
    return {tag: value for tag, value in values.items() if value is not None}


def logged_values(client, run_id: str, metric: str) -> list[str]:
    """Every distinct value run ``run_id`` logged for ``metric``, with 4 decimals, sorted
    (one value: the record is single; none: the run logged no such metric)."""
    return sorted({f"{m.value:.4f}" for m in client.get_metric_history(run_id, metric)})


def recorded_summaries(client, run_ids: Iterable[str]) -> dict[str, dict[str, str | None]]:
    """What each run recorded for the summary tags (run id -> tag -> value; metrics with 4
    decimals, the last value logged), for listings: one search per 100 runs, over every
    experiment (all pages), in place of a read per version. A run's metric history
    (``read_run_record``) is not read here. Run ids that are not 32 hex digits are not
    searched: they would become filter text. A run not found is not in the result."""
    from mlflow.entities import ViewType

    ids = sorted({run_id for run_id in run_ids if run_id and RUN_ID.fullmatch(run_id)})
    if not ids:
        return {}
    experiments, token = [], None
    while True:  # every page: a run in an experiment beyond the first would not be found
        page = client.search_experiments(view_type=ViewType.ALL, max_results=EXPERIMENTS_PAGE, page_token=token)
        experiments += [e.experiment_id for e in page]
        if not (token := page.token):
            break
    out: dict[str, dict[str, str | None]] = {}
    for start in range(0, len(ids), SEARCH_CHUNK):
        chunk = ids[start : start + SEARCH_CHUNK]
        found = client.search_runs(
            experiments,
            filter_string="attributes.run_id IN (" + ", ".join(f"'{run_id}'" for run_id in chunk) + ")",
            run_view_type=ViewType.ALL,
            max_results=len(chunk),
        )
        for run in found:
            params, metrics = run.data.params, run.data.metrics
            out[run.info.run_id] = {tag: params.get(param) for tag, param in PARAM_TAGS.items()} | {
                tag: f"{metrics[metric]:.4f}" if metric in metrics else None for tag, metric in METRIC_TAGS.items()
            }
    return out
