"""Curation alone, as a data-preparation job (``thaw curate``).

Steps:
 1. curate: clean, exact/near dedup across splits, PII scrubbing, split, accounting;
 2. validate the curated splits with Great Expectations (a failure stops here);
 3. publish the split files, the report, the metrics and the Data Docs to the output directory.
"""

import hashlib
import shutil
from pathlib import Path
from typing import NamedTuple

from prefect import flow

from tasks.curation.curate import curate_dataset, publish_curated
from tasks.curation.expectations import validate_curated_data
from thaw.config import ThawConfig
from thaw.state_budget import state_in_use


class Published(NamedTuple):
    files: dict[str, Path]  # the splits, report, metrics and Data Docs written to the output
    reused: bool  # from the curation cache: its report's figures are those of the run that made it


@flow(name="thaw-curate", log_prints=True)
def curation_flow(cfg: ThawConfig, output: Path) -> Published:
    """Curate and validate ``cfg``'s inputs into ``output``; return what was written."""
    work = curation_work_dir(cfg.state_path, output)
    shutil.rmtree(work, ignore_errors=True)  # it holds this run's files only
    work.mkdir(parents=True)
    with state_in_use(cfg.state_path):  # its cache entries stay while it reads them
        curated = curate_dataset(cfg, work)
        validate_curated_data(curated.files, cfg, work)
        written = publish_curated(curated, work, output, cfg.data.columns)
    # all of it is in ``output`` now; kept when a check fails, its data_checks.md to be read
    # (the state budget does not count this directory, so one left per output would pile up)
    shutil.rmtree(work, ignore_errors=True)
    return Published(written, curated.cache_hit)


def curation_work_dir(state_path: Path, output: Path) -> Path:
    """The state directory where curating into ``output`` works (left only when the data
    checks fail): one per output directory, so ``a/out`` and ``b/out`` never share one."""
    resolved = output.resolve()
    digest = hashlib.sha256(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return state_path / "curate" / f"{resolved.name}-{digest}"
