"""The ``phases`` part's section: phase tables and the phase figure, pure functions of the records.

The linear model's theory (decay time ``1/gamma(k, B)`` and the predicted phase regions) is recomputed
from the parameters the records carry (learning rate, steps, batch size, training-set size) with the
closed forms of :mod:`ninr.dynamics.theory`, through the same function ``ninr phases`` plots with; so is the
two-layer toy's (the map's peak growth of ``phi`` and its predicted regions,
:func:`ninr.dynamics.theory.two_layer.theory_curve`); measured phase ranges come from :func:`phase_ranges`
(the two-layer toy's from its ``rule_phase``), and each measured band's range of ``k_max`` from
:func:`phase_bands`. The MLP's runs are drawn per ``where`` (:func:`panel_name`: ``mlp`` for in-NINR, ``mlp-full``
for full-NINR). Nothing is trained or simulated here.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ninr.dynamics.theory.linear import theory_curve
from ninr.dynamics.theory.two_layer import theory_curve as two_layer_curve
from ninr.report.document import Figure, PartReport
from ninr.report.figures import new_figure, to_png
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table
from ninr.studies.records import final_records

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Rec = Mapping[str, Any]
MODEL_TITLES = {
    "linear": "linear regression",
    "linear2": "two-layer linear toy",
    "mlp": "MLP (in-NINR on fc1)",
    "mlp-full": "MLP (full-NINR: a node on every layer)",
}
NOISES = ("redrawn", "fixed")
MARKERS = {"redrawn": "o", "fixed": "s"}
KEY_COLOURS = {"niw": "tab:blue", "train_loss": "tab:green", "test_loss": "tab:red"}
STRIP_HEIGHT = 0.04  # the measured labels' band under the shaded regions (axes fraction)
LABEL_EM = 0.6
"""A band label's character width in units of its font size, an upper estimate: the bands' labels in matplotlib's
default DejaVu Sans measure 0.47-0.58 em a character. It decides whether a label fits across its band."""
AXES_MARGIN = 1.1
"""The x axis spans this multiple of the shaded regions' log extent (matplotlib's default 5% margin on each side)."""
MLP_TAUS = ("niw", "train_loss", "test_loss")
TAU_KEYS = {"linear": ("niw",), "mlp": MLP_TAUS, "mlp-full": MLP_TAUS}
PEAK_CLIP = 1e3
"""The two-layer panel's frame ends at this peak growth of ``|phi|``: a divergent run is drawn there (a triangle)."""


PHASE_COLOURS = {
    "decoupled": "#d9d9d9",
    "decay": "#c6dbef",
    "oscillating": "#fdd0a2",  # the one-layer model's oscillating decay
    "catapult": "#dadaeb",  # growth, then decay: the two-layer toy's and a network's
    "divergent": "#fcbba1",
}


def phase_ranges(records: Sequence[dict[str, Any]], noise: str = "redrawn") -> list[tuple[str, float, float]]:
    """Contiguous sigma ranges of one phase (majority over seeds; a tie goes to the lowest seed's label):
    ``(phase, sigma_lo, sigma_hi)``.

    Edges sit at the geometric midpoints between grid points.
    """
    by_sigma: dict[float, list[str]] = {}
    for r in sorted(records, key=lambda r: int(r.get("seed") or 0)):
        if r["noise"] == noise:
            by_sigma.setdefault(r["sigma"], []).append(_label(r))
    sigmas = sorted(by_sigma)
    if not sigmas:
        return []
    labels = [max(v, key=v.count) for v in (by_sigma[s] for s in sigmas)]  # the first of the most frequent
    edges = [sigmas[0] / 1.5] + [math.sqrt(a * b) for a, b in itertools.pairwise(sigmas)]
    edges.append(sigmas[-1] * 1.5)
    out: list[tuple[str, float, float]] = []
    for i, lab in enumerate(labels):
        if out and out[-1][0] == lab:
            out[-1] = (lab, out[-1][1], edges[i + 1])
        else:
            out.append((lab, edges[i], edges[i + 1]))
    return out


def _label(rec: Rec) -> str:
    """The run's measured label: the linear model's ``linear_phase``, the two-layer toy's ``rule_phase``, else
    the classifier's ``phase``."""
    return str(rec.get("linear_phase") or rec.get("rule_phase") or rec.get("phase", "n/a"))


def panel_name(model: str, where: str = "input") -> str:
    """The key a model's runs are grouped, tabled and drawn under: the model, and ``mlp-full`` for full-NINR on the
    MLP (``where="all"``), so in-NINR and full-NINR runs never share a table row or a panel."""
    return f"{model}-full" if model == "mlp" and where == "all" else model


def panel_of(rec: Rec) -> str:
    """:func:`panel_name` of a record (records without ``where`` are in-NINR)."""
    return panel_name(str(rec.get("model")), str(rec.get("where") or "input"))


def k_peak(rec: Rec) -> float:
    """The largest ``k`` a run reached: the observer's ``k_max`` of the deciding node where the record has one (the
    MLP), the linear model's constant ``k = eta sigma^2``; NaN for a model with neither (the two-layer toy)."""
    if rec.get("k_max") is not None:
        return float(rec["k_max"])
    return float(rec["k"]) if rec.get("model") == "linear" else math.nan


def phase_bands(records: Sequence[Rec], noise: str = "redrawn") -> list[tuple[str, float, float, float, float]]:
    """:func:`phase_ranges` with each band's ``k_max`` range: ``(phase, sigma_lo, sigma_hi, k_lo, k_hi)``.

    The range is over every run of ``noise`` at the band's grid points (every seed, including a seed outvoted by
    the majority), of :func:`k_peak`; ``k_hi`` is ``inf`` when a run there has a non-finite ``k_max`` (a blow-up),
    and both are NaN when no run there has a ``k`` (the two-layer toy)."""
    mine = [r for r in records if r["noise"] == noise]
    out = []
    for phase, lo, hi in phase_ranges([dict(r) for r in mine], noise):
        ks = [k_peak(r) for r in mine if lo < float(r["sigma"]) < hi]
        finite = [k for k in ks if math.isfinite(k)]
        blown = any(math.isinf(k) for k in ks)  # the classifier's k_max of a series with a non-finite value
        if not finite:
            k_lo = k_hi = math.inf if blown else math.nan
        else:
            k_lo, k_hi = min(finite), (math.inf if blown else max(finite))
        out.append((phase, lo, hi, k_lo, k_hi))
    return out


def k_text(k_lo: float, k_hi: float, name: str = "k_max") -> str:
    """A band's ``k`` range as the tables and the figure write it (``""`` when unknown)."""
    if math.isnan(k_lo):
        return ""
    if math.isinf(k_lo):
        return f"{name} non-finite"
    if math.isinf(k_hi):
        return f"{name} >= {k_lo:.2g}"
    lo, hi = _k_number(k_lo), _k_number(k_hi)
    return f"{name} {lo}" if lo == hi else f"{name} {lo}-{hi}"


def _k_number(k: float) -> str:
    """Two significant digits, without an exponent from 0.001 to 9999 (``100``, not ``1e+02``)."""
    if k != 0 and not 1e-3 <= abs(k) < 1e4:
        return f"{k:.2g}"
    return f"{float(f'{k:.2g}'):g}"


def _counts(labels: Sequence[str]) -> str:
    counts = Counter(labels)
    return next(iter(counts)) if len(counts) == 1 else ", ".join(f"{p} {n}" for p, n in counts.most_common())


def _fmt_tau(runs: Sequence[Rec], key: str) -> str:
    """One run: ``tau ± fit error``; several: mean ± sample std of the runs with a fit (count)."""
    ok = [r for r in runs if r.get(f"tau_{key}_ok")]
    if not ok:
        return "-"
    taus = [float(r[f"tau_{key}"]) for r in ok]
    if len(ok) == 1:
        return f"{taus[0]:.3g} ± {float(ok[0][f'tau_{key}_err']):.2g}"
    mean = sum(taus) / len(taus)
    std = math.sqrt(sum((t - mean) ** 2 for t in taus) / (len(taus) - 1))
    return f"{mean:.3g} ± {std:.2g} ({len(ok)} runs)"


def _groups(finals: Sequence[Rec], panel: str) -> dict[tuple[str, float], list[Rec]]:
    out: dict[tuple[str, float], list[Rec]] = {}
    for r in sorted(finals, key=lambda r: (NOISES.index(r["noise"]), float(r["sigma"]), r["seed"])):
        if panel_of(r) == panel:
            out.setdefault((str(r["noise"]), float(r["sigma"])), []).append(r)
    return out


def _mean(runs: Sequence[Rec], key: str) -> float:
    values = [float(r[key]) for r in runs]
    return sum(values) / len(values)


def linear2_runs_table(finals: Sequence[Rec]) -> Table:
    """One row per (noise, sigma) of the two-layer toy: k0, psi0, the rule's, the classifier's, the predicted and
    the map's phase, the peak growth of ``|phi|`` (measured and map), the lowest ``k`` and the decay time."""
    headers = ["noise", "sigma", "k0", "psi0", "phase (rule)", "classifier", "predicted", "map", "peak growth",
               "map peak", "k min", "tau |phi|"]  # fmt: skip
    cells, data = [], []
    for (noise, sigma), runs in _groups(finals, "linear2").items():
        row = [
            noise, f"{sigma:.4g}", f"{_mean(runs, 'k'):.3g}", f"{_mean(runs, 'psi0'):.3g}",
            _counts([_label(r) for r in runs]), _counts([str(r["phase"]) for r in runs]),
            _counts([str(r["predicted_phase"]) for r in runs]), _counts([str(r["map_phase"]) for r in runs]),
            f"{_mean(runs, 'peak_growth'):.3g}", f"{float(runs[0]['map_peak_growth']):.3g}",
            f"{_mean(runs, 'k_min'):.3g}", _fmt_tau(runs, "niw"),
        ]  # fmt: skip
        cells.append(tuple(row))
        data += [dict(r) for r in runs]
    note = (
        "k0 = eta sigma^2 (|v|^2 + |theta|^2) and psi0 = eta sigma^2 v . theta at initialisation; phase (rule): grew "
        "to 2x and came back below the start = catapult, ended at or above the start = divergent; classifier: "
        "ninr.dynamics.phases.classify on the NIW's top-mode projection with the exact k; map: the closed-form map "
        "at the same k0, psi0 and horizon; tau: decay time of |phi| after its peak (steps)."
    )
    title = f"Phases of the {MODEL_TITLES['linear2']} by sigma"
    return Table("linear2_runs", title, tuple(headers), tuple(cells), tuple(data), note)


def _fmt_range(values: Sequence[float]) -> str:
    """One run's value, or the range over seeds."""
    if len(values) == 1 or min(values) == max(values):
        return f"{values[0]:.3g}"
    return f"{min(values):.3g}-{max(values):.3g}"


def runs_table(finals: Sequence[Rec], panel: str) -> Table:
    """One row per (noise, sigma) of ``panel`` (:func:`panel_name`): k, phase over seeds, decay times (steps); for
    the MLP also the deciding node, its ``k_max`` and its ``k`` after the transient (range over seeds)."""
    if panel == "linear2":
        return linear2_runs_table(finals)
    linear = panel == "linear"
    headers = ["noise", "sigma", "k", "phase", "tau NIW"]
    if linear:
        headers += ["tau theory", "predicted"]
    else:
        headers[2] = "k init"
        headers[4:4] = ["node", "k max", "k after"]
        headers += ["tau train loss", "tau test loss", "test acc"]
    cells, data = [], []
    for (noise, sigma), runs in _groups(finals, panel).items():
        k = sum(float(r["k"]) for r in runs) / len(runs)
        row = [noise, f"{sigma:.4g}", f"{k:.3g}", _counts([_label(r) for r in runs])]
        if linear:
            row += [_fmt_tau(runs, "niw"), f"{float(runs[0]['tau_theory']):.3g}"]
            row += [_counts([str(r["predicted_phase"]) for r in runs])]
        else:
            accs = [float(r["test_acc"]) for r in runs if math.isfinite(float(r["test_acc"]))]
            acc = f"{sum(accs) / len(accs):.4f}" if accs else "n/a"
            row += [_counts([str(r.get("phase_node", "fc1")) for r in runs])]
            k_after = [float(r.get("k_after", math.nan)) for r in runs]
            row += [_fmt_range([k_peak(r) for r in runs]), _fmt_range(k_after)]
            row += [_fmt_tau(runs, "niw"), _fmt_tau(runs, "train_loss"), _fmt_tau(runs, "test_loss"), acc]
        cells.append(tuple(row))
        data += [dict(r) for r in runs]
    note = "Decay times in SGD steps of exponential fits (± fit error; mean ± std over seeds for several runs); "
    if linear:
        note += "k = eta sigma^2 (lambda = 1)."
    else:
        note += (
            "k init = lr sigma^2 lambda_max(H_NI) at initialisation (the largest over the nodes); node: the node that "
            "decided the phase (its NIW norm is the one fitted); k max: its largest k = lr lambda_max measured along "
            "the run, k after: the median of its k over the second half of the run (range over seeds)."
        )
    title = f"Phases of the {MODEL_TITLES.get(panel, panel)} by sigma"
    return Table(f"{panel.replace('-', '_')}_runs", title, tuple(headers), tuple(cells), tuple(data), note)


def ranges_table(finals: Sequence[Rec], theories: Mapping[str, Mapping[str, Any]]) -> Table:
    """Measured sigma ranges of each phase (majority over seeds) per model and noise, with the ``k_max`` range of
    the runs in each measured band (:func:`phase_bands`); predicted for the linear models."""
    cells, data = [], []
    for panel in dict.fromkeys(panel_of(r) for r in finals):
        mine = [dict(r) for r in finals if panel_of(r) == panel]
        sources = [(noise, "measured", phase_bands(mine, noise)) for noise in NOISES]
        if panel in theories:
            regions = [(*x, math.nan, math.nan) for x in theories[panel]["regions"]]
            sources.append(("any", "predicted", regions))
        for noise, kind, bands in sources:
            for phase, lo, hi, k_lo, k_hi in bands:
                k_cells = ("-", "-") if math.isnan(k_lo) else (f"{k_lo:.3g}", f"{k_hi:.3g}")
                cells.append((panel, noise, kind, str(phase), f"{lo:.3g}", f"{hi:.3g}", *k_cells))
                data.append({"model": panel, "noise": noise, "source": kind, "phase": phase, "sigma_lo": lo,
                             "sigma_hi": hi, "k_max_lo": k_lo, "k_max_hi": k_hi})  # fmt: skip
    headers = ("model", "noise", "source", "phase", "sigma from", "sigma to", "k max from", "k max to")
    note = (
        "Measured: the runs' labels, edges at geometric midpoints between grid points; k max: the range of the "
        "runs' largest k over the band's grid points (MLP: the deciding node's k = lr lambda_max measured along the "
        "run; linear: its constant k = eta sigma^2; inf: a run blew up). Predicted: the closed form."
    )
    return Table("phase_ranges", "Sigma ranges of the phases", headers, tuple(cells), tuple(data), note)


def linear_theory(finals: Sequence[Rec]) -> dict[str, Any] | None:
    """The closed-form decay time and phase regions for the linear runs' parameters (``None``: no linear run)."""
    runs = [r for r in finals if r.get("model") == "linear"]
    if not runs:
        return None
    r = runs[0]
    batch = r.get("batch_size") or r["n_train"]
    sigmas = sorted({float(x["sigma"]) for x in runs})
    return theory_curve(float(r["lr"]), int(r["steps"]), int(batch), sigmas)


def linear2_theory(finals: Sequence[Rec]) -> dict[str, Any] | None:
    """The map's peak growth and the predicted regions for the two-layer runs' parameters (``None``: no such run)."""
    runs = [r for r in finals if r.get("model") == "linear2"]
    if not runs:
        return None
    r = runs[0]
    sigmas = sorted({float(x["sigma"]) for x in runs})
    batch = r.get("batch_size") or r["n_train"]
    return two_layer_curve(float(r["lr"]), int(r["steps"]), float(r["norm_sq"]), float(r["phi0"]), int(batch), sigmas)


def _fits_across(ax: Axes, lo: float, hi: float, span: float, lines: Sequence[str], fontsize: float) -> bool:
    """Whether ``lines``, written horizontally, fit inside the band ``lo..hi`` of a log x axis spanning ``span``
    (its log extent) across the axes' width, with the character width :data:`LABEL_EM`."""
    fig = ax.get_figure(root=True)
    assert fig is not None  # every axes here is made by its figure
    width_in = float(fig.get_size_inches()[0])
    axes_pt = ax.get_position().width * width_in * 72  # the share before layout: constrained layout widens it a little
    band_pt = axes_pt * math.log(hi / lo) / span
    return max(len(line) for line in lines) * LABEL_EM * fontsize <= band_pt


def _shade(ax: Axes, regions: Sequence[Sequence[Any]], *, strip: bool = False, k_labels: Sequence[str] = ()) -> bool:
    """Shade each ``(phase, sigma_lo, sigma_hi)`` region and label it with its phase and ``k_labels[i]`` (its k
    range; none when empty): across the band on two lines where that fits, else vertically on one, so neighbouring
    labels do not overlap. Returns whether a label is vertical."""
    vertical = False
    span = AXES_MARGIN * math.log(float(regions[-1][2]) / float(regions[0][1])) if regions else 1.0
    for i, (phase, lo, hi) in enumerate(regions):
        colour = PHASE_COLOURS.get(str(phase), "#eeeeee")
        if strip:  # measured labels: a thin band along the bottom
            ax.axvspan(lo, hi, ymin=0.0, ymax=STRIP_HEIGHT, color=colour, ec="k", lw=0.3)
            continue
        ax.axvspan(lo, hi, color=colour, alpha=0.8, lw=0)
        k = k_labels[i] if i < len(k_labels) else ""
        lines, fontsize = ([str(phase), k], 7) if k else ([str(phase)], 8)
        across = _fits_across(ax, float(lo), float(hi), span, lines, fontsize)
        vertical = vertical or not across
        ax.text(math.sqrt(lo * hi), 0.97, ("\n" if across else ", ").join(lines), transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=fontsize, rotation=0 if across else 90, linespacing=1.1)  # fmt: skip
    return vertical


def _theory_k_labels(regions: Sequence[Sequence[Any]], k_of_sigma: float) -> list[str]:
    """The predicted regions' k ranges, ``k = k_of_sigma sigma^2`` at their edges (the outer edges are the grid's,
    so the first region reads ``k < ...`` and the last ``k > ...``)."""
    out = []
    for i, (_, lo, hi) in enumerate(regions):
        k_lo, k_hi = k_of_sigma * float(lo) ** 2, k_of_sigma * float(hi) ** 2
        if i == 0:
            out.append(f"k < {k_hi:.2g}")
        elif i == len(regions) - 1:
            out.append(f"k > {k_lo:.2g}")
        else:
            out.append(f"k {k_lo:.2g}-{k_hi:.2g}")
    return out


def _measured_shading(runs: Sequence[Rec]) -> tuple[list[tuple[str, float, float]], list[str]]:
    """The measured bands of the redrawn-noise runs (the fixed-noise ones without any) and their k_max labels."""
    bands = phase_bands(runs, "redrawn") or phase_bands(runs, "fixed")
    return [(p, lo, hi) for p, lo, hi, _, _ in bands], [k_text(k_lo, k_hi) for _, _, _, k_lo, k_hi in bands]


def _panel(ax: Axes, finals: Sequence[Rec], model: str, theory: Mapping[str, Any] | None) -> None:
    runs = [dict(r) for r in finals if panel_of(r) == model]
    measured, k_labels = _measured_shading(runs)
    # Measured without a theory: the redrawn bands shaded, the fixed-noise ones (when both ran) in the strip.
    fixed = [] if theory or not phase_ranges(runs, "redrawn") else phase_ranges(runs, "fixed")
    if theory:
        vertical = _shade(ax, theory["regions"], k_labels=_theory_k_labels(theory["regions"], float(runs[0]["lr"])))
    else:
        vertical = _shade(ax, measured, k_labels=k_labels)
    if theory:
        _shade(ax, measured, strip=True)
        ax.text(0.01, STRIP_HEIGHT + 0.01, "measured (redrawn)", transform=ax.transAxes, fontsize=6, va="bottom")
    if fixed:
        _shade(ax, fixed, strip=True)
        ax.text(0.01, STRIP_HEIGHT + 0.01, "shaded: redrawn noise; strip: fixed noise", transform=ax.transAxes,
                fontsize=6, va="bottom")  # fmt: skip
    plotted = False
    for key in TAU_KEYS.get(model, ("niw",)):
        for noise in NOISES:
            ok = [r for r in runs if r["noise"] == noise and r.get(f"tau_{key}_ok")]
            if ok:
                taus = [float(r[f"tau_{key}"]) for r in ok]
                errs = [min(float(r[f"tau_{key}_err"]), 0.9 * t) for r, t in zip(ok, taus, strict=True)]
                label = f"tau {key.replace('_', ' ')} ({noise})"
                style: dict[str, Any] = {
                    "fmt": MARKERS[noise],
                    "color": KEY_COLOURS[key],
                    "ms": 4 if noise == "redrawn" else 6,
                }
                if noise == "fixed":
                    style["mfc"] = "none"  # open squares: a fixed-noise point on top of a redrawn one stays visible
                ax.errorbar([r["sigma"] for r in ok], taus, yerr=errs, capsize=2, label=label, **style)
                plotted = True
    if theory:
        ax.plot(theory["sigma"], theory["tau"], "k-", lw=1.2, label="theory 1/gamma(k, B)")
        plotted = True
    ax.set_xscale("log")
    if plotted:
        ax.set_yscale("log")
        if model != "linear":  # headroom above the markers for the bands' labels (vertical ones are longer), below
            bottom, top = ax.get_ylim()  # them for the strip
            ax.set_ylim(bottom / (2 if fixed else 1), top * (10 if vertical else 4))
        # Under the frame: inside it the legend would cover the bands' labels or the markers.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    r = runs[0]
    horizon = f"{r['steps']} steps" if model == "linear" else f"{r['steps']} steps, batch {r.get('batch_size')}"
    ax.set_title(f"{MODEL_TITLES.get(model, model)}: lr {r['lr']:g}, {horizon}", fontsize=9)
    ax.set_xlabel("sigma")
    ax.set_ylabel("decay time (steps)")


def _linear2_panel(ax: Axes, finals: Sequence[Rec], theory: Mapping[str, Any] | None) -> None:
    """Peak growth of ``|phi|`` against sigma: predicted regions shaded, the measured (rule) labels in a strip, the
    map's peak growth as a line, the measured boundaries as dashed lines; divergent runs at the frame's top."""
    runs = [dict(r) for r in finals if r.get("model") == "linear2"]
    measured = phase_ranges(runs, "redrawn") or phase_ranges(runs, "fixed")
    if theory:  # k0 = lr norm_sq sigma^2 at the predicted regions' edges
        k0_of_sigma = float(runs[0]["lr"]) * float(runs[0]["norm_sq"])
        k_labels = [t.replace("k", "k0", 1) for t in _theory_k_labels(theory["regions"], k0_of_sigma)]
        _shade(ax, theory["regions"], k_labels=k_labels)
    else:
        _shade(ax, measured)
    if theory:
        _shade(ax, measured, strip=True)
        ax.text(0.01, STRIP_HEIGHT + 0.01, "measured (rule)", transform=ax.transAxes, fontsize=6, va="bottom")
        line = [p if math.isfinite(p) and p <= PEAK_CLIP else math.nan for p in theory["peak"]]
        ax.plot(theory["sigma"], line, "k-", lw=1.2, label="map: peak growth")
    for noise in NOISES:
        mine = [r for r in runs if r["noise"] == noise]
        calm = [r for r in mine if math.isfinite(float(r["peak_growth"])) and float(r["peak_growth"]) <= PEAK_CLIP]
        wild = [r for r in mine if r not in calm]
        style: dict[str, Any] = {"color": "tab:blue", "ms": 4 if noise == "redrawn" else 6, "ls": "none"}
        if noise == "fixed":
            style["mfc"] = "none"
        if calm:
            ax.plot([r["sigma"] for r in calm], [r["peak_growth"] for r in calm], MARKERS[noise],
                    label=f"peak |phi| / |phi0| ({noise})", **style)  # fmt: skip
        if wild:
            ax.plot([r["sigma"] for r in wild], [PEAK_CLIP] * len(wild), "^", label=f"beyond the frame ({noise})",
                    **{**style, "color": "tab:red"})  # fmt: skip
    r = runs[0]
    for key in ("measured_decay_catapult", "measured_catapult_divergent"):
        values = sorted(float(x[key]) for x in runs if math.isfinite(float(x.get(key, math.nan))))
        if values:
            k_mid = values[len(values) // 2]
            sigma = math.sqrt(k_mid / (float(r["lr"]) * float(r["norm_sq"])))
            ax.axvline(sigma, color="k", ls="--", lw=0.8)
            ax.text(sigma, 0.3, f"measured k0 = {k_mid:.3g} ", transform=ax.get_xaxis_transform(), fontsize=6,
                    rotation=90, ha="right", va="center")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.5, PEAK_CLIP * 10)
    ax.legend(fontsize=7, loc="center left")
    batch = f"batch {r['batch_size']}" if r.get("batch_size") else "full batch"
    ax.set_title(f"{MODEL_TITLES['linear2']}: lr {r['lr']:g}, {r['steps']} steps, {batch}", fontsize=9)
    ax.set_xlabel("sigma")
    ax.set_ylabel("peak |phi| / |phi0|")


def phase_figure(finals: Sequence[Rec], theories: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Decay time against sigma with the phase regions shaded, one panel per model (theory for linear)."""

    models = list(dict.fromkeys(panel_of(r) for r in finals))
    fig = new_figure(6.0 * max(1, len(models)), 5.4)
    axes = fig.subplots(1, max(1, len(models)), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=False):
        if model == "linear2":
            _linear2_panel(ax, finals, theories.get(model))
        else:
            _panel(ax, finals, model, theories.get(model))
    caption = (
        "Decay time of the NIW norm against sigma (MLP: also of the training and test losses); circles: noise "
        "redrawn every step, squares: fixed per example. Shading: linear, the closed form's predicted phases "
        "(bottom strip: the measured labels of the redrawn-noise runs) and its decay time (line), each band "
        "labelled with its k = eta sigma^2 range; MLP, the measured phases of the redrawn-noise runs, each band "
        "labelled with the range of k_max (the deciding node's largest k = lr lambda_max along the run) of its "
        "runs (bottom strip: the measured phases of the fixed-noise runs, same colours). A run with no decay fit "
        "(too slow for the horizon, growing or divergent) has no marker."
    )
    if "linear2" in models:
        caption += (
            " Two-layer toy: the peak growth of |phi| = |v . theta| against sigma, the predicted phases shaded "
            "(bottom strip: the measured labels by the stated rule), the closed-form map's peak growth (line), the "
            f"measured boundaries (dashed); runs beyond {PEAK_CLIP:g}x (divergent) are triangles at the top."
        )
    return Figure("phases", caption, to_png(fig))


TRAJECTORY_FLOOR = 1e-6
"""Lowest NIW ratio drawn: below it the linear model's NIW only follows the w-a coupling floor."""
TRAJECTORY_HEADROOM = 10.0
"""The frame ends this factor above the highest non-divergent run; divergent runs leave it."""


def _frame(runs: Mapping[str, Sequence[float]], divergent: set[str]) -> tuple[float, float]:
    finite = [v for ys in runs.values() for v in ys if math.isfinite(v) and v > 0]
    calm = [v for rid, ys in runs.items() if rid not in divergent for v in ys if math.isfinite(v) and v > 0]
    top = TRAJECTORY_HEADROOM * max(calm or finite or [1.0])
    return max(min(finite or [1.0]), TRAJECTORY_FLOOR) / 2, min(top, max(finite or [1.0]) * 2)


def _trajectory_panel(ax: Axes, fig: Any, rows: Sequence[Rec], model: str) -> None:
    import matplotlib
    from matplotlib.colors import LogNorm

    seed = min(r["seed"] for r in rows if r["panel"] == model)
    runs: dict[str, list[Rec]] = {}
    for r in rows:
        if r["panel"] == model and r["seed"] == seed:
            runs.setdefault(str(r["run_id"]), []).append(r)
    ratios = {
        rid: [float(p["niw_norm"]) / (float(pts[0]["niw_norm"]) or 1.0) for p in pts] for rid, pts in runs.items()
    }
    sigmas = [float(pts[-1]["sigma"]) for pts in runs.values()]
    norm = LogNorm(min(sigmas), max(sigmas) if max(sigmas) > min(sigmas) else 1.01 * min(sigmas))
    cmap = matplotlib.colormaps["viridis"]
    for rid, pts in runs.items():
        final = pts[-1]
        style = "-" if final["noise"] == "redrawn" else "--"
        ax.plot([p["step"] for p in pts], ratios[rid], style, color=cmap(norm(float(final["sigma"]))), lw=1.0)
    divergent = {rid for rid, pts in runs.items() if pts[-1].get("phase") == "divergent"}
    ax.set_yscale("log")
    ax.set_ylim(*_frame(ratios, divergent))
    ax.set_xlabel("SGD step")
    ax.set_ylabel("NIW norm / initial")
    ax.set_title(f"{MODEL_TITLES.get(model, model)} (solid: redrawn, dashed: fixed)", fontsize=9)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="sigma")


def trajectory_figure(records: Sequence[Rec]) -> Figure:
    """NIW norm over its initial value against SGD step, one line per run of the first seed, a panel per model."""

    # A run's panel is its final record's: that one carries the run's settings (``where``) in every store.
    run_panel = {str(r.get("run_id")): panel_of(r) for r in records if r.get("final")}
    rows = [{**r, "panel": run_panel.get(str(r.get("run_id")), panel_of(r))} for r in records]
    rows = [r for r in rows if "niw_norm" in r and "step" in r]
    models = list(dict.fromkeys(r["panel"] for r in rows))
    fig = new_figure(6.0 * max(1, len(models)), 4.0)
    axes = fig.subplots(1, max(1, len(models)), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=False):
        _trajectory_panel(ax, fig, rows, model)
    caption = (
        "NIW norm relative to its initial value along each run of the first seed (sampled points; full-NINR: the "
        "node that decided the run's phase). "
        f"The frame ends {TRAJECTORY_HEADROOM:g}x above the highest non-divergent run: divergent runs leave it."
    )
    return Figure("trajectories", caption, to_png(fig))


def phases_part_report(records: Sequence[Rec], study: Mapping[str, Any]) -> PartReport:
    """The ``phases`` part's section: phase ranges, per-model run tables, the phase and trajectory figures."""
    report = PartReport("phases", str(study.get("title", "Phases of NIN dynamics")))
    finals = final_records(records)
    if not finals:
        report.notes.append("No finished runs yet.")
        return report
    theories = {}
    theory = linear_theory(finals)
    if theory is not None:
        theories["linear"] = theory
        lin = [r for r in finals if r["model"] == "linear"]
        agree = sum(_label(r) == r["predicted_phase"] for r in lin)
        report.notes.append(
            f"Linear model: the measured label equals the closed form's predicted phase in {agree} of {len(lin)} "
            f"runs. {theory['summary']}."
        )
    theory2 = linear2_theory(finals)
    if theory2 is not None:
        theories["linear2"] = theory2
        report.notes.append(linear2_note(finals, theory2))
    report.tables.append(ranges_table(finals, theories))
    for panel in dict.fromkeys(panel_of(r) for r in finals):
        report.tables.append(runs_table(finals, panel))
    report.figures.append(phase_figure(finals, theories))
    report.figures.append(trajectory_figure(records))
    return report


def linear2_note(finals: Sequence[Rec], theory: Mapping[str, Any]) -> str:
    """How the two-layer runs' rule labels and classifier verdicts compare with the predicted phases, and the
    measured boundaries beside the predicted ones."""
    runs = [r for r in finals if r.get("model") == "linear2"]
    rule = sum(_label(r) == r["predicted_phase"] for r in runs)
    cls = sum(r["phase"] == r["predicted_phase"] for r in runs)
    text = (
        f"Two-layer toy: the rule's label equals the predicted phase in {rule} of {len(runs)} runs, the "
        f"classifier's in {cls}. {theory['summary']}."
    )
    measured = [r for r in runs if math.isfinite(float(r.get("measured_decay_catapult", math.nan)))]
    if measured:
        r = measured[0]
        text += (
            f" Measured (bisection, majority of {r['boundary_seeds']} seeds): decay|catapult "
            f"{float(r['measured_decay_catapult']):.4g} (predicted {float(r['predicted_decay_catapult']):.4g}), "
            f"catapult|divergent {float(r['measured_catapult_divergent']):.4g} "
            f"(predicted {float(r['predicted_catapult_divergent']):.4g})."
        )
    return text


SECTIONS.add("phases", phases_part_report, doc="Phase tables and the phase figure against sigma.")
