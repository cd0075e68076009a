"""Fashion-MNIST load time from the gzip files, in a fresh process each time (no in-process cache).

Usage: python benchmarks/data_load.py [--quick] [--repeats 3]

Times ``ninr.data.load_dataset("fashion-mnist")`` (locate, gunzip, verify sha256, parse the IDX files,
convert to float32) inside a new interpreter, after its imports, so the figure is what a fresh run pays.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench_common import append_results, machine_info, median, print_table

SNIPPET = """
import time
from ninr.data import load_dataset
start = time.perf_counter()
data = load_dataset("fashion-mnist")
print(time.perf_counter() - start, len(data.x_train), len(data.x_test))
"""


def load_seconds() -> float:
    out = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(same as the default: loading is short)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    info = machine_info()
    times = [load_seconds() for _ in range(args.repeats)]
    after = machine_info()["loadavg"]
    rows = [{"case": "fashion-mnist load (gzip)", "seconds": median(times), "all": times}]
    title = f"Fashion-MNIST load from gzip, fresh process, load {info['loadavg']}->{after}"
    table = [(r["case"], r["seconds"], " ".join(f"{t:.2f}" for t in times)) for r in rows]
    print_table(title, ["what", "median s", "runs"], table)
    append_results("data_load", rows, {**info, "loadavg_after": after}, vars(args))
    return rows


if __name__ == "__main__":
    main()
