"""NIN overhead: in-NINR and full-NINR against the plain model, MLP and CNN, batch 64 and 512.

Usage: python benchmarks/nin_overhead.py [--quick] [--rounds 15] [--threads N] [--models mlp cnn]

The variants are built exactly as ``ninr.train.train`` builds them (``build_setup``: same seed, the
methods' nodes attached; a CNN in channels-last memory format where ``to_conv_layout`` puts it) and
trained with the fit loop's step (forward with fresh noise, cross-entropy, backward, ``torch.optim.SGD``).
A NIN changes a step by a few percent, less than the drift of a shared machine over one epoch, so the
variants alternate in short chunks of steps (A, B, C, A, B, C, ...) over many rounds; the table reports
the median seconds per step, scaled to an epoch, and the median over rounds of each round's ratio to the
plain model (with quartiles). With one thread the clock is the thread's CPU time, which other jobs on a
shared machine do not inflate by descheduling us.

Goals at batch 64 (printed PASS/MISS beside the median per-round overhead): in-NINR <= 5%, full-NINR <= 10%.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_common import append_results, check_goal, interleaved, machine_info, median, paired_ratio, print_table

from ninr import perf
from ninr.data import load_dataset
from ninr.data.base import Dataset
from ninr.models.layers import channel_stats
from ninr.rng import make_generator
from ninr.train import MethodSpec, TrainConfig, build_setup, resolve
from ninr.train.setup import to_conv_layout

VARIANTS = {
    "none": (),
    "in-ninr": (MethodSpec("in-ninr", {"sigma": 1.0}),),
    "full-ninr": (MethodSpec("full-ninr", {"sigma": 1.0}),),
}
CHUNK = {"mlp": 20, "cnn": 4}
GOALS = {"in-ninr": 0.05, "full-ninr": 0.10}
"""Largest overhead over the plain model at batch 64, per variant."""
"""Steps per timed chunk (the CNN's steps cost ~20x the MLP's)."""


def chunk_timer(
    data: Dataset, model_name: str, batch: int, methods: tuple[MethodSpec, ...], steps: int
) -> Callable[[], float]:
    """A callable that trains ``steps`` more steps of this variant and returns the seconds per step."""
    config = TrainConfig(model=model_name, methods=methods, batch_size=batch)
    _, built = resolve(config)
    model, _ = build_setup(config, data.input_shape, data.num_classes, built, channel_stats(data.x_train))
    to_conv_layout(model, config.device)  # as ninr.train.train does: a CNN trains channels-last on the CPU
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    order = make_generator(0, "data-order")
    x_all, y_all = data.x_train, data.y_train

    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter

    def run() -> float:
        idx = torch.randperm(len(x_all), generator=order)[: steps * batch].view(steps, batch)
        start = clock()
        for i in range(steps):
            x, y = x_all[idx[i]], y_all[idx[i]]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (clock() - start) / steps

    return run


def _quartiles(row: dict) -> str:
    return f"{100 * row['overhead_q1']:+.1f}..{100 * row['overhead_q3']:+.1f}%"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of chunks per variant (default 30, quick 10)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 512])
    parser.add_argument("--repeats", type=int, default=None, help="alias of --rounds")
    args = parser.parse_args(argv)
    rounds = args.rounds or args.repeats or (10 if args.quick else 30)
    perf.configure_threads(1, args.threads, load_aware=True)
    data = load_dataset("fashion-mnist")
    info = machine_info()
    rows = []
    for model in args.models:
        for batch in args.batches:
            steps = max(1, CHUNK[model] * 64 // batch)
            variants = {name: chunk_timer(data, model, batch, m, steps) for name, m in VARIANTS.items()}
            times = interleaved(variants, rounds, warmup=True)
            per_epoch = -(-len(data.x_train) // batch)
            for name in VARIANTS:
                med = median(times[name])
                ratio, q1, q3 = paired_ratio(times[name], times["none"])
                rows.append(
                    {
                        "case": f"{model} b{batch} {name}",
                        "model": model,
                        "batch": batch,
                        "variant": name,
                        "s_per_step": med,
                        "s_per_epoch": med * per_epoch,
                        "overhead": ratio - 1,
                        "overhead_q1": q1 - 1,
                        "overhead_q3": q3 - 1,
                        "steps_timed": steps * rounds,
                    }
                )
    after = machine_info()["loadavg"]
    title = (
        f"NIN overhead (fp32, per-step medians over {rounds} interleaved rounds, scaled to an epoch), "
        f"threads {info['threads']}, load {info['loadavg']}->{after}"
    )
    table = [
        (r["case"], r["s_per_epoch"], f"{100 * r['overhead']:+.1f}%", _quartiles(r), r["steps_timed"]) for r in rows
    ]
    print_table(title, ["variant", "s/epoch", "vs none (median)", "quartiles", "steps timed"], table)
    for r in rows:
        if r["batch"] == 64 and r["variant"] in GOALS:
            label = f"(c) NIN overhead {r['model']} b64 {r['variant']} (quartiles {_quartiles(r)})"
            check_goal(label, r["overhead"], GOALS[r["variant"]], at_least=False, unit="%")
    append_results("nin_overhead", rows, {**info, "loadavg_after": after}, vars(args))
    return rows


if __name__ == "__main__":
    main()
