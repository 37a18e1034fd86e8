"""Where one few-shot training step's time goes, on one thread, in the precision thaw
uses on this CPU: the share spent in matrix products (which no fusion of the other
operators can shorten) and their rate beside the same thread's 2048^3 matmul rate.

The few-shot rung's folds each run on one thread, two at once on a 2-core machine
(``tasks.ladder.fold_pool``), so this is the unit their time is made of. The step is
thaw's own: the contrastive plan (``thaw.trainer.contrastive_plan``, a class-balanced
batch of 16 CLINC150 intents x 4 training queries, packed) on the real MiniLM with its
word embeddings frozen, and the loop's optimiser step (``thaw.trainer.optimiser_step``).

    python -m bench.step_profile [--steps 20]

Reads ``../shared/datasets/clinc150``; prints one table. The upper bound on what a
faster step could save without less work is the share outside the matrix products.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.common import median_seconds
from bench.ladder import SHARED

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm")


def _step_setup(seed: int = 13):
    """thaw's classifier, its contrastive plan and one class-balanced batch, with the
    trainer's optimiser over what the few-shot rung trains."""
    import numpy as np
    import torch

    from thaw.adaptation import build_classifier
    from thaw.config import BackboneConfig
    from thaw.modeling import encode_texts, load_encoder, resolve_backbone
    from thaw.trainer import class_balanced_batches, contrastive_plan, make_optimizer

    rows = json.loads((SHARED / "clinc150" / "data_full.json").read_text(encoding="utf-8"))["train"]
    labels = sorted({label for _, label in rows})
    y = np.array([labels.index(label) for _, label in rows])
    _, directory = resolve_backbone(BackboneConfig())
    tokenizer, encoder = load_encoder(directory, torch.device("cpu"))
    model = build_classifier(encoder, len(labels), "mean")
    encoder.get_input_embeddings().weight.requires_grad_(False)  # fewshot.train_word_embeddings: false
    encoded = encode_texts(tokenizer, [text for text, _ in rows], 256)
    plan = contrastive_plan(tokenizer, encoded, y, 16, 4, 0.1, seed, torch.device("cpu"))
    batch = class_balanced_batches(y, 16, 4, seed, 0)[0]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer([{"params": trainable}], 3e-5, torch.device("cpu"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    tokens = sum(len(encoded["input_ids"][i]) for i in batch)
    non_embedding = sum(p.numel() for n, p in encoder.named_parameters() if "embeddings" not in n)
    return model, plan, batch, optimizer, scheduler, trainable, 6 * non_embedding * tokens


def run(steps: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from thaw.modeling import autocast_dtype, configure_threads
    from thaw.trainer import optimiser_step

    configure_threads(1)
    dtype = autocast_dtype(torch.device("cpu"))
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    peak = 2 * 2048**3 / median_seconds(lambda: a @ b, repeats=7, warmup=3) / 1e9
    model, plan, batch, optimizer, scheduler, trainable, flops = _step_setup()
    model.train()

    def step() -> None:
        optimiser_step(model, plan, batch, optimizer, scheduler, trainable, 1.0)

    seconds = median_seconds(step, repeats=steps, warmup=3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCTS)
    share = products / total
    return {
        "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
        "peak_one_thread_gflops": peak,
        "step_ms": seconds * 1000,
        "step_gflops": flops / seconds / 1e9,
        "products_share": share,
        "products_gflops": flops / (seconds * share) / 1e9,
        "largest_other": sorted(
            ((e.key, e.self_cpu_time_total / total) for e in events if e.key not in PRODUCTS), key=lambda kv: -kv[1]
        )[:3],
    }


def main() -> None:
    from thaw.offline import apply_offline_environment

    parser = argparse.ArgumentParser(prog="python -m bench.step_profile")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    apply_offline_environment()
    started = time.perf_counter()
    r = run(args.steps)
    print(f"one few-shot step, one thread, {r['precision']} (CLINC150, 16 intents x 4 queries, packed)")
    print(f"  {r['precision']} matmul 2048^3 on this thread   {r['peak_one_thread_gflops']:.1f} GFLOP/s")
    print(f"  step (median of {args.steps})                  {r['step_ms']:.0f} ms, {r['step_gflops']:.1f} GFLOP/s")
    products = f"{r['products_share']:.1%} of the step, at {r['products_gflops']:.1f} GFLOP/s"
    print(f"  in matrix products                  {products}")
    others = ", ".join(f"{name} {part:.1%}" for name, part in r["largest_other"])
    print(f"  largest of the rest                 {others}")
    bound = 1 / r["products_share"]
    print(f"  at most {bound:.2f}x faster with everything else free ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
