import os
import shutil
from pathlib import Path

import pytest

# Found on PATH (or named by CHROMIUM_PATH) and nowhere else: .ci/newcomer hides it from PATH
# to check that these tests skip on a machine without it.
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or ""
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pytest_collection_modifyitems(config, items):
    if CHROMIUM and Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(
        reason="needs Debian's Chromium on PATH or at CHROMIUM_PATH (apt-get install chromium)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Playwright's own browser download cannot reach its host; drive Debian's Chromium.
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture
def console_errors(page):
    """Console errors and CSP violations seen by the page; a journey asserts it stays empty."""
    errors = []

    def record(message):
        # Chromium logs every 4xx as "Failed to load resource"; 422 is how a refused form
        # comes back (and is shown in place), so it is not an error of the page.
        if message.type == "error" and "status of 422" not in message.text:
            errors.append(message.text)

    page.on("console", record)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.fixture
def screenshot(page):
    def _take(name: str):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return _take
