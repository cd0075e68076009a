"""Tables and plots of phase-sweep records: pure functions of the records (rebuildable offline)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ninr.errors import ConfigError

PHASE_COLOURS = {
    "decoupled": "#d9d9d9",
    "decay": "#c6dbef",
    "oscillating": "#fdd0a2",
    "catapult": "#fdd0a2",
    "divergent": "#fcbba1",
}


def _fmt_tau(rec: dict[str, Any], key: str) -> str:
    if not rec.get(f"tau_{key}_ok"):
        return "-"
    tau, err = rec[f"tau_{key}"], rec[f"tau_{key}_err"]
    return f"{tau:.3g} ± {err:.2g}"


def table_markdown(records: Sequence[dict[str, Any]]) -> str:
    """One row per run: sigma, k, noise, phase, decay times (steps) with errors."""
    if not records:
        return "(no records)\n"
    linear = records[0]["model"] == "linear"
    head = ["noise", "sigma", "k", "phase", "tau NIW"]
    head += ["tau theory", "predicted"] if linear else ["tau train loss", "tau test loss", "test acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(records, key=lambda r: (r["noise"], r["seed"], r["sigma"])):
        cells = [
            r["noise"],
            f"{r['sigma']:.4g}",
            f"{r['k']:.3g}",
            r.get("linear_phase", r["phase"]),
            _fmt_tau(r, "niw"),
        ]
        if linear:
            cells += [f"{r['tau_theory']:.3g}", r["predicted_phase"]]
        else:
            cells += [_fmt_tau(r, "train_loss"), _fmt_tau(r, "test_loss"), f"{r['test_acc']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def phase_ranges(records: Sequence[dict[str, Any]], noise: str = "redrawn") -> list[tuple[str, float, float]]:
    """Contiguous sigma ranges of one phase (majority over seeds): ``(phase, sigma_lo, sigma_hi)``.

    Edges sit at the geometric midpoints between grid points.
    """
    by_sigma: dict[float, list[str]] = {}
    for r in records:
        if r["noise"] == noise:
            by_sigma.setdefault(r["sigma"], []).append(r.get("linear_phase", r["phase"]))
    sigmas = sorted(by_sigma)
    if not sigmas:
        return []
    labels = [max(set(v), key=v.count) for v in (by_sigma[s] for s in sigmas)]
    edges = [sigmas[0] / 1.5] + [math.sqrt(a * b) for a, b in itertools.pairwise(sigmas)]
    edges.append(sigmas[-1] * 1.5)
    out: list[tuple[str, float, float]] = []
    for i, lab in enumerate(labels):
        if out and out[-1][0] == lab:
            out[-1] = (lab, out[-1][1], edges[i + 1])
        else:
            out.append((lab, edges[i], edges[i + 1]))
    return out


def plot_phases(records: Sequence[dict[str, Any]], path: str | Path, *, theory: dict[str, Any] | None = None) -> Path:
    """Decay time of the NIW norm against sigma, phase regions shaded; the theory curve when given.

    ``theory``: ``{"sigma": [...], "tau": [...], "regions": [(phase, lo, hi), ...]}`` (linear model);
    without it the regions come from the classified runs.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("plots need matplotlib: pip install 'ninr[plot]'") from exc
    keys = ["niw"] if records and records[0]["model"] == "linear" else ["niw", "train_loss", "test_loss"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    regions = theory["regions"] if theory else phase_ranges(records)
    for phase, lo, hi in regions:
        ax.axvspan(lo, hi, color=PHASE_COLOURS.get(phase, "#eeeeee"), alpha=0.8, lw=0)
        narrow = hi / lo < 2.5  # a narrow band gets a vertical label so neighbours do not overlap
        ax.text(
            math.sqrt(lo * hi),
            0.97,
            phase,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
            rotation=90 if narrow else 0,
        )
    markers = {"redrawn": "o", "fixed": "s"}
    for key in keys:
        for noise in ("redrawn", "fixed"):
            rows = [r for r in records if r["noise"] == noise and r.get(f"tau_{key}_ok")]
            if rows:
                ax.errorbar(
                    [r["sigma"] for r in rows],
                    [r[f"tau_{key}"] for r in rows],
                    yerr=[min(r[f"tau_{key}_err"], 0.9 * r[f"tau_{key}"]) for r in rows],
                    fmt=markers[noise],
                    ms=4,
                    capsize=2,
                    label=f"{key.replace('_', ' ')} ({noise})",
                )
    if theory:
        ax.plot(theory["sigma"], theory["tau"], "k-", lw=1.2, label="theory 1/rate(k)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sigma")
    ax.set_ylabel("decay time (steps)")
    model = records[0]["model"] if records else "?"
    ax.set_title(f"NIN phase diagram ({model}, lr={records[0]['lr'] if records else '?'})")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows as JSON lines (NaN and inf written as JSON extensions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows), encoding="utf-8")
