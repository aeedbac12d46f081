"""A captioner (logged in against slapd) corrects while a real Chromium reads the captions
page; the editing view works from the keyboard and passes axe-core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness.slapd import PASSWORDS, Slapd, run_slapd, slapd_binary
from orchestrator.app import create_app
from tests.browser import AXE, Browser, chromium_binary
from tests.captions_helpers import make_room
from tests.test_captions_corrections import POLICY, Person, post, settings_for

pytestmark = [
    pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed"),
    pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed"),
    pytest.mark.skipif(not AXE.exists(), reason="axe-core is missing (make deps)"),
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def client(aiohttp_client: Any, slapd: Slapd, tmp_path: Path) -> Any:
    client = await aiohttp_client(
        create_app(settings_for(slapd, f"sqlite:///{tmp_path / 'db.sqlite3'}"))
    )
    await make_room(client, "hall", policy=POLICY, caption_readers=[{"kind": "anyone"}])
    return client


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    async with Browser.start(tmp_path / "chromium-profile") as found:
        yield found


async def test_the_page_shows_a_correction_once(client: Any, browser: Browser) -> None:
    seqs = await post(client, "hall", "발표자는 김 교수입니다.", "시작합니다.")
    site = str(client.make_url("")).rstrip("/")
    page = await browser.new_page()
    await page.goto(f"{site}/r/hall/captions")
    await page.until("document.getElementById('status').textContent === 'Live.'")
    alice = Person(client)
    try:
        await alice.login("alice")
        fixed = "발표자는 金 <i>교수</i>입니다."
        status, html = await alice.edit(
            "hall", action="correct", seq=str(seqs[0]), speaker="Kim", text=fixed
        )
        assert status == 200 and "corrected" in html
        line = f"document.getElementById('c{seqs[0]}').textContent"
        text = await page.until(f"{line}.includes('(corrected)') && {line}")
        assert "발표자는 金 <i>교수</i>입니다." in text  # as text, not markup
        assert (
            await page.evaluate(f"document.getElementById('c{seqs[0]}').querySelector('i')") is None
        )
        said = await page.evaluate("document.getElementById('fixes').textContent")
        assert said == "Corrected: Kim: 발표자는 金 <i>교수</i>입니다."
        assert (
            await page.evaluate("document.getElementById('fixes').getAttribute('aria-live')")
            == "polite"
        )
        # Once: a later caption comes, the correction is not applied or said again.
        await page.evaluate("document.getElementById('fixes').textContent = ''")
        await post(client, "hall", "다음입니다.")
        await page.until("document.querySelectorAll('#lines li').length === 3")
        assert await page.evaluate("document.getElementById('lines').dataset.fixed") == "1"
        assert await page.evaluate("document.getElementById('fixes').textContent") == ""
        # A reload serves the corrected line, marked in text.
        await page.goto(f"{site}/r/hall/captions")
        served = await page.evaluate(f"document.getElementById('c{seqs[0]}').textContent")
        assert served.endswith("발표자는 金 <i>교수</i>입니다. (corrected)")
    finally:
        await alice.close()


async def test_the_editing_view_by_keyboard(client: Any, browser: Browser) -> None:
    seqs = await post(client, "hall", "첫 문장", "둘째 문장")
    site = str(client.make_url("")).rstrip("/")
    page = await browser.new_page()
    await page.goto(f"{site}/login?next=/r/hall/captions/edit")
    await page.submit(
        "document.getElementById('username').value = 'alice';"
        f"document.getElementById('password').value = {PASSWORDS['alice']!r};"
        "document.querySelector('form[action=\"/login/ldap\"]').submit()"
    )
    await page.goto(f"{site}/r/hall/captions/edit")
    assert (
        await page.evaluate("document.querySelector('h1').textContent") == "Edit captions: Keynote"
    )
    violations = await page.axe()
    assert violations == [], violations
    # Tab from the top reaches the jump links, then a line's fields; Enter submits.
    reached = [await page.press_tab() for _ in range(30)]
    assert any(r["text"] == f"Line {seqs[1]}" for r in reached), reached
    await page.evaluate(f"document.getElementById('t-{seqs[1]}').focus()")
    await page.evaluate(f"document.getElementById('t-{seqs[1]}').value = '둘째 문장입니다'")
    for kind in ("rawKeyDown", "char", "keyUp"):
        await page.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                        text="\r", windowsVirtualKeyCode=13)  # fmt: skip
    await page.until("!!document.querySelector('[role=status]')")
    assert await page.evaluate("document.querySelector('[role=status]').textContent") == (
        f"Line {seqs[1]} corrected (revision 1)."
    )
    assert await page.evaluate("location.hash") == f"#line-{seqs[1]}"
    legend = await page.evaluate(f"document.querySelector('#line-{seqs[1]} legend').textContent")
    assert "(corrected, revision 1)" in legend
    assert await page.axe() == []
    size = await page.evaluate("document.documentElement.outerHTML.length")
    assert size < 20_000  # a slow connection loads it quickly
