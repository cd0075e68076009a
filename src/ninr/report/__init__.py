"""Reports from records: tables (Markdown, CSV, HTML), figures, and the self-contained HTML report.

Everything here is a pure function of records (and of the stores that hold them): a report is rebuilt
offline from finished runs with ``ninr report STORE_DIR``. Each part's (and run hook's) section is found by
name in :data:`ninr.report.sections.SECTIONS`.
"""

from ninr.report.builder import build_report, build_section, export_records, render_markdown, write_report
from ninr.report.comparison import ComparisonRow, compare, comparison_table, sample_std, summarize, within_error_bars
from ninr.report.document import Figure, PartReport, Report, Section
from ninr.report.reference import Reference, ReferenceValue, load_poster_reference, load_reference, parse_reference_csv
from ninr.report.sections import SECTIONS
from ninr.report.tables import Table, markdown_table

__all__ = [
    "SECTIONS",
    "ComparisonRow",
    "Figure",
    "PartReport",
    "Reference",
    "ReferenceValue",
    "Report",
    "Section",
    "Table",
    "build_report",
    "build_section",
    "compare",
    "comparison_table",
    "export_records",
    "load_poster_reference",
    "load_reference",
    "markdown_table",
    "parse_reference_csv",
    "render_markdown",
    "sample_std",
    "summarize",
    "within_error_bars",
    "write_report",
]
