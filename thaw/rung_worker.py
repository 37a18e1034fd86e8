"""One rung's fine-tuning in several processes: ``launch`` starts this module under
``torch.distributed.run``; every process runs ``fit_adapted_rung`` on its share of the
batches and rank 0 writes the model and the result the pipeline reads back.

    python -m torch.distributed.run --nproc_per_node N -m thaw.rung_worker SPEC.json
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from tasks.training import TrainedRung
from tasks.versioning import DatasetVersion
from thaw.config import ThawConfig


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(rung: str, curated: DatasetVersion, labels: tuple[str, ...], frozen_dir: Path, cfg: ThawConfig,
           run_dir: Path) -> TrainedRung:
    """Train ``rung`` in ``finetune.processes`` processes on this machine; return rank 0's result."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spec, result = run_dir / f"{rung}.launch.json", run_dir / f"{rung}.result.json"
    result.unlink(missing_ok=True)
    spec.write_text(json.dumps({"rung": rung, "curated": dataclasses.asdict(curated), "labels": list(labels),
                                "frozen_dir": str(frozen_dir), "config": cfg.model_dump(mode="json"),
                                "run_dir": str(run_dir), "result": str(result)}), encoding="utf-8")
    n = cfg.training.ladder.finetune.processes
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "thaw.rung_worker", str(spec)]
    proc = subprocess.run(cmd, cwd=cfg.root, capture_output=True, text=True)
    if proc.returncode != 0 or not result.is_file():
        raise RuntimeError(f"{rung} rung in {n} processes failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    data = json.loads(result.read_text(encoding="utf-8"))
    return TrainedRung(data["rung"], Path(data["model_dir"]), data["validation"], tuple(data["validation_predictions"]),
                       data["trainable_parameters"], data["details"] | {"processes": n})


def main(spec_path: str) -> None:
    from tasks.ladder import fit_adapted_rung
    from thaw.distributed import barrier, is_main_process
    from thaw.offline import apply_offline_environment

    apply_offline_environment()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    curated = DatasetVersion.from_dict(spec["curated"])
    cfg = ThawConfig.model_validate(spec["config"])
    trained = fit_adapted_rung(spec["rung"], curated, tuple(spec["labels"]), Path(spec["frozen_dir"]), cfg, Path(spec["run_dir"]))
    if is_main_process():
        out = Path(spec["result"])
        tmp = out.with_name(out.name + ".partial")
        tmp.write_text(json.dumps(dataclasses.asdict(trained), default=str), encoding="utf-8")
        tmp.replace(out)
    barrier()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
