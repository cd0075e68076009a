"""Channels-last or not: the CNN's training step, one model and K stacked models (grouped convolutions).

Usage: python benchmarks/conv_layout.py [--quick] [--rounds 12] [--threads 1] [--k 4] [--batch 128]

Both layouts train the same models (built by ``build_setup``) on the same batches; they alternate in
short chunks of steps over many rounds, and the table shows the median seconds per step and the
median over rounds of each round's ratio channels-last / contiguous. With one thread the clock is the
thread's CPU time (robust to other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_common import append_results, machine_info, median, paired_ratio, print_table

from ninr import perf
from ninr.data import load_dataset
from ninr.data.base import Dataset
from ninr.models.layers import channel_stats
from ninr.train import TrainConfig, build_setup, resolve
from ninr.train.backends.stacked import StackedBackend


def single_step(data: Dataset, batch: int, channels_last: bool) -> Callable[[torch.Tensor], None]:
    config = TrainConfig(model="cnn", batch_size=batch)
    model, _ = build_setup(config, data.input_shape, data.num_classes, resolve(config)[1], channel_stats(data.x_train))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(idx: torch.Tensor) -> None:
        x = perf.channels_last(data.x_train[idx[0]], channels_last)
        loss = F.cross_entropy(model(x), data.y_train[idx[0]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def stacked_step(data: Dataset, batch: int, k: int, channels_last: bool) -> Callable[[torch.Tensor], None]:
    configs = [TrainConfig(model="cnn", batch_size=batch, seed=s) for s in range(k)]
    stats = channel_stats(data.x_train)
    models = [build_setup(c, data.input_shape, data.num_classes, resolve(c)[1], stats)[0] for c in configs]
    backend = StackedBackend(models, lr=[0.05] * k, momentum=[0.0] * k, use_channels_last=channels_last)
    backend.train(True)

    def step(idx: torch.Tensor) -> None:
        _, losses = backend.forward(data.x_train[idx], data.y_train[idx])
        backend.zero_grad()
        losses.sum().backward()
        backend.step(None)

    return step


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None, help="default 12 (quick 4)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None, help="alias of --rounds")
    args = parser.parse_args(argv)
    rounds = args.rounds or args.repeats or (4 if args.quick else 12)
    threads = perf.configure_threads(1, args.threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    data = load_dataset("fashion-mnist")
    info = machine_info()
    gen = torch.Generator().manual_seed(0)
    rows = []
    for label, k in (("single", 1), (f"stacked K={args.k}", args.k)):
        steps = {
            cl: single_step(data, args.batch, cl) if k == 1 else stacked_step(data, args.batch, k, cl)
            for cl in (False, True)
        }
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(rounds + 1):
            idx = torch.randint(0, len(data.x_train), (max(k, 1), args.batch), generator=gen)
            for cl, step in steps.items():
                start = clock()
                step(idx)
                step(idx)
                if r:
                    times[cl].append((clock() - start) / 2)
        ratio, q1, q3 = paired_ratio(times[True], times[False])
        for cl in (False, True):
            rows.append(
                {
                    "case": f"cnn {label} b{args.batch} {'channels-last' if cl else 'contiguous'}",
                    "s_per_step": median(times[cl]),
                    "channels_last_over_contiguous": ratio if cl else 1.0,
                    "quartiles": [q1, q3] if cl else [1.0, 1.0],
                }
            )
    after = machine_info()["loadavg"]
    clock_name = "thread CPU time" if threads == 1 else "wall time"
    title = f"conv layout, CNN train step, {clock_name}, threads {threads}, load {info['loadavg']}->{after}"
    table = [
        (
            r["case"],
            r["s_per_step"],
            r["channels_last_over_contiguous"],
            f"{r['quartiles'][0]:.3f}..{r['quartiles'][1]:.3f}",
        )
        for r in rows
    ]
    print_table(title, ["variant", "s/step", "ratio to contiguous", "quartiles"], table)
    append_results("conv_layout", rows, {**info, "loadavg_after": after, "clock": clock_name}, vars(args))
    return rows


if __name__ == "__main__":
    main()
