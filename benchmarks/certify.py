"""Randomized-smoothing certification throughput: images per second, batched across examples vs one at a time.

Usage: python benchmarks/certify.py [--quick] [--threads N] [--images 16] [--n0 100] [--n 10000] [--batch 1000]
                                    [--repeats 3] [--device cpu]

CERTIFY (``ninr.robustness.certify``) costs n0 + n forward rows per image. Three variants run interleaved on
the 784-256-256-256-10 MLP (untrained: the cost does not depend on the weights) and the same images:

* ``batched``: one ``certify`` call for all images (noisy copies of several images share forward passes);
* ``one at a time``: one ``certify`` call per image, the same ``batch`` (Cohen et al.'s reference loop);
* ``forward only``: the model on (n0 + n) x images rows of pre-drawn input in ``batch``-row passes, the floor
  the other two pay on top of (noise draws, counting, the Clopper-Pearson bound).

Prints images per second (median over rounds) and the ratio batched / one at a time (median and quartiles
of the per-round ratios, each measured under the same load), and appends them to bench-results/bench.jsonl.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_common import append_results, interleaved, machine_info, median, paired_ratio, print_table

from ninr import perf
from ninr.models import build_model
from ninr.rng import scoped_global_seed
from ninr.robustness.certify import certify

SIGMA = 0.25


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 images, n = 2000, 2 rounds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help="noisy rows per forward pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.n, args.repeats = 8, 2000, 2
    perf.configure_threads(1, args.threads, load_aware=True)
    device = torch.device(args.device)
    with scoped_global_seed(0):
        model = build_model("mlp", (1, 28, 28), 10).eval().to(device)
        x = torch.rand(args.images, 1, 28, 28, device=device)
    y = torch.zeros(args.images, dtype=torch.long, device=device)
    kw = {"sigma": SIGMA, "n0": args.n0, "n": args.n, "batch": args.batch}
    rows_total = (args.n0 + args.n) * args.images
    pool = torch.rand(min(rows_total, args.batch), 1, 28, 28, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def batched() -> float:
        sync()
        start = time.perf_counter()
        certify(model, x, y, generator=torch.Generator().manual_seed(0), **kw)
        sync()
        return time.perf_counter() - start

    def one_at_a_time() -> float:
        gen = torch.Generator().manual_seed(0)
        sync()
        start = time.perf_counter()
        for i in range(args.images):
            certify(model, x[i : i + 1], y[i : i + 1], generator=gen, **kw)
        sync()
        return time.perf_counter() - start

    @torch.inference_mode()
    def forward_only() -> float:
        sync()
        start = time.perf_counter()
        for done in range(0, rows_total, args.batch):
            model(pool[: min(args.batch, rows_total - done)]).argmax(dim=1)
        sync()
        return time.perf_counter() - start

    info = machine_info()
    times = interleaved(
        {"batched": batched, "one at a time": one_at_a_time, "forward only": forward_only}, args.repeats
    )
    ratio, q1, q3 = paired_ratio(times["one at a time"], times["batched"])  # time ratio = throughput ratio
    results = []
    for name, ts in times.items():
        seconds = median(ts)
        results.append(
            {
                "case": name,
                "images": args.images,
                "n0": args.n0,
                "n": args.n,
                "batch": args.batch,
                "seconds": seconds,
                "images_per_s": args.images / seconds,
                "rows_per_s": rows_total / seconds,
                "times": ts,
            }
        )
    for r in results:
        r["ratio_batched_over_one_at_a_time"] = ratio
    after = machine_info()["loadavg"]
    title = (
        f"certify throughput: {args.images} images, n0 {args.n0}, n {args.n}, batch {args.batch}, sigma {SIGMA}, "
        f"{torch.get_num_threads()} thread(s), {device}, load {info['loadavg']}->{after}"
    )
    table = [(r["case"], r["seconds"], r["images_per_s"], r["rows_per_s"] / 1e6) for r in results]
    print_table(title, ["variant", "median s", "images/s", "M rows/s"], table)
    print(f"batched / one at a time: {ratio:.2f}x images per second (quartiles {q1:.2f}-{q3:.2f})")
    append_results("certify", results, {**info, "loadavg_after": after}, vars(args))
    return results


if __name__ == "__main__":
    main()
