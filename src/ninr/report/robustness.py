"""The robustness section of a report: accuracy against input-corruption strength, from records alone.

Reads the records of the ``robustness`` run hook (``kind = "robustness"``, see
:mod:`ninr.studies.robustness_hook`) and draws, one panel per architecture and one line per method
row, the mean over seeds with a band of one sample standard deviation (ddof=1):

* accuracy against the Gaussian noise std (std 0 is the clean accuracy on the same images);
* accuracy against severity, averaged over the corruption set (each run's mean over its corruptions
  at each severity, then mean ± std over seeds);
* one figure per architecture with a panel per corruption.

The table gives, per (architecture, method), clean accuracy, accuracy at a few noise stds, the mean over
the noise grid and the mean corruption accuracy over every corruption and severity, in %.

When the records hold them (:func:`ninr.robustness.evaluate` writes them):

* attack records (``family = "attack"``): accuracy against the attack budget epsilon, one panel per
  (architecture, attack), one line per method, mean ± std over seeds (epsilon 0 is the clean accuracy), and a
  table of accuracy at each (attack, epsilon);
* shifted test sets (``family = "shift"``): a table of accuracy on each;

* certification records (``condition = "certify"``): certified accuracy against the L2 radius, one panel
  per (architecture, smoothing sigma, model noise mode), one line per method, mean ± std over seeds, and a
  table of certified accuracy at a few radii, the average certified radius and the abstain rate;
* calibration records (``metric`` ``ece``, ``nll``, ``brier``): a table of clean ECE, NLL and Brier score and
  of the mean ECE over the shifted conditions (corruptions, noise stds, shifts), mean ± std over seeds, and
  reliability diagrams of clean data, one panel per (architecture, method, noise mode), the seeds' bins
  pooled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ninr.report.comparison import sample_std
from ninr.report.document import Figure, PartReport
from ninr.report.figures import new_figure, to_png
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table, fmt_mean_std
from ninr.robustness.plots import certified_points, draw_reliability, reliability_points

Rec = Mapping[str, Any]
Series = dict[str, list[tuple[float, float, float]]]  # label -> [(level, mean, std)]

KIND = "robustness"
NOISE = "gaussian-noise"
ATTACK = "attack"
SHIFT = "shift"
SHOWN_STDS = (0.1, 0.3, 0.5)  # the noise stds the paper quotes; shown as table columns when in the grid
SCALE = 100.0
TITLE = "Robustness to input corruption"


def robustness_rows(records: Sequence[Rec]) -> list[Rec]:
    """The robustness hook's records (noise off, accuracy)."""
    return [
        r
        for r in records
        if r.get("kind") == KIND and r.get("metric", "accuracy") == "accuracy" and r.get("noise", "off") == "off"
    ]


def _order(rows: Sequence[Rec], key: str) -> list[str]:
    return list(dict.fromkeys(str(r.get(key)) for r in rows))


def corruption_names(rows: Sequence[Rec]) -> list[str]:
    """The conditions evaluated by severity, in order of first appearance."""
    return _order([r for r in rows if r.get("severity") is not None], "condition")


def _runs(rows: Sequence[Rec]) -> dict[str, list[Rec]]:
    runs: dict[str, list[Rec]] = {}
    for r in rows:
        runs.setdefault(str(r.get("run_id")), []).append(r)
    return runs


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def run_metrics(run: Sequence[Rec]) -> dict[str, float]:
    """One run's summary (fractions): ``clean``, ``std=<s>`` per noise std, ``noise mean``, ``severity=<k>`` (mean
    over its corruptions), ``corruption mean`` (over every corruption and severity), ``attack=<label>@<eps>``
    per attack and budget and ``shift=<name>`` per shifted test set."""
    out: dict[str, float] = {}
    corr: dict[int, list[float]] = {}
    noise: list[float] = []
    for r in run:
        value = float(r["value"])
        if r["condition"] == "clean":
            out["clean"] = value
        elif r["condition"] == NOISE and r.get("intensity") is not None:
            out[f"std={float(r['intensity']):g}"] = value
            noise.append(value)
        elif r.get("family") == ATTACK and r.get("epsilon") is not None:
            out[f"{ATTACK}={r['condition']}@{float(r['epsilon']):g}"] = value
        elif r.get("family") == SHIFT:
            out[f"{SHIFT}={r['condition']}"] = value
        elif r.get("severity") is not None:
            corr.setdefault(int(r["severity"]), []).append(value)
    if noise:
        out["noise mean"] = _mean(noise)
    for severity, values in sorted(corr.items()):
        out[f"severity={severity}"] = _mean(values)
    if corr:
        out["corruption mean"] = _mean([v for vs in corr.values() for v in vs])
    return out


def summaries(rows: Sequence[Rec]) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Per (arch, label), in order of first appearance: the :func:`run_metrics` of each run (seed)."""
    out: dict[tuple[str, str], list[dict[str, float]]] = {}
    for run in _runs(rows).values():
        out.setdefault((str(run[0].get("arch")), str(run[0].get("label"))), []).append(run_metrics(run))
    return out


def _series(runs: Sequence[dict[str, float]], levels: Sequence[tuple[float, str]]) -> list[tuple[float, float, float]]:
    points = []
    for level, key in levels:
        values = [m[key] for m in runs if key in m]
        if values:
            points.append((level, SCALE * _mean(values), SCALE * sample_std(values)))
    return points


def _curves(rows: Sequence[Rec], levels: Callable[[dict[str, float]], list[tuple[float, str]]]) -> dict[str, Series]:
    """Per arch, per label: the points at ``levels(metrics)`` (level, metric key) over the runs' metrics."""
    out: dict[str, Series] = {}
    for (arch, label), runs in summaries(rows).items():
        merged: dict[str, float] = {k: v for m in runs for k, v in m.items()}
        out.setdefault(arch, {})[label] = _series(runs, levels(merged))
    return out


def _noise_levels(metrics: dict[str, float]) -> list[tuple[float, str]]:
    stds = sorted(float(k[4:]) for k in metrics if k.startswith("std="))
    return [(0.0, "clean"), *((s, f"std={s:g}") for s in stds)]


def _severity_levels(metrics: dict[str, float]) -> list[tuple[float, str]]:
    sev = sorted(int(k[9:]) for k in metrics if k.startswith("severity="))
    return [(0.0, "clean"), *((float(s), f"severity={s}") for s in sev)]


def _draw(ax: Any, series: Series, colors: Mapping[str, str]) -> None:
    for label, pts in series.items():
        if len(pts) < 2:
            continue
        xs, means, stds = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        ax.plot(xs, means, marker="o", markersize=3, color=colors[label], label=label)
        lo = [m - s for m, s in zip(means, stds, strict=True)]
        hi = [m + s for m, s in zip(means, stds, strict=True)]
        ax.fill_between(xs, lo, hi, color=colors[label], alpha=0.15, linewidth=0)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def _panels(panels: Mapping[str, Series], xlabel: str, colors: Mapping[str, str], cols: int) -> Any:
    cols = max(1, min(cols, len(panels)))
    n_rows = max(1, math.ceil(len(panels) / cols))
    fig = new_figure(4.2 * cols if cols < 3 else 3.0 * cols, 3.0 * n_rows + 0.9)
    axes = fig.subplots(n_rows, cols, squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels.items(), strict=False):
        _draw(ax, series, colors)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("test accuracy (%)", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    if handles:
        # at most two entries per panel column in a legend row, so a one-panel figure's legend fits its width
        ncols = min(5, len(handles), 2 * cols)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=ncols)
    return fig


def noise_figure(rows: Sequence[Rec], colors: Mapping[str, str]) -> Figure:
    """Accuracy against the Gaussian noise std, one panel per architecture."""
    fig = _panels(_curves(rows, _noise_levels), "Gaussian noise std (0: clean)", colors, cols=2)
    caption = "Test accuracy under Gaussian input noise, mean ± 1 std over seeds (band); std 0 is clean accuracy."
    return Figure("robustness_noise", caption, to_png(fig))


def severity_figure(rows: Sequence[Rec], colors: Mapping[str, str], n_corruptions: int) -> Figure:
    """Accuracy against severity averaged over the corruption set, one panel per architecture."""
    fig = _panels(_curves(rows, _severity_levels), "severity (0: clean)", colors, cols=2)
    caption = (
        f"Test accuracy against corruption severity, averaged over {n_corruptions} corruption(s) per run; "
        "mean ± 1 std over seeds (band)."
    )
    return Figure("robustness_severity", caption, to_png(fig))


def corruption_figure(rows: Sequence[Rec], arch: str, colors: Mapping[str, str]) -> Figure:
    """One panel per corruption: accuracy against severity for ``arch``, one line per method."""
    mine = [r for r in rows if str(r.get("arch")) == arch]
    panels: dict[str, Series] = {}
    for name in corruption_names(mine):
        subset = [r for r in mine if r["condition"] in (name, "clean")]
        panels[name] = _curves(subset, _severity_levels).get(arch, {})
    fig = _panels(panels, "severity", colors, cols=5)
    safe = "".join(c if c.isalnum() else "_" for c in arch)
    caption = f"{arch}: test accuracy per corruption against severity (0: clean), mean ± 1 std over seeds."
    return Figure(f"robustness_corruptions_{safe}", caption, to_png(fig))


def robustness_table(rows: Sequence[Rec]) -> Table:
    """Per (arch, method): clean, a few noise stds, the noise-grid mean and the corruption mean, in %."""
    groups = summaries(rows)
    all_stds = sorted({float(k[4:]) for runs in groups.values() for m in runs for k in m if k.startswith("std=")})
    shown = [s for s in all_stds if any(math.isclose(s, t) for t in SHOWN_STDS)] or all_stds[-1:]
    keys = [("clean", "clean"), *((f"std={s:g}", f"noise std {s:g}") for s in shown)]
    keys += [("noise mean", "noise mean"), ("corruption mean", "corruption mean")]
    table = _metric_table(groups, keys, "robustness", "Accuracy under input corruption")
    note = (
        "Mean ± sample std (ddof=1) over seeds, in %. Noise mean: mean accuracy over the Gaussian noise grid. "
        "Corruption mean: mean over every corruption and severity evaluated."
    )
    return Table(table.name, table.title, table.headers, table.cells, table.data, note)


def _attack_keys(groups: Mapping[Any, list[dict[str, float]]]) -> list[tuple[str, float]]:
    """The (attack, epsilon) pairs of the runs' metrics, attacks in order of first appearance, epsilons sorted."""
    seen: dict[str, set[float]] = {}
    for runs in groups.values():
        for m in runs:
            for key in m:
                if key.startswith(f"{ATTACK}="):
                    name, eps = key[len(ATTACK) + 1 :].rsplit("@", 1)
                    seen.setdefault(name, set()).add(float(eps))
    return [(name, eps) for name, epss in seen.items() for eps in sorted(epss)]


def _metric_table(
    groups: Mapping[tuple[str, str], list[dict[str, float]]], keys: Sequence[tuple[str, str]], name: str, title: str
) -> Table:
    headers = ("arch", "method", "runs", *(f"{t} (%)" for _, t in keys))
    cells, data = [], []
    for (arch, label), runs in groups.items():
        row: list[str] = [arch, label, str(len(runs))]
        raw: dict[str, Any] = {"arch": arch, "method": label, "runs": len(runs)}
        for key, t in keys:
            values = [SCALE * m[key] for m in runs if key in m]
            mean, std = (_mean(values), sample_std(values)) if values else (None, None)
            row.append(fmt_mean_std(mean, std))
            raw[f"{t} mean"], raw[f"{t} std"] = mean, std
        cells.append(tuple(row))
        data.append(raw)
    return Table(name, title, headers, tuple(cells), tuple(data), "")


def attack_table(rows: Sequence[Rec]) -> Table:
    """Per (arch, method): accuracy under each attack at each budget, mean ± std over seeds, in %."""
    groups = summaries(rows)
    keys = [(f"{ATTACK}={a}@{e:g}", f"{a} eps {e:g}") for a, e in _attack_keys(groups)]
    table = _metric_table(groups, keys, "robustness_attacks", "Accuracy under adversarial attack")
    n = sorted({int(r["n"]) for r in rows if r.get("family") == ATTACK and r.get("n") is not None})
    note = (
        f"Mean ± sample std (ddof=1) over seeds, in %, on the first {', '.join(map(str, n))} test images; L-inf "
        "budgets epsilon on [0, 1] pixels unless the attack's label names another norm; the model's noise off."
    )
    return Table(table.name, table.title, table.headers, table.cells, table.data, note)


def attack_figure(rows: Sequence[Rec], colors: Mapping[str, str]) -> Figure:
    """Accuracy against the attack budget, one panel per (architecture, attack)."""
    panels: dict[str, Series] = {}
    for (arch, label), runs in summaries(rows).items():
        budgets: dict[str, list[tuple[float, str]]] = {}
        for attack, eps in _attack_keys({(arch, label): runs}):  # epsilons sorted per attack
            budgets.setdefault(attack, [(0.0, "clean")]).append((eps, f"{ATTACK}={attack}@{eps:g}"))
        for attack, levels in budgets.items():
            panels.setdefault(f"{arch}: {attack}", {})[label] = _series(runs, levels)
    fig = _panels(panels, "attack budget epsilon (0: clean)", colors, cols=2)
    caption = "Test accuracy under adversarial attack against its budget, mean ± 1 std over seeds (band)."
    return Figure("robustness_attacks", caption, to_png(fig))


def shift_table(rows: Sequence[Rec]) -> Table:
    """Per (arch, method): accuracy on each shifted test set, mean ± std over seeds, in %."""
    groups = summaries(rows)
    names = list(dict.fromkeys(k for runs in groups.values() for m in runs for k in m if k.startswith(f"{SHIFT}=")))
    keys = [("clean", "clean"), *((k, k[len(SHIFT) + 1 :]) for k in names)]
    table = _metric_table(groups, keys, "robustness_shifts", "Accuracy on shifted test sets")
    note = "Mean ± sample std (ddof=1) over seeds, in %, on the shifted copies of the evaluated test images."
    return Table(table.name, table.title, table.headers, table.cells, table.data, note)


def certify_rows(records: Sequence[Rec]) -> list[Rec]:
    """The certified-accuracy records (every noise mode)."""
    return [
        r
        for r in records
        if r.get("kind") == KIND and r.get("condition") == "certify" and r.get("metric") == "certified-accuracy"
    ]


def certify_figure(rows: Sequence[Rec], colors: Mapping[str, str]) -> Figure:
    """Certified accuracy (%) against the L2 radius: a panel per (arch, sigma, noise mode), a line per method."""
    panels: dict[str, Series] = {}
    for arch in _order(rows, "arch"):
        for mode in _order(rows, "noise"):
            mine = [r for r in rows if str(r.get("arch")) == arch and str(r.get("noise")) == mode]
            for sigma, groups in certified_points(mine, by="label", noise=mode).items():
                title = f"{arch}, sigma {sigma:g}" + (", model noise on" if mode == "on" else "")
                panels[title] = {
                    label: [(rad, SCALE * m, SCALE * sd) for rad, m, sd, _ in pts] for label, pts in groups.items()
                }
    fig = _panels(panels, "L2 radius", colors, cols=3)
    for ax in fig.axes:
        if ax.get_visible() and ax.get_ylabel():
            ax.set_ylabel("certified accuracy (%)", fontsize=9)
    first = rows[0]
    caption = (
        "Certified L2 accuracy of the smoothed classifier (randomized smoothing, Cohen et al. 2019: "
        f"n0 = {first.get('n0')}, n = {first.get('draws')}, alpha = {first.get('alpha')}, {first.get('n')} test "
        "images): the fraction certified correct with radius >= r; mean ± 1 std over seeds (band)."
    )
    return Figure("robustness_certify", caption, to_png(fig))


SHOWN_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Radii shown as columns of the certification table when the records have more than :data:`MAX_RADII`."""
MAX_RADII = 6


def _shown_radii(radii: Sequence[float]) -> list[float]:
    if len(radii) <= MAX_RADII:
        return list(radii)
    shown = [r for r in radii if any(math.isclose(r, s) for s in SHOWN_RADII)]
    return shown or [radii[0], radii[-1]]


def certify_table(records: Sequence[Rec]) -> Table:
    """Per (arch, method, sigma, noise mode): certified accuracy at a few radii (%), the average certified
    radius and the abstain rate (%), mean ± sample std over seeds."""
    runs: dict[tuple[str, str, float, str], dict[str, dict[str, float]]] = {}
    settings: dict[tuple[Any, ...], None] = {}
    for r in records:
        if r.get("kind") != KIND or r.get("condition") != "certify":
            continue
        group = (str(r.get("arch")), str(r.get("label")), float(r["intensity"]), str(r.get("noise", "off")))
        run = runs.setdefault(group, {}).setdefault(str(r.get("run_id")), {})
        key = f"r={float(r['epsilon']):g}" if r["metric"] == "certified-accuracy" else str(r["metric"])
        run[key] = float(r["value"])
        settings[(r.get("n0"), r.get("draws"), r.get("alpha"), r.get("n"))] = None
    radii = sorted({float(k[2:]) for g in runs.values() for m in g.values() for k in m if k.startswith("r=")})
    columns = [(f"r={r:g}", f"r = {r:g} (%)", SCALE, 1) for r in _shown_radii(radii)]
    columns += [("average-radius", "average radius", 1.0, 3), ("abstain-rate", "abstain (%)", SCALE, 1)]
    headers = ("arch", "method", "sigma", "noise", "runs", *(title for _, title, _, _ in columns))
    cells, data = [], []
    for (arch, label, sigma, mode), per_run in runs.items():
        row = [arch, label, f"{sigma:g}", mode, str(len(per_run))]
        raw: dict[str, Any] = {"arch": arch, "method": label, "sigma": sigma, "noise": mode, "runs": len(per_run)}
        for key, title, scale, digits in columns:
            values = [scale * m[key] for m in per_run.values() if key in m]
            mean, std = (_mean(values), sample_std(values)) if values else (None, None)
            row.append(fmt_mean_std(mean, std, digits=digits))
            raw[f"{title} mean"], raw[f"{title} std"] = mean, std
        cells.append(tuple(row))
        data.append(raw)
    how = "; ".join(f"n0 = {n0}, n = {n}, alpha = {alpha}, {images} test images" for n0, n, alpha, images in settings)
    note = (
        "Randomized smoothing (Cohen et al. 2019, CERTIFY): certified accuracy at radius r is the fraction of the "
        "images certified correct with an L2 radius >= r; average radius: the mean certified radius, 0 for an "
        f"abstained or wrong image; abstain: no class with p_lower > 1/2 ({how}). Mean ± sample std (ddof=1) "
        "over seeds."
    )
    return Table(
        "robustness_certify", "Certified L2 accuracy (randomized smoothing)", headers, tuple(cells), tuple(data), note
    )


CALIBRATION = ("ece", "nll", "brier")


def calibration_rows(records: Sequence[Rec]) -> list[Rec]:
    """The calibration records (every noise mode)."""
    return [r for r in records if r.get("kind") == KIND and r.get("metric") in CALIBRATION]


def calibration_table(rows: Sequence[Rec]) -> Table:
    """Per (arch, method, noise mode): clean ECE, NLL, Brier and the shifted conditions' mean ECE, over seeds."""
    runs: dict[tuple[str, str, str], dict[str, dict[str, list[float]]]] = {}
    for r in rows:
        group = (str(r.get("arch")), str(r.get("label")), str(r.get("noise", "off")))
        run = runs.setdefault(group, {}).setdefault(str(r.get("run_id")), {})
        name = r["metric"] if r["condition"] == "clean" else f"shifted {r['metric']}"
        run.setdefault(name, []).append(float(r["value"]))
    columns = (("ece", "clean ECE"), ("nll", "clean NLL"), ("brier", "clean Brier"), ("shifted ece", "shifted ECE"))
    headers = ("arch", "method", "noise", "runs", *(title for _, title in columns))
    cells, data = [], []
    for (arch, label, mode), per_run in runs.items():
        row = [arch, label, mode, str(len(per_run))]
        raw: dict[str, Any] = {"arch": arch, "method": label, "noise": mode, "runs": len(per_run)}
        for key, title in columns:
            values = [_mean(m[key]) for m in per_run.values() if key in m]
            mean, std = (_mean(values), sample_std(values)) if values else (None, None)
            row.append(fmt_mean_std(mean, std, digits=3))
            raw[f"{title} mean"], raw[f"{title} std"] = mean, std
        cells.append(tuple(row))
        data.append(raw)
    bins = ", ".join(str(b) for b in sorted({int(r["bins"]) for r in rows if r.get("bins") is not None})) or "15"
    note = (
        f"Mean ± sample std (ddof=1) over seeds. ECE: {bins} equal-width confidence bins (Guo et al. 2017); "
        "NLL in nats; Brier: sum over classes of the squared error, in [0, 2]. Shifted ECE: each run's mean over its "
        "corruptions, "
        "noise stds and shifted sets. With the model's noise on, the probabilities are the mean softmax over draws."
    )
    return Table(
        "robustness_calibration", "Calibration, clean and under shift", headers, tuple(cells), tuple(data), note
    )


def reliability_figure(rows: Sequence[Rec], colors: Mapping[str, str]) -> Figure | None:
    """Reliability diagrams of clean data: a panel per (arch, method, noise mode), the seeds' bins pooled."""
    panels: list[tuple[str, dict[str, Any], str]] = []
    for mode in _order(rows, "noise"):
        points = reliability_points(rows, by=("arch", "label"), noise=mode)
        for group, bins in points.items():
            arch, label = group.split(" | ", 1)
            title = f"{arch} | {label}" + (" (noise on)" if mode == "on" else "")
            panels.append((title, bins, colors.get(label, "C0")))
    if not panels:
        return None
    cols = max(1, min(4, len(panels)))
    n_rows = math.ceil(len(panels) / cols)
    fig = new_figure(2.9 * cols, 2.9 * n_rows)
    axes = fig.subplots(n_rows, cols, squeeze=False)
    for ax, (title, bins, color) in zip(axes.flat, panels, strict=False):
        draw_reliability(ax, bins, color)
        mean, std, seeds = bins["ece"]
        ax.set_title(f"{title}\nECE {mean:.3f}" + (f" ± {std:.3f}" if seeds > 1 else ""), fontsize=8)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    caption = (
        "Reliability diagrams on clean test images: accuracy per equal-width confidence bin (bars; dots at the "
        "bins' mean confidence) against the diagonal of perfect calibration; the seeds' bins pooled, ECE mean ± "
        "1 std over seeds."
    )
    return Figure("robustness_reliability", caption, to_png(fig))


def robustness_report(records: Sequence[Rec], study: Mapping[str, Any]) -> PartReport:
    """The robustness section of a part whose runs carry the ``robustness`` hook's records."""
    report = PartReport(f"{study.get('part', 'table')}-robustness", TITLE)
    rows = robustness_rows(records)
    finals = [r for r in records if r.get("final")]
    diverged = sum(1 for r in finals if r.get("run_status") == "diverged")
    missing = len({str(r.get("run_id")) for r in finals}) - len(_runs(rows)) - diverged
    if not rows:
        report.notes.append('No robustness records: run the part with hooks = ["robustness"].')
        return report
    labels = _order(rows, "label")
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    corruptions = corruption_names(rows)
    n_images = sorted({int(r["n"]) for r in rows if r.get("n") is not None})
    report.notes.append(
        f"Evaluated after training, on the first {', '.join(map(str, n_images))} test images, in eval mode "
        "(injected noise off); corruption noise drawn from each run's seed. Runs, times and store below are the "
        "part's (the evaluation is part of each run)."
    )
    if diverged:
        report.notes.append(f"{diverged} diverged run(s) have no robustness records and are not in the curves.")
    if missing > 0:
        report.notes.append(f"{missing} finished run(s) have no robustness records (trained without the hook).")
    report.tables.append(robustness_table(rows))
    if any(r["condition"] == NOISE for r in rows):
        report.figures.append(noise_figure(rows, colors))
    if corruptions:
        report.figures.append(severity_figure(rows, colors, len(corruptions)))
        report.figures += [corruption_figure(rows, arch, colors) for arch in _order(rows, "arch")]
    if any(r.get("family") == ATTACK for r in rows):
        report.tables.append(attack_table(rows))
        report.figures.append(attack_figure(rows, colors))
    if any(r.get("family") == SHIFT for r in rows):
        report.tables.append(shift_table(rows))
    certified = certify_rows(records)
    if certified:
        report.tables.append(certify_table(records))
        report.figures.append(certify_figure(certified, colors))
    calibration = calibration_rows(records)
    if calibration:
        report.tables.append(calibration_table(calibration))
        figure = reliability_figure(calibration, colors)
        if figure is not None:
            report.figures.append(figure)
    return report


SECTIONS.add("robustness", robustness_report, doc="Accuracy under noise and corruptions, per method.")
SECTIONS.add("eval", robustness_report, doc="Accuracy under noise and corruptions, per method.")
