"""Headless Chromium for tests: find the binary (skip without one), visit a page with quiet,
no-network flags, or dump a local page's DOM after a probe script has run in it.

Usage: ``binary = chromium(); done = browse(binary, url, tmp_path / "profile", "--dump-dom")``;
``dom = probe(binary, Path("reports/report.html"), "<script>...</script>", tmp_path / "profile")``
(``from browser import browse, chromium, probe``; tests/ is on sys.path under pytest)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (CI: apt-get install chromium)")
    return found


def browse(binary: str, url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    """One headless Chromium visit. The quiet flags keep it off the (closed) network; virtual time
    lets the React app fetch and render before the DOM or screenshot is taken (ms of page time)."""
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1920,900",
            "--hide-scrollbars", "--virtual-time-budget=20000", *mode, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def probe(binary: str, page: Path, script: str, profile: Path) -> str:
    """The DOM of local ``page`` after ``script`` (a ``<script>`` element, appended to a copy beside
    it so relative links resolve) has run; the page's load event fires within the virtual time."""
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    try:
        done = browse(binary, copy.resolve().as_uri(), profile, "--dump-dom")
    finally:
        copy.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
