"""Headless Chromium for page tests: Debian's ``chromium`` and ``chromium-driver`` via selenium.

Selenium is blocking, so an async test drives the browser through
:meth:`Browser.run` (a worker thread) while the lobby keeps serving on the loop.
Screenshots go to :data:`ARTIFACTS` (``test-artifacts/`` at the repository root,
or ``$SHARDS_TEST_ARTIFACTS``), kept after the run and never committed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ARTIFACTS", "Browser", "chromium", "chromium_missing"]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SHARDS_TEST_ARTIFACTS") or ROOT / "test-artifacts")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,960",
)

T = TypeVar("T")


def chromium_missing() -> str | None:
    """Why the page tests cannot run here (None: they can)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        return (
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install -e '.[test]')"
    return None


class Browser:
    """One headless Chromium; every selenium call goes through :meth:`run`."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def wait(self, condition: Callable[[Any], Any], within: float = 20.0) -> Any:
        """Wait until ``condition(driver)`` is truthy (polled by selenium); return its value."""
        from selenium.webdriver.support.ui import WebDriverWait

        return await self.run(WebDriverWait(self.driver, within, 0.1).until, condition)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, script, *args)

    async def screenshot(self, name: str) -> Path:
        await self.run(lambda: ARTIFACTS.mkdir(parents=True, exist_ok=True))
        path = ARTIFACTS / name
        ok = await self.run(self.driver.save_screenshot, str(path))
        assert ok, f"Chromium could not save {path}"
        return path

    def console_errors(self) -> list[str]:
        """SEVERE browser console entries (a script error, a refused resource)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Browser]:
    """A fresh headless Chromium with its own profile directory, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=service)
    try:
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)
