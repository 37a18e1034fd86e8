"""Data-parallel fine-tuning on CPU: two processes, the gloo backend, torchrun's launcher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.servers import free_port

pytestmark = pytest.mark.integration

SCRIPT = """
import json, sys, time
from pathlib import Path
import torch.distributed as dist
sys.path.insert(0, {root!r})
from tests.integration.ladder.test_ladder import config, make_task, LABELS
from tasks.ladder.finetuning import fit_adapted_rung, holdout_fit
ws, enc = Path({ws!r}), Path({enc!r})
cfg = config(ws, enc, rungs=["frozen", "full"], finetune={{"epochs": 2, "batch_size": 8}})
# a deadline far off: each rank reads its own clock, all keep rank 0's plan (thaw.distributed.agree)
fit = holdout_fit("full", ws / "run", deadline=time.time() + 3600)
rung = fit_adapted_rung(fit, make_task(ws, "strong"), LABELS, cfg)
out = {{"size": dist.get_world_size(), "epochs": rung.details.epochs_run,
        "validation": [h.validation_metric for h in rung.details.history],
        "predictions": list(rung.validation_predictions)}}
(ws / f"rank{{dist.get_rank()}}.json").write_text(json.dumps(out))
dist.barrier()
"""


def test_two_process_gloo_training_keeps_the_ranks_identical(workspace, tiny_encoder):
    from safetensors.numpy import load_file

    from tests.integration.ladder.test_ladder import config, frozen_rung, make_task

    cfg = config(workspace, tiny_encoder, rungs=["frozen", "full"], finetune={"epochs": 2, "batch_size": 8})
    curated = make_task(workspace, "strong")
    frozen_rung(workspace, cfg, curated)
    root = str(Path(__file__).resolve().parents[3])
    script = workspace / "ddp.py"
    script.write_text(SCRIPT.format(root=root, ws=str(workspace), enc=str(tiny_encoder)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "--log-dir",  # else a torchelastic_* directory in /tmp, kept
        str(workspace / "launcher-logs"),
        str(script),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workspace)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((workspace / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["size"] == 2 and r["epochs"] == 2 for r in ranks)
    # each rank saw half the batches, yet the averaged gradients keep their weights equal:
    # both score the full validation set identically after every epoch
    assert ranks[0]["validation"] == ranks[1]["validation"] and ranks[0]["predictions"] == ranks[1]["predictions"]
    # rank 0 wrote the model and the checkpoint; gradients were averaged, so the saved
    # weights are those every rank holds
    saved = load_file(str(workspace / "run" / "models" / "full" / "delta.safetensors"))
    assert saved and all(np.isfinite(v).all() for v in saved.values())
    assert list((workspace / ".thaw" / "checkpoints").glob("*/epoch-*/meta.json"))  # the finished fit's


def test_the_pipeline_task_trains_a_rung_in_two_processes_when_configured(
    workspace, tiny_encoder, tmp_path_factory, monkeypatch
):
    """finetune.processes: 2 makes the pipeline's own task launch the rung under
    torch.distributed.run; rank 0's model and result come back as a TrainedRung, and the
    launch leaves nothing behind, in the workspace or in the temporary directory."""
    from safetensors.numpy import load_file

    from tasks.ladder.finetuning import holdout_fit, train_adapted_rung
    from tests.integration.ladder.test_ladder import LABELS, config, frozen_rung, make_task

    cfg = config(
        workspace, tiny_encoder, rungs=["frozen", "full"], finetune={"epochs": 2, "batch_size": 8, "processes": 2}
    )
    curated = make_task(workspace, "strong")
    frozen_rung(workspace, cfg, curated)
    system_tmp = tmp_path_factory.mktemp("system-tmp")
    monkeypatch.setenv("TMPDIR", str(system_tmp))  # read by the launched processes
    rung = train_adapted_rung.fn(holdout_fit("full", workspace / "run"), curated, LABELS, cfg)
    assert rung.details.processes == 2 and rung.details.epochs_run == 2
    assert len(rung.validation_predictions) == 30 and set(rung.validation_predictions) <= set(LABELS)
    assert [h.epoch for h in rung.details.history] == [1, 2]
    assert load_file(str(rung.model_dir / "delta.safetensors"))
    assert list(system_tmp.iterdir()) == []  # torch.distributed.run's log directory was ours, and went
    assert list((cfg.state_path / "launch").iterdir()) == []  # so did the spec and rank 0's result
