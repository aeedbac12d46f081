"""Pure IRC code tested with literal lines: parsing, sanitizing, splitting, flood control."""

from __future__ import annotations

import base64

import pytest

from bots.irc import protocol
from bots.irc.flood import MergeQueue, TokenBucket
from bots.irc.identifiers import fold
from bots.irc.lines import cut, sanitize, split_caption, split_text
from bots.irc.protocol import LineError, format_line, parse, wire
from bots.irc.relay import Transcript, answer_command

HOSTMASK = "plenary!~plenary@p58k49j34sc48.irc"


def budget_for(target: str, hostmask: str = HOSTMASK) -> int:
    return protocol.MAX_LINE_BYTES - protocol.relay_overhead(hostmask, target)


def relayed(line: str, target: str = "#room", hostmask: str = HOSTMASK) -> bytes:
    """What another client receives for our ``line``."""
    return f":{hostmask} PRIVMSG {target} :{line}\r\n".encode()


# -- parsing ---------------------------------------------------------------------------


def test_parse_prefix_command_params() -> None:
    msg = parse(":Foo!foo@example.com PRIVMSG #chan :Hello there\r\n")
    assert (msg.source, msg.command, msg.params) == (
        "Foo!foo@example.com",
        "PRIVMSG",
        ["#chan", "Hello there"],
    )
    assert msg.nick == "Foo"


def test_parse_tags_with_escapes() -> None:
    msg = parse(r"@time=2024-05-01T10:00:00.000Z;msgid=a\sb\:c;+draft/x :n!u@h PRIVMSG #c ::-)")
    assert msg.tags == {"time": "2024-05-01T10:00:00.000Z", "msgid": "a b;c", "+draft/x": ""}
    assert msg.params == ["#c", ":-)"]


def test_parse_without_trailing_and_numeric() -> None:
    assert parse(":srv 005 me BOT=B CHANTYPES=# :are supported").params == [
        "me", "BOT=B", "CHANTYPES=#", "are supported"
    ]  # fmt: skip
    assert parse("PING :abc").params == ["abc"]
    assert parse(":w!~u@x.irc JOIN #test").params == ["#test"]
    with pytest.raises(LineError):
        parse(":only.a.prefix")


def test_isupport_and_caps() -> None:
    isupport = protocol.parse_isupport(
        ["BOT=B", "CASEMAPPING=ascii", "EXCEPTS", "-KNOCK", "NETWORK=A\\x20B"]
    )
    assert isupport == {
        "BOT": "B",
        "CASEMAPPING": "ascii",
        "EXCEPTS": "",
        "KNOCK": None,
        "NETWORK": "A B",
    }
    caps = protocol.parse_caps(
        "sasl=PLAIN,EXTERNAL server-time message-tags draft/multiline=max-bytes=4096"
    )
    assert caps["sasl"] == "PLAIN,EXTERNAL" and "server-time" in caps and "message-tags" in caps


def test_hostmask_sources() -> None:
    assert (
        protocol.hostmask_in("Welcome to the Internet Relay Network bot!~bot@127.0.0.1")
        == "bot!~bot@127.0.0.1"
    )
    assert protocol.hostmask_in("Welcome to the PlenaryTest IRC Network bot") is None
    assert protocol.parse_userhost("bot=+~u@x.irc op*=-o@h") == {"bot": "~u@x.irc", "op": "o@h"}
    worst = protocol.worst_case_hostmask("plenary", "plenary")
    assert len(worst.split("@")[1]) == 63


def test_sasl_plain_chunks() -> None:
    (chunk,) = protocol.sasl_plain("relaybot", "secret")[:1]
    assert base64.b64decode(chunk) == b"\0relaybot\0secret"
    long = protocol.sasl_plain("u" * 150, "p" * 148)  # 300 bytes of payload → exactly 400 base64
    assert [len(c) for c in long] == [400, 1] and long[-1] == "+"


def test_fold_follows_the_casemapping() -> None:
    assert fold("#Foo[]\\^") == "#foo{}|~"
    assert fold("#Foo[]", "ascii") == "#foo[]"


# -- injection: nothing from a transcript may become a command -------------------------

INJECTIONS = [
    "hello\r\nQUIT :bye",
    "a\nJOIN #evil",
    "nul\x00byte",
    "\x01ACTION dances\x01",
    "\x01VERSION\x01",
    "\x02bold\x02 \x0304,12colour\x03 \x1ditalic\x0f",
    "tab\there\x0bvt\x0cff\x1bescape\x7fdel\x85nel\u2028ls",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_sanitize_removes_every_control(text: str) -> None:
    clean = sanitize(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in clean), clean
    for line in split_caption("Alice\r\nQUIT", text, budget_for("#room")):
        data = wire(format_line("PRIVMSG", "#room", line))
        assert data.count(b"\r") == 1 and data.count(b"\n") == 1 and data.endswith(b"\r\n")
        assert b"\x00" not in data and b"\x01" not in data


def test_sanitize_keeps_words_apart_and_colour_digits_out() -> None:
    assert sanitize("hello\r\nQUIT :bye") == "hello QUIT :bye"
    assert sanitize("\x0304,12red\x03 text") == "red text"
    assert sanitize("\x02bold\x02", formatting=True) == "\x02bold\x02"
    assert sanitize("lone \udc80 surrogate") == "lone ? surrogate"


def test_format_line_refuses_cr_lf_nul() -> None:
    for bad in ("a\rb", "a\nb", "a\0b"):
        with pytest.raises(LineError):
            format_line("PRIVMSG", "#c", bad)
    with pytest.raises(LineError):
        format_line("PRIVMSG", "#c d", "text")
    assert format_line("PRIVMSG", "#c", ":)") == "PRIVMSG #c ::)"
    with pytest.raises(LineError):
        wire("PRIVMSG #c :" + "x" * 510)


# -- splitting -------------------------------------------------------------------------


def test_split_at_spaces_with_real_prefix() -> None:
    words = [f"word{i:03d}" for i in range(200)]
    lines = split_caption("Alice", " ".join(words), budget_for("#room"))
    assert len(lines) > 1
    for line in lines:
        assert line.startswith("<Alice> ")
        assert len(relayed(line)) <= 512
    assert " ".join(line.removeprefix("<Alice> ") for line in lines).split() == words
    # Packed: every line but the last is nearly full.
    assert all(len(relayed(line)) > 500 for line in lines[:-1])


def test_worst_case_budget_fits_any_real_host() -> None:
    worst = protocol.worst_case_hostmask("plenary", "plenary")
    for line in split_caption("Bob", "x " * 400, budget_for("#room", worst)):
        assert len(relayed(line, hostmask="plenary!~plenary@" + "h" * 63)) <= 512


def test_korean_is_cut_on_character_boundaries() -> None:
    sentence = "안녕하세요 여러분 오늘은 접근성 회의에 오신 것을 환영합니다"
    text = " ".join([sentence] * 30)
    lines = split_caption("발표자", text, budget_for("#회의"))
    received = b"".join(relayed(line, "#회의") for line in lines)
    for raw in received.split(b"\r\n")[:-1]:
        assert len(raw) + 2 <= 512
        raw.decode("utf-8")  # raises on a cut through a character
    joined = " ".join(line.removeprefix("<발표자> ") for line in lines)
    assert joined == text


def test_long_word_without_spaces_is_cut_between_characters() -> None:
    word = "가" * 600  # 1,800 bytes, no space anywhere
    pieces = split_text(word, 100)
    assert all(len(p.encode()) <= 100 for p in pieces)
    assert all(len(p.encode()) % 3 == 0 for p in pieces)
    assert "".join(pieces) == word
    ascii_word = "x" * 600
    lines = split_caption("A", ascii_word, budget_for("#room"))
    assert "".join(line.removeprefix("<A> ") for line in lines) == ascii_word
    assert all(len(relayed(line)) <= 512 for line in lines)


def test_emoji_sequences_stay_whole() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"  # 25 bytes, one picture
    flag = "🇰🇷"
    thumbs = "👍🏽"
    text = (family + flag + thumbs) * 40
    pieces = split_text(text, 60)
    assert "".join(pieces) == text
    for piece in pieces:
        assert len(piece.encode()) <= 60
        assert not piece.startswith(("\u200d", "\U0001f3fd")), piece[:3]
        assert not piece.endswith("\u200d")
        # Flags are pairs of regional indicators: never split one.
        run = len(piece) - len(piece.rstrip("\U0001f1e6\U0001f1e7\U0001f1f0\U0001f1f7"))
        assert run % 2 == 0


def test_cut_prefers_spaces() -> None:
    assert cut("hello world again", 12) == ("hello world", "again")
    assert cut("short", 100) == ("short", "")


# -- flood control ---------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(burst=4, rate=1.0, now=0.0)
    for _ in range(4):
        assert bucket.delay(0.0) == 0.0
        bucket.take(0.0)
    assert bucket.delay(0.0) == pytest.approx(1.0)
    assert bucket.delay(0.5) == pytest.approx(0.5)
    assert bucket.delay(1.0) == 0.0
    bucket.take(1.0)
    assert bucket.delay(100.0) == 0.0  # refills to the burst, not beyond
    for _ in range(4):
        bucket.take(100.0)
    assert bucket.delay(100.0) > 0


def test_merge_queue_merges_same_speaker_and_keeps_words() -> None:
    queue = MergeQueue("r", "#room", max_lines=100)
    queue.budget = budget_for("#room")
    for i in range(50):
        queue.push("Alice" if i < 30 else "Bob", f"w{i}", i + 1)
    assert queue.merged == 48
    lines = []
    while (line := queue.take()) is not None:
        lines.append(line)
    assert [line.text.split()[0] for line in lines] == ["<Alice>", "<Bob>"]
    words = [w for line in lines for w in line.text.split()[1:]]
    assert words == [f"w{i}" for i in range(50)]
    assert [line.position for line in lines] == [30, 50]


def test_merge_queue_bound_skips_with_one_notice() -> None:
    queue = MergeQueue("r", "#room", max_lines=5, transcript_url="https://example.org/t/r")
    queue.budget = 100
    for i in range(20):
        queue.push("Alice" if i % 2 else "Bob", f"caption number {i}", i + 1)
    assert queue.backlog <= 6
    first = queue.take()
    assert first is not None
    assert (
        first.text
        == f"[{queue.skipped_lines} lines skipped — full transcript: https://example.org/t/r]"
    )
    rest = []
    while (line := queue.take()) is not None:
        rest.append(line)
    assert rest[-1].text == "<Alice> caption number 19" and rest[-1].position == 20
    assert queue.skipped_lines + 1 + len(rest) == 21


def test_requeued_lines_go_first_and_are_not_merged() -> None:
    queue = MergeQueue("r", "#room", max_lines=100)
    queue.push("Alice", "third", 3)
    first = queue.take()
    assert first is not None
    queue.push("Alice", "fourth", 4)
    queue.requeue([first])
    texts = []
    while (line := queue.take()) is not None:
        texts.append((line.text, line.position))
    assert texts == [("<Alice> third", 3), ("<Alice> fourth", 4)]


def test_commands_are_read_only() -> None:
    rooms = [Transcript("keynote", "https://example.org/keynote")]
    assert answer_command("!transcript", rooms) == [
        "Full transcript of keynote: https://example.org/keynote"
    ]
    titled = [Transcript("keynote", "https://x.org/r/keynote/transcripts", "Keynote",
                         "Europe/Berlin")]  # fmt: skip
    assert answer_command("!Transcript please", titled) == [
        "Full transcript of Keynote (times in Europe/Berlin): https://x.org/r/keynote/transcripts"
    ]
    assert answer_command("!transcript", [Transcript("k", "")]) == [
        "No transcript link is configured for k."
    ]
    assert "!transcript" in answer_command("!help", rooms)[0]
    for other in ("!quit", "!join #x", "!raw QUIT", "hello", ""):
        assert answer_command(other, rooms) == []


def test_mode_changes_follow_chanmodes_and_prefix() -> None:
    from bots.irc.protocol import mode_changes

    # RPL_CHANNELMODEIS of InspIRCd: +knt key; a MODE line with ops and a ban.
    assert mode_changes("+knt", ["sesame"], "b,k,l,MRimnprst", "(ov)@+") == [
        (True, "k", "sesame"), (True, "n", ""), (True, "t", "")]  # fmt: skip
    assert mode_changes("-k+ob-l", ["old", "relay", "*!*@x"], "b,k,l,imnpst", "(ov)@+") == [
        (False, "k", "old"), (True, "o", "relay"),
        (True, "b", "*!*@x"), (False, "l", "")]  # fmt: skip
    # Without ISUPPORT: RFC 2811 defaults; a missing argument is "".
    assert mode_changes("+lk", ["5"], None) == [(True, "l", "5"), (True, "k", "")]


def test_channel_table_of_the_orchestrator_is_checked() -> None:
    from bots.irc.keys import KeysError, RoomChannel, parse_table

    body = {"channels": [{"room": "dev", "channel": "#dev", "restricted": True, "key": "Ab3"},
                         {"room": "open", "channel": "", "restricted": False,
                          "key": ""}]}  # fmt: skip
    assert parse_table(body) == {"dev": RoomChannel(True, "Ab3"), "open": RoomChannel(False, "")}
    about = {"title": "Dev", "timezone": "Asia/Seoul", "transcript_url": "https://x/r/dev/t"}
    row = {"room": "dev", "channel": "#dev", "restricted": False, "key": "", **about}
    assert parse_table({"channels": [row]}) == {"dev": RoomChannel(False, "", **about)}
    for bad in ({}, {"channels": [1]}, {"channels": [{"room": "x"}]},
                {"channels": [{"room": "x", "restricted": True, "key": "a b"}]},
                {"channels": [{"room": "x", "restricted": False, "title": 5}]}):  # fmt: skip
        with pytest.raises(KeysError):
            parse_table(bad)


# -- packing speakers and nicks ----------------------------------------------------------


def drain(queue: MergeQueue, *, pack: bool) -> list[tuple[str, int | None]]:
    out = []
    while (line := queue.take(pack=pack)) is not None:
        out.append((line.text, line.position))
    return out


def test_speakers_waiting_are_packed_into_one_line_within_the_budget() -> None:
    budget = budget_for("#room")
    queue = MergeQueue("r", "#room", max_lines=50)
    queue.budget = budget
    script = [
        ("Alice", "so the budget"),
        ("민준", "네 그 부분은 다음 회의에서"),
        ("Bob", "I agree"),
    ]
    for position, (speaker, text) in enumerate(script, 1):
        queue.push(speaker, text, position)
    assert drain(queue, pack=True) == [
        ("<Alice> so the budget · <민준> 네 그 부분은 다음 회의에서 · <Bob> I agree", 3)
    ]
    for position, (speaker, text) in enumerate(script, 4):
        queue.push(speaker, text, position)
    assert [p for _, p in drain(queue, pack=False)] == [4, 5, 6]  # tokens enough: one each
    assert queue.packed == 2


def test_packing_cuts_at_spaces_and_keeps_every_word_once_in_order() -> None:
    budget = budget_for("#room")
    queue = MergeQueue("r", "#room", max_lines=500)
    queue.budget = budget
    sent = []
    for i in range(30):
        words = [f"말{i:02d}{k}" if i % 3 == 1 else f"w{i:02d}{k}" for k in range(12)]
        sent += words
        queue.push(("Alice", "민준", "Bob")[i % 3], " ".join(words), i + 1)
    lines = drain(queue, pack=True)
    assert len(lines) < 30
    got = [w for text, _ in lines for w in text.split() if w != "·" and not w.startswith("<")]
    assert got == sent
    for text, _ in lines:
        assert len(relayed(text)) <= 512
        assert text.startswith("<")
    positions = [p for _, p in lines if p is not None]
    assert positions == sorted(positions) and positions[-1] == 30


def test_nick_helpers() -> None:
    assert protocol.valid_nick("plenarybot", 9) == "plenarybo"
    assert protocol.valid_nick("9 relay!", 30) == "relay"
    assert protocol.valid_nick("---", 9) == "plenary"
    assert protocol.nick_limit("Nickname too long, max. 9 characters") == 9
    assert protocol.nick_limit("Erroneous Nickname") is None
    assert protocol.alternative_nick("plenarybo", 9, 1, 1234) == "plenaryb_"
    assert protocol.alternative_nick("plenarybo", 9, 2, 1234) == "plenary__"
    assert protocol.alternative_nick("plenarybo", 9, 3, 1234) == "plena1234"
    assert protocol.alternative_nick("relay", 30, 3, 1234) == "relay1234"
