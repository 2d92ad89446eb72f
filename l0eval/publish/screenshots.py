"""The leaderboard page in headless Chromium: what the page's own check script records at a given window
width (plots decoded, tables wider than their box, sideways page scroll, page height), and full-page
screenshots at 1280 and 1920 px, written beside index.html.

Screenshots depend on the machine's fonts, so unlike the rest of leaderboard/ they are not byte-identical
across machines; `l0eval leaderboard` regenerates them whenever a Chromium is found.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from l0eval.errors import L0EvalError

WIDTHS = (1280, 1920)
MAX_HEIGHT = 16_000  # px: Chromium's screenshots stop being reliable far beyond this
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--virtual-time-budget=10000")
_MARKER = re.compile(r'data-(images-loaded|tables-overflowing|page-overflow|page-height)="([^"]*)"')


def find_chromium() -> str | None:
    """``$L0EVAL_CHROMIUM``, else chromium, chromium-browser or google-chrome on the PATH."""
    explicit = os.environ.get("L0EVAL_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def _browse(chromium: str, args: list[str], page: Path) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="l0eval-chromium-") as profile:
        try:
            return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                                  capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise L0EvalError(f"cannot run {chromium}: {exc}") from exc


def page_checks(page: Path, width: int, chromium: str) -> dict[str, str]:
    """The page script's markers once loaded at ``width`` px: images-loaded ("n/m"), tables-overflowing
    ("n/m"), page-overflow ("yes"/"no"), page-height (px)."""
    dom = _browse(chromium, [f"--window-size={width},1000", "--dump-dom"], page).stdout
    markers = dict(_MARKER.findall(dom))
    if len(markers) != 4:
        raise L0EvalError(f"{page}: the page's check script did not run in {chromium}")
    return markers


def write_screenshots(out_dir: str | Path, chromium: str, widths: tuple[int, ...] = WIDTHS) -> list[Path]:
    """Full-page screenshots ``screenshot-<width>.png`` of ``out_dir``/index.html."""
    out = Path(out_dir)
    page = out / "index.html"
    written = []
    for width in widths:
        height = min(MAX_HEIGHT, int(page_checks(page, width, chromium)["page-height"]))
        target = out / f"screenshot-{width}.png"
        tmp = target.with_suffix(".tmp.png")
        _browse(chromium, [f"--window-size={width},{height}", f"--screenshot={tmp}"], page)
        if not tmp.is_file():
            raise L0EvalError(f"{chromium} wrote no screenshot of {page}")
        os.replace(tmp, target)
        written.append(target)
    return written
