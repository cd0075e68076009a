"""Build a report from results stores alone (no training) and write it as Markdown and HTML.

``build_report(root)`` reads every store under ``root`` (each has a ``study.json``), judges the poster's
claims from the records of every part (:mod:`ninr.report.claims`: the sheet the report opens with), asks each
part's report function for its section, and adds what the stores record: the configuration file,
seeds, versions, executors and the wall time of each part (summed over sweep sessions, so a resumed
part counts every session). The order: the claims sheet, then the parts in their ``order`` (the comparison
table first), then the configuration. ``write_report`` writes::

    <out>/report.md            Markdown (figures linked from figures/)
    <out>/report.html          one self-contained file: figures embedded as data: URIs, opens offline
    <out>/figures/<part>_<name>.png
    <out>/tables/<part>_<name>.csv     (the claims sheet's as claims_<name>.csv)
    <out>/records/<part>.csv   every record of the part
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ninr.fileio import atomic_write_bytes
from ninr.report import comparison, curvature, hep, phases, robustness, training
from ninr.report.claims import claims_sheet
from ninr.report.document import PartReport, Report, Section, run_facts
from ninr.report.html import render_html
from ninr.report.sections import SECTIONS
from ninr.report.tables import markdown_table
from ninr.studies.part import ordered
from ninr.studies.store import ResultStore, find_stores, records_to_csv
from ninr.train.setup import versions as current_versions

SECTION_MODULES = (comparison, curvature, training, phases, hep, robustness)
"""The modules that register ninr's report sections (imported here so the registry is complete)."""


def _unique(items: list[Any]) -> list[Any]:
    seen: list[str] = []
    out = []
    for item in items:
        key = json.dumps(item, sort_keys=True, default=str)
        if key not in seen:
            seen.append(key)
            out.append(item)
    return out


def unreadable_note(store: ResultStore, broken: Mapping[str, str]) -> str:
    """The note naming the runs of a section whose files cannot be read (left out of its tables and figures)."""
    listed = "; ".join(f"{store.path(run_id)} ({reason})" for run_id, reason in sorted(broken.items()))
    return (
        f"{len(broken)} run(s) could not be read and are left out of this section: {listed}. "
        "Run the study again with --resume to recompute them."
    )


def build_section(store: ResultStore) -> Section:
    """One part's section from its store; runs whose files cannot be read are named in a note."""
    info = store.read_study()
    wanted = info.get("run_ids")
    results = store.results(wanted)
    records = [rec for res in results for rec in res.records]
    body = SECTIONS.get(info["part"])(records, info)
    broken = store.unreadable(wanted)
    expected = len(wanted) if wanted is not None else len(results) + len(broken)
    missing = expected - len(results) - len(broken)
    if missing > 0:
        body.notes.insert(
            0, f"Only {expected - missing} of {expected} runs have finished; run again with --resume to complete."
        )
    if broken:
        body.notes.insert(0, unreadable_note(store, broken))
    stale = len(store.run_ids() - set(wanted or ()))
    if wanted is not None and stale:
        body.notes.append(f"{stale} run(s) in the store belong to an earlier configuration and are not shown.")
    sessions = [s for s in store.sessions() if s.get("label", info["part"]) in (info["part"], "")]
    return Section(
        body=body,
        store=str(store.root),
        n_runs=len(results),
        n_expected=expected,
        seeds=list(info.get("seeds", [])),
        wall_time_s=sum(float(s.get("elapsed_s", 0.0)) for s in sessions),
        compute_time_s=sum(r.wall_time_s for r in results),
        sessions=len(sessions),
        executors=_unique([s.get("executor", "?") for s in sessions]),
        versions=_unique([r.meta.get("versions", {}) for r in results]),
        machines=_unique([str(r.meta["machine"]) for r in results if r.meta.get("machine")]),
        precisions=_unique([p for r in results if (p := _precision(r.spec, r.meta))]),
    )


def _precision(spec: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """A training run's precision (``fp32`` / ``bf16``), from its spec's options; ``"auto"`` as it resolved
    (``auto: bf16``, from the run's ``meta``); empty for runs without one."""
    train = spec.get("options", {}).get("train")
    if not isinstance(train, Mapping):
        return ""
    asked = str(train.get("precision", "fp32"))
    return f"auto: {meta.get('precision', '?')}" if asked == "auto" else asked


def hook_sections(
    section: Section, records: Sequence[Mapping[str, Any]], info: Mapping[str, Any], notes: Sequence[str] = ()
) -> list[Section]:
    """Sections of the part's run hooks that have one (registered under the hook's name), with the part's
    run facts and ``notes`` first. A hook without a section keeps its records in the CSV export."""
    out = []
    for name in info.get("study", {}).get("hooks", []):
        if name in SECTIONS:
            body = SECTIONS.get(name)(records, info)
            body.notes[:0] = list(notes)
            out.append(dataclasses.replace(section, body=body))
    return out


def build_sections(store: ResultStore) -> list[Section]:
    """A part's section, followed by the sections of its run hooks (e.g. robustness)."""
    section = build_section(store)
    info = store.read_study()
    if not info.get("study", {}).get("hooks"):
        return [section]
    wanted = info.get("run_ids")
    broken = store.unreadable(wanted)
    notes = [unreadable_note(store, broken)] if broken else []
    return [section, *hook_sections(section, store.records(wanted), info, notes)]


def build_report(root: str | Path) -> Report:
    """The report of every store under ``root`` (or of ``root`` itself if it is a store)."""
    stores = {s.read_study()["part"]: s for s in find_stores(root)}
    sections = [sec for part in ordered(list(stores)) for sec in build_sections(stores[part])]
    records = {part: store.records(store.read_study().get("run_ids")) for part, store in stores.items()}
    info = next(iter(stores.values())).read_study()
    return Report(
        title=f"ninr reproduce: preset {info.get('preset', '?')}",
        preset=str(info.get("preset", "?")),
        description=str(info.get("description", "")),
        config_source=str(info.get("source", "")),
        config_text=str(info.get("config_text", "")),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sections=sections,
        versions=current_versions(),
        claims=with_progress(claims_sheet(records), sections, set(stores)),
    )


def with_progress(claims: PartReport, sections: Sequence[Section], parts: set[str]) -> PartReport:
    """``claims`` with a first note naming the ``parts`` whose runs have not all finished: their verdicts read only
    the finished runs and may change when the rest finish. (A run hook's section repeats its part's counts and is
    not a part.)"""
    unfinished = [
        f"`{s.body.part}` {s.n_runs} of {s.n_expected}"
        for s in sections
        if s.n_runs < s.n_expected and s.body.part in parts
    ]
    if unfinished:
        claims.notes.insert(
            0,
            f"Runs finished: {', '.join(unfinished)}. The verdicts read the finished runs only and may change when "
            "the rest finish (run the study again with --resume).",
        )
    return claims


def _markdown_body(body: PartReport, figure_dir: str) -> list[str]:
    out = [f"> {note}\n" for note in body.notes]
    for table in body.tables:
        out += [f"### {table.title}", "", table.to_markdown(), "", table.note, ""]
    for fig in body.figures:
        out += [f"![{fig.caption}]({figure_dir}/{body.part}_{fig.name}.png)", "", f"*{fig.caption}*", ""]
    return out


def render_markdown(report: Report, figure_dir: str = "figures") -> str:
    """The report as Markdown: the claims sheet, each part's section, the configuration; figures are linked as
    ``figure_dir/<part>_<name>.png``."""
    out = [
        f"# {report.title}",
        "",
        report.description,
        "",
        f"Generated {report.generated_at} by ninr {report.versions.get('ninr', '?')}.",
        "",
    ]
    if report.claims is not None:
        out += [f"## {report.claims.title}", "", *_markdown_body(report.claims, figure_dir)]
    for section in report.sections:
        body = section.body
        out += [f"## {body.title} (`{body.part}`)", "", markdown_table(("", ""), run_facts(section)), ""]
        out += _markdown_body(body, figure_dir)
    out += [
        "## Configuration",
        "",
        f"From `{report.config_source}`:",
        "",
        "```toml",
        report.config_text.rstrip(),
        "```",
        "",
    ]
    return "\n".join(out)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write Markdown, HTML, figures and CSVs under ``out_dir``; returns the main paths."""
    out = Path(out_dir)
    bodies = ([report.claims] if report.claims is not None else []) + [s.body for s in report.sections]
    for body in bodies:
        for fig in body.figures:
            atomic_write_bytes(out / "figures" / f"{body.part}_{fig.name}.png", fig.png)
        for table in body.tables:
            atomic_write_bytes(out / "tables" / f"{body.part}_{table.name}.csv", table.to_csv().encode())
    paths = {"markdown": out / "report.md", "html": out / "report.html"}
    atomic_write_bytes(paths["markdown"], render_markdown(report).encode())
    atomic_write_bytes(paths["html"], render_html(report).encode())
    return paths


def export_records(root: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/records/<part>.csv`` for every store under ``root``."""
    written = []
    for store in find_stores(root):
        info = store.read_study()
        path = Path(out_dir) / "records" / f"{info['part']}.csv"
        atomic_write_bytes(path, records_to_csv(store.records(info.get("run_ids"))).encode())
        written.append(path)
    return written
