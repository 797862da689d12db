"""The /admin page in a real headless Chromium: log in, see a player appear, kick them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.browser import chromium, chromium_missing
from tests.lobby.support import PASSWORD, ApiClient, fast_settings, ws_url

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MasterServer]:
    settings = fast_settings(tmp_path / "lobby", admin_accounts=["root"])
    async with MasterServer(settings=settings) as lobby:
        yield lobby


async def test_admin_logs_in_sees_a_player_and_kicks_them(
    server: MasterServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    async with aiohttp.ClientSession() as http, chromium(tmp_path / "profile") as browser:
        await ApiClient(server.url, http).register("root")
        bob = ApiClient(server.url, http)
        hero = await bob.play("bob", "Verdant Pact", "Ranger", "Bobbin")

        # a player is not let in
        await browser.get(f"{server.url}/admin")
        await browser.run(lambda: _fill(browser.driver, "bob", PASSWORD))
        error = await browser.wait(lambda d: d.find_element(By.ID, "login-error").text)
        assert "not an admin" in error

        await browser.run(lambda: _fill(browser.driver, "root", PASSWORD))
        await browser.wait(lambda d: d.find_element(By.ID, "dashboard").is_displayed())
        await browser.wait(lambda d: d.find_element(By.ID, "stat-players").text == "0")
        nodes = await browser.run(browser.driver.find_elements, By.CSS_SELECTOR, "#map g.node")
        assert len(nodes) == len(server.ctx.world.locations)

        async with http.ws_connect(ws_url(server.url), headers=bob.headers()) as ws:
            row = f'#players tr[data-character-id="{hero["id"]}"]'
            await browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, row))
            node = f'#map g.node[data-location-id="{hero["location_id"]}"]'
            await browser.wait(
                lambda d: d.find_element(By.CSS_SELECTOR, node).get_attribute("data-players") == "1"
            )
            assert await browser.run(lambda: _text(browser.driver, row)) == (
                "Bobbin bob Verdant Pact Haven's Rest Inspect Kick"
            )
            await browser.run(lambda: _click(browser.driver, f"{row} button.inspect-btn"))
            await browser.wait(lambda d: "Bobbin (#" in d.find_element(By.ID, "inspect").text)
            await browser.screenshot("admin-page.png")

            await browser.run(lambda: _click(browser.driver, f"{row} button.kick"))  # arms
            assert not ws.closed
            await browser.run(lambda: _click(browser.driver, f"{row} button.kick"))  # kicks
            close = await _close_of(ws)
            assert (close.data, close.extra) == (1008, "kicked by an admin")
        await browser.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, row))
        await browser.wait(lambda d: d.find_element(By.ID, "stat-players").text == "0")
        assert "kicked" in await browser.run(lambda: _text(browser.driver, "#status-line"))
        assert (await bob.call("GET", "/api/characters"))[0] == 401
        await browser.screenshot("admin-page-after-kick.png")
        assert await browser.run(browser.console_errors) == []


def _fill(driver: object, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    for field, value in (("login-username", username), ("login-password", password)):
        element = driver.find_element(By.ID, field)  # type: ignore[attr-defined]
        element.clear()
        element.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()  # type: ignore[attr-defined]


def _click(driver: object, css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()  # type: ignore[attr-defined]


def _text(driver: object, css: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(driver.find_element(By.CSS_SELECTOR, css).text.split())  # type: ignore[attr-defined]


async def _close_of(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return msg
