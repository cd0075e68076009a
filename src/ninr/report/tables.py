"""Tables as data, rendered to Markdown, CSV and HTML.

A :class:`Table` holds its display cells (formatted strings, for Markdown and HTML) and its raw
rows (numbers kept as numbers, for CSV), so a CSV never carries rounding done for the eye.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ninr.studies.store import records_to_csv


@dataclass(frozen=True)
class Table:
    """A titled table.

    Attributes:
        name: File stem of its CSV (``comparison`` -> ``comparison.csv``).
        title: Caption.
        headers: Column headers of the display cells.
        cells: Display rows, one string per header.
        data: Raw rows for CSV (defaults to the display cells keyed by header).
        note: A paragraph under the table (how to read it, rules used).
    """

    name: str
    title: str
    headers: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    data: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    note: str = ""

    def __post_init__(self) -> None:
        for row in self.cells:
            if len(row) != len(self.headers):
                raise ValueError(f"table {self.name!r}: row {row} has {len(row)} cells for {len(self.headers)} headers")

    def raw_rows(self) -> list[Mapping[str, Any]]:
        """The rows written to CSV."""
        return list(self.data) if self.data else [dict(zip(self.headers, row, strict=True)) for row in self.cells]

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
        return markdown_table(self.headers, self.cells)

    def to_csv(self) -> str:
        """CSV of the raw rows."""
        return records_to_csv(self.raw_rows())

    def to_html(self) -> str:
        """An HTML ``<table>`` with a caption (cells escaped)."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in self.cells)
        return (
            f'<table id="table-{html.escape(self.name)}">\n<caption>{html.escape(self.title)}</caption>\n'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"
        )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Markdown text of a table."""

    def esc(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_mean_std(mean: float | None, std: float | None, digits: int = 1) -> str:
    """``"88.5 ± 1.8"``, or ``"n/a"`` when there is no value."""
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {(std or 0.0):.{digits}f}"
