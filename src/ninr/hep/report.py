"""Tables and plots of photon-study records: pure functions of the records, rebuilt offline at will."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TEST_SETS = ("simulation", "data")


def _by_method(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r["method"]), []).append(r)
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    if np.isinf(arr).any():
        return math.inf, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "n/a"
    if math.isinf(mean):
        return "inf"
    return f"{mean:.1f} ± {std:.1f}" if std > 0 else f"{mean:.1f}"


def summary_rows(records: Sequence[dict[str, Any]], efficiencies: Sequence[float]) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of AUC and rejection, per test set."""
    rows = []
    for method, recs in _by_method(records).items():
        row: dict[str, Any] = {"method": method, "seeds": len({r["seed"] for r in recs})}
        for ts in TEST_SETS:
            sub = [r for r in recs if r["test_set"] == ts]
            row[f"{ts}/auc"] = _mean_std([r["auc"] for r in sub])
            for e in efficiencies:
                key = f"rejection@{round(e * 100)}"
                row[f"{ts}/{key}"] = _mean_std([r.get(key, math.nan) for r in sub])
        rows.append(row)
    return rows


def markdown_table(records: Sequence[dict[str, Any]], efficiencies: Sequence[float]) -> str:
    """Background rejection 1/eps_B (mean ± std over seeds) per method, "simulation" and "data" side by side."""
    head = ["method", "seeds"]
    for ts in TEST_SETS:
        head += [f"{ts} AUC"] + [f"{ts} 1/εB@{round(e * 100)}%" for e in efficiencies]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, recs in _by_method(records).items():
        cells = [method, str(len({r["seed"] for r in recs}))]
        for ts in TEST_SETS:
            sub = [r for r in recs if r["test_set"] == ts]
            auc_mean, auc_std = _mean_std([r["auc"] for r in sub])
            cells.append("n/a" if math.isnan(auc_mean) else f"{auc_mean:.3f} ± {auc_std:.3f}")
            cells += [_cell([r.get(f"rejection@{round(e * 100)}", math.nan) for r in sub]) for e in efficiencies]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draw_rejection(axes: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """Mean rejection 1/eps_B against eps_S over seeds, one line per method, one axis per test set."""
    axes = list(np.atleast_1d(axes))
    for ax, ts in zip(axes, TEST_SETS, strict=True):
        for method, recs in _by_method(records).items():
            curves = [r for r in recs if r["test_set"] == ts and r.get("roc_bkg_eff")]
            if not curves:
                continue
            eff_s = np.asarray(curves[0]["roc_signal_eff"], dtype=np.float64)
            eff_b = np.mean([np.asarray(r["roc_bkg_eff"], dtype=np.float64) for r in curves], axis=0)
            ax.plot(eff_s, np.where(eff_b > 0, 1.0 / np.maximum(eff_b, 1e-12), np.nan), label=method)
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency ε_S")
        ax.set_title(f'test on "{ts}"')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("background rejection 1/ε_B")
    axes[-1].legend(fontsize=8)


def plot_rejection(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Background rejection against signal efficiency (mean over seeds), one panel per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TEST_SETS), figsize=(5 * len(TEST_SETS), 4), sharey=True)
    draw_rejection(axes, records)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_report(records: Sequence[dict[str, Any]], out_dir: str | Path, efficiencies: Sequence[float]) -> list[Path]:
    """``table.md`` and, if matplotlib is installed, ``roc.png`` in ``out_dir``."""
    out = Path(out_dir)
    written = [out / "table.md"]
    written[0].write_text(markdown_table(records, efficiencies))
    with contextlib.suppress(ImportError):  # matplotlib is the optional `plot` extra
        written.append(plot_rejection(records, out / "roc.png"))
    return written
