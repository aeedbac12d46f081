"""`plenary demo` end to end: real recordings → captioner → terminal and a real IRC channel."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from bench.harness.ircservers import HOST, RawClient, binary, start_server
from plenary.compose.demo import demo
from plenary.corpus import Utterance
from plenary.settings import IrcNetworkSettings, IrcRoomSettings, IrcSettings, Settings


async def test_demo_captions_reach_terminal_and_irc(
    settings: Settings,
    ko_corpus: list[Utterance],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if binary("ngircd") is None:
        pytest.skip("ngircd is not installed (make deps installs it)")
    with start_server("ngircd", tmp_path) as server:
        observer = await RawClient.connect(server.port, "watcher", "#demo")
        irc = IrcSettings(
            networks={
                "default": IrcNetworkSettings(host=HOST, port=server.port, tls=False, nick="demo")
            },
            rooms=[IrcRoomSettings(room="demo", channel="#demo")],
        )
        configured = settings.model_copy(update={"irc": irc})
        try:
            assert await demo(configured, speakers=2, utterances=3, pace=False) == 0
            await observer.wait_for(lambda: len(observer.texts("demo")) >= 2, timeout=30)
        finally:
            await observer.close()
    out = capsys.readouterr()
    terminal = [line for line in out.out.splitlines() if line.startswith("[")]
    speakers = {u.speaker for u in ko_corpus}
    assert len(terminal) >= 3, out.out
    assert all(any(f"<{s}>" in line for s in speakers) for line in terminal)
    irc_lines = observer.texts("demo")
    assert all(line.startswith("<") for line in irc_lines)
    assert "character error rate" in out.err


async def test_demo_prints_the_orchestrators_stream_whoever_posted(
    settings: Settings, ko_corpus: list[Utterance], capsys: pytest.CaptureFixture[str]
) -> None:
    """The terminal shows the orchestrator's SSE stream, not the captioner's own output:
    a caption posted over HTTP by another producer while the demo runs is printed too."""
    producer = "another-producer"
    captions = settings.captions.model_copy(update={"producer_token": producer})
    task = asyncio.create_task(
        demo(settings.model_copy(update={"captions": captions}), 1, 1, pace=False)
    )
    err = ""
    while (found := re.search(r"captions page: (http://\S+)/r/demo/captions", err)) is None:
        assert not task.done(), err
        await asyncio.sleep(0.05)
        err += capsys.readouterr().err
    base = found.group(1)
    event = {"speaker": "Visitor", "text": "posted over HTTP", "language": "ko"}
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            f"{base}/api/v1/rooms/demo/captions",
            json={"events": [event]},
            headers={"Authorization": f"Bearer {producer}"},
        )
        assert r.status == 202, await r.text()
    assert await asyncio.wait_for(task, 120) == 0
    terminal = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert any(line.endswith("<Visitor> posted over HTTP") for line in terminal), terminal
    assert len(terminal) >= 2  # and the speaker's own captions
