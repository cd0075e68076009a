"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ninr.perf import num_threads


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread than on a contended pair; restored afterwards.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    with num_threads(1):
        yield
