"""/api/docs: Swagger UI from the package renders this lobby's OpenAPI document in Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.browser import chromium, chromium_missing
from tests.lobby.support import fast_settings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MasterServer]:
    async with MasterServer(settings=fast_settings(tmp_path / "lobby")) as lobby:
        yield lobby


async def test_docs_assets_are_local(server: MasterServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/docs") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            page = await resp.text()
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from another site
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
            assert f"/api/docs/{asset}" in page
            async with http.get(f"{server.url}/api/docs/{asset}") as resp:
                assert resp.status == 200, asset
        async with http.get(server.url + "/api/docs/LICENSE") as resp:
            assert resp.status == 404  # shipped in the package, not served


@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
async def test_docs_render_every_path_in_chromium(server: MasterServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/openapi.json") as resp:
            doc = await resp.json()
    expected = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert ("GET", "/api/admin/players") in expected and len(expected) > 20
    async with chromium(tmp_path / "profile") as browser:
        await browser.get(server.url + "/api/docs")
        await browser.wait(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered")
        )

        def listed() -> set[tuple[str, str]]:
            found = set()
            for op in browser.driver.find_elements(By.CSS_SELECTOR, ".opblock"):
                method = op.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text
                path = op.find_element(By.CSS_SELECTOR, ".opblock-summary-path")
                found.add((method.upper(), path.get_attribute("data-path")))
            return found

        await browser.wait(lambda _d: len(listed()) >= len(expected))
        assert await browser.run(listed) == expected
        title = await browser.run(
            lambda: browser.driver.find_element(By.CSS_SELECTOR, ".info .title").text
        )
        assert "Shards of Eternity lobby" in title
        await browser.screenshot("api-docs.png")
        assert await browser.run(browser.console_errors) == []
