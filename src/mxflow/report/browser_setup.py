"""Make a headless browser available for the report tests (Debian chromium + Playwright).

``python -m mxflow.report.browser_setup`` installs what is missing: the
Debian ``chromium`` package (apt-get, as root) and the ``playwright`` Python
package into the running interpreter's environment (pip).  Playwright's own
browser download is never used: tests drive the system chromium through
``executable_path``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")

#: flags for a quiet, offline, throw-away browser
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]


def find_chromium() -> str | None:
    """Path of a system chromium, or None."""
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def have_playwright() -> bool:
    return importlib.util.find_spec("playwright") is not None


def ensure_browser(install: bool = True) -> tuple[str | None, str]:
    """(chromium path or None, what happened) after installing what is missing when allowed."""
    notes = []
    path = find_chromium()
    if path is None and install and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is not None:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(
                [*sudo, "apt-get", "update", "-q"], env=env, capture_output=True, check=False
            )
            r = subprocess.run(
                [*sudo, "apt-get", "install", "-y", "-q", "chromium"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            notes.append(f"apt-get install chromium: exit {r.returncode}")
            path = find_chromium()
    if not have_playwright() and install:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "playwright"],
            capture_output=True,
            text=True,
            check=False,
        )
        notes.append(f"pip install playwright: exit {r.returncode}")
        importlib.invalidate_caches()
    if path is None:
        notes.append("no chromium found")
    if not have_playwright():
        notes.append("playwright not importable")
    return path, "; ".join(notes) or "already installed"


if __name__ == "__main__":
    chromium, what = ensure_browser()
    print(f"chromium: {chromium}; playwright: {have_playwright()} ({what})")
    sys.exit(0 if chromium and have_playwright() else 1)
