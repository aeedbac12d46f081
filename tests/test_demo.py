"""`plenary demo` end to end: real recordings → captioner → terminal and a real IRC channel."""

from __future__ import annotations

from pathlib import Path

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
