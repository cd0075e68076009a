"""The ``table`` study part: clean test accuracy per (architecture, method row) over seeds.

Each run trains one config (:func:`ninr.studies.run.train_records`), and runs that share an
architecture are trained as one stack (:func:`ninr.studies.run.train_records_many`; ``stack = false``
in ``[table]`` or ``--no-stack`` turns it off); the report compares the mean and std over seeds with the
poster's published numbers (:mod:`ninr.report.comparison`).
"""

from __future__ import annotations

from ninr.studies.parts import StudyPart, register_part
from ninr.studies.run import train_records, train_records_many
from ninr.studies.sweep import expand_grid

TABLE = register_part(
    "table",
    StudyPart(
        title="Clean accuracy compared with the poster",
        run=train_records,
        report="ninr.report.comparison:table_part_report",
        expand=expand_grid,
        order=10,
        run_many=train_records_many,
    ),
)
