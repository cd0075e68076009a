"""Headless Chromium opens report.html from disk with no network: the tables and every figure render.

The report's inline script writes how many images decoded to ``<body data-figures-loaded>``; the
DOM dump must show it equal to the number of ``<img>`` elements. A screenshot is saved to
``test-artifacts/report.png`` (gitignored) for a person to look at.

Needs the Debian ``chromium`` package (CI installs it: ``apt-get install -y chromium``); skipped
with that reason when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ninr.report import build_report, write_report
from test_report import PNG_MAGIC, write_planted_store

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: the page cannot reach any network
    "--virtual-time-budget=5000",  # let the load event (and the figure count) happen before the dump
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (install it: apt-get install -y chromium); CI has it")


def _browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    pytest.importorskip("matplotlib")
    root = tmp_path_factory.mktemp("browser")
    write_planted_store(root / "res")
    return write_report(build_report(root / "res"), root / "report")["html"]


def test_chromium_renders_the_tables_and_every_figure_offline(report_html, tmp_path):
    chromium = _chromium()
    done = _browse(chromium, tmp_path / "profile", "--dump-dom", report_html.as_uri())
    dom = done.stdout
    assert done.returncode == 0 and "<body" in dom, done.stderr[-2000:]
    assert '<table id="table-comparison">' in dom and '<table id="table-poster_reference">' in dom
    assert "87.7 ± 2.6" in dom and "80.5 ± 0.7" in dom  # the reference numbers and ours
    n_img = len(re.findall(r"<img\b", dom))
    assert n_img == 2
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None
    assert f'data-figures-total="{n_img}"' in body.group(1)
    assert f'data-figures-loaded="{n_img}"' in body.group(1), "a figure did not decode"


def test_chromium_screenshot_is_saved_as_an_artifact(report_html, tmp_path):
    chromium = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = _browse(
        chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2200", report_html.as_uri()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000  # a blank page compresses to a few kB
