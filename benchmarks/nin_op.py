"""Ways to write a noise injection node, one layer, forward + backward: which is cheapest?

Usage: python benchmarks/nin_op.py [--quick] [--rounds 200] [--threads 1]

Dense (784 -> 256, batch 64 and 512), ``z = x W^T + b + eps niw^T``:
- ``plain``: the layer without a node (``F.linear``), the baseline;
- ``in-place addr_`` (ninr's ``nin_linear``): ``F.linear(x, W, b).addr_(eps, niw)`` (the product's
  output is not saved for its backward, so updating it in place is safe);
- ``fused addr``: ``addmm(addr(b, eps, niw), x, W^T)``, the rank-one update folded into the product's
  input;
- ``concatenated column``: ``F.linear(cat([x, eps]), cat([W, niw]), b)``;
- ``separate product``: ``F.linear(x, W, b) + F.linear(eps[:, None], niw[:, None])``.
Conv (32 -> 64 channels, 3x3, 14x14, per-example noise): ninr's ``nin_conv2d_channel`` (a rank-one
``addr`` of ``eps`` with the convolution of a map of ones, over the flattened map) against ``addcmul``
(multiply, then sum), an in-place ``addcmul_`` and an extra input channel.
With one thread the clock is the thread's CPU time, which other jobs on a shared machine do not inflate.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_common import append_results, machine_info, median, paired_ratio, print_table

from ninr import perf
from ninr.functional.nin import nin_conv2d_channel, nin_linear


def dense_variants(batch: int) -> dict[str, Callable[[], torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 784)
    w = torch.randn(256, 784, requires_grad=True)
    b = torch.randn(256, requires_grad=True)
    niw = torch.randn(256, requires_grad=True)

    def eps() -> torch.Tensor:
        return torch.randn(batch, generator=g)

    return {
        "plain": lambda: F.linear(x, w, b),
        "in-place addr_ (ninr)": lambda: nin_linear(x, w, b, niw, eps()),
        "fused addr (ninr before)": lambda: torch.addmm(torch.addr(b, eps(), niw), x, w.t()),
        "in-place addcmul_": lambda: F.linear(x, w, b).addcmul_(eps()[:, None], niw),
        "concatenated column": lambda: F.linear(torch.cat([x, eps()[:, None]], 1), torch.cat([w, niw[:, None]], 1), b),
        "separate product": lambda: F.linear(x, w, b) + F.linear(eps()[:, None], niw[:, None]),
    }


def conv_variants(batch: int) -> dict[str, Callable[[], torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 32, 14, 14)
    w = torch.randn(64, 32, 3, 3, requires_grad=True)
    b = torch.randn(64, requires_grad=True)
    niw = torch.randn(64, 1, 3, 3, requires_grad=True)

    def conv(inp: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(inp, weight, None, 1, 1)

    def eps() -> torch.Tensor:
        return torch.randn(batch, generator=g)

    def inplace() -> torch.Tensor:
        unit = conv(torch.ones(1, 1, 14, 14), niw)
        return F.conv2d(x, w, b, 1, 1).addcmul_(eps().view(-1, 1, 1, 1), unit)

    def channel() -> torch.Tensor:
        noise = eps().view(-1, 1, 1, 1).expand(batch, 1, 14, 14)
        return F.conv2d(torch.cat([x, noise], 1), torch.cat([w, niw], 1), b, 1, 1)

    def addcmul() -> torch.Tensor:
        unit = conv(torch.ones(1, 1, 14, 14), niw)
        return torch.addcmul(F.conv2d(x, w, b, 1, 1), eps().view(-1, 1, 1, 1), unit)

    return {
        "conv plain": lambda: F.conv2d(x, w, b, 1, 1),
        "conv addr (ninr)": lambda: nin_conv2d_channel(F.conv2d(x, w, b, 1, 1), niw, eps(), (14, 14), conv),
        "conv addcmul (ninr before)": addcmul,
        "conv in-place addcmul_": inplace,
        "conv extra input channel": channel,
    }


def timed(fn: Callable[[], torch.Tensor], clock: Callable[[], float], inner: int) -> float:
    start = clock()
    for _ in range(inner):
        fn().sum().backward()
    return (clock() - start) / inner


def _quartiles(row: dict) -> str:
    return f"{100 * row['overhead_q1']:+.1f}..{100 * row['overhead_q3']:+.1f}%"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None, help="default 200 (quick 40)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    rounds = args.rounds or (40 if args.quick else 200)
    threads = perf.configure_threads(1, args.threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    info = machine_info()
    rows = []
    for kind, build, batches in (("dense", dense_variants, (64, 512)), ("conv", conv_variants, (64,))):
        for batch in batches:
            variants = build(batch)
            inner = 4 if kind == "dense" else 1
            times: dict[str, list[float]] = {name: [] for name in variants}
            for r in range(rounds + 1):
                for name, fn in variants.items():
                    t = timed(fn, clock, inner)
                    if r:  # the first round warms up
                        times[name].append(t)
            base = times[next(iter(variants))]
            for name in variants:
                ratio, q1, q3 = paired_ratio(times[name], base)
                rows.append(
                    {
                        "case": f"{kind} b{batch} {name}",
                        "us": 1e6 * median(times[name]),
                        "overhead": ratio - 1,
                        "overhead_q1": q1 - 1,
                        "overhead_q3": q3 - 1,
                    }
                )
    after = machine_info()["loadavg"]
    clock_name = "thread CPU time" if threads == 1 else "wall time"
    title = f"NIN formulations, one layer fwd+bwd, {clock_name}, {rounds} rounds, load {info['loadavg']}->{after}"
    table = [(r["case"], r["us"], f"{100 * r['overhead']:+.1f}%", _quartiles(r)) for r in rows]
    print_table(title, ["variant", "us/step", "vs plain (median)", "quartiles"], table)
    append_results("nin_op", rows, {**info, "loadavg_after": after, "clock": clock_name}, vars(args))
    return rows


if __name__ == "__main__":
    main()
