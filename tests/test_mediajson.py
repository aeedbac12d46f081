"""MediaJson parsing and results, the jitter buffer and the Opus decoder, with literal frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import opuslib
import pytest

from bots.captioner import mediajson as mj
from bots.captioner import opus
from bots.captioner.opus import Gap, JitterBuffer, Lost, Packet

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "jitsi"
DUMP = FIXTURE / "jvb-mediajson-dump.jsonl"


def dump_lines() -> list[dict[str, Any]]:
    """The capture's lines: ``{"timestamp", "direction", "data"}``."""
    if not DUMP.is_file():
        pytest.skip(f"fixture missing: {DUMP}")
    return [json.loads(line) for line in DUMP.read_text(encoding="utf-8").splitlines()]


def dump_frames(n: int | None = None) -> list[str]:
    return [line["data"] for line in dump_lines()[:n]]


def test_start_frame_from_a_real_bridge() -> None:
    first = dump_frames(1)[0]
    assert mj.parse_frame(first) == mj.Start(
        tag="aaaaaaaa-305123557",
        encoding="opus",
        sample_rate=48000,
        channels=2,
        endpoint_id="aaaaaaaa",
    )


def test_media_frames_from_a_real_bridge_have_string_integers() -> None:
    frames = dump_frames(4)
    media = mj.parse_frame(frames[1])
    assert media == mj.Media(
        tag="aaaaaaaa-305123557",
        chunk=31456,
        timestamp=268460,
        payload="eAvkwTbsxY2MSUaZBMWq7ZLnY0o6GJjuYstg/2wbKQA=",
    )
    assert isinstance(media, mj.Media)
    packet = mj.decode_payload(media)
    assert packet[0] == 0x78  # TOC: SILK wideband 20 ms, mono, one frame
    assert opus.packet_samples(packet) == 960
    assert [m.chunk for m in map(mj.parse_frame, frames[1:4])] == [31456, 31457, 31458]  # type: ignore[union-attr]


def test_every_frame_of_the_dump_parses() -> None:
    kinds = [type(mj.parse_frame(f)).__name__ for f in dump_frames()]
    assert kinds.count("Start") == 2 and kinds.count("Media") == 2125


def test_new_bridge_fields_ping_info_session_end_and_unknown_events() -> None:
    media = mj.parse_frame(
        '{"event":"media","sequenceNumber":"9","media":{"tag":"ab12-a0","chunk":"65535",'
        '"timestamp":"4294967295","payload":"eA==","audioLevel":127,"vad":false}}'
    )
    assert isinstance(media, mj.Media)
    assert (media.chunk, media.timestamp, media.audio_level, media.vad) == (
        65535,
        4294967295,
        127,
        False,
    )
    assert mj.is_silent(media)
    assert not mj.is_silent(mj.Media("t", 1, 1, "", audio_level=30, vad=True))
    assert mj.parse_frame('{"event":"ping","id":41}') == mj.Ping(41)
    info = '{"event":"info","application":"jitsi-videobridge","version":"2.3","region":"eu"}'
    assert mj.parse_frame(info) == mj.Info("jitsi-videobridge", "2.3", "eu")
    assert mj.parse_frame('{"event":"session-end"}') == mj.SessionEnd()
    assert mj.parse_frame('{"event":"mute","media":{}}') == mj.Unknown("'mute'")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "not JSON"),
        ("[1,2]", "not a JSON object"),
        ('{"media":{}}', "no event"),
        ('{"event":"media"}', "media object"),
        ('{"event":"media","media":{"tag":"t","payload":7}}', "payload"),
        ('{"event":"media","media":{"payload":"eA=="}}', "tag"),
        ('{"event":"media","media":{"tag":"t","payload":"","chunk":"x12"}}', "chunk"),
        ('{"event":"media","media":{"tag":"t","payload":"","chunk":true}}', "chunk"),
        ('{"event":"start","start":{"tag":"t","mediaFormat":{"sampleRate":"fast"}}}', "sampleRate"),
    ],
)
def test_malformed_frames_raise_frame_errors_naming_the_problem(frame: str, reason: str) -> None:
    with pytest.raises(mj.FrameError, match=reason):
        mj.parse_frame(frame)


def test_invalid_base64_is_a_frame_error() -> None:
    with pytest.raises(mj.FrameError, match="base64"):
        mj.decode_payload(mj.Media("t", 1, 1, "not base64!!"))


def test_endpoint_id_is_the_tags_prefix() -> None:
    assert mj.endpoint_id("aaaaaaaa-305123557") == "aaaaaaaa"
    assert mj.endpoint_id("5f3a9c1e-a0") == "5f3a9c1e"
    assert mj.endpoint_id("plain") == "plain"


def test_query_flags_are_exactly_true() -> None:
    q = mj.parse_query(
        {"sessionId": "m1", "sendBack": "true", "sendBackInterim": "True", "lang": "ko-KR"},
        ["production", "x" * 300],
    )
    assert q == mj.Query("m1", True, False, "ko-KR", ("production", "x" * 128))
    assert mj.parse_query({}) == mj.Query(None, False, False, None, ())


def test_pong_and_result_shapes() -> None:
    assert json.loads(mj.pong(12)) == {"event": "pong", "id": 12}
    result = json.loads(
        mj.transcription_result(
            message_id="m-1",
            text="안녕하세요",
            confidence=0.91234,
            is_interim=False,
            endpoint="ab12",
            tag="ab12-a0",
            timestamp_ms=1773349879161,
            language="ko",
        )
    )
    assert result == {
        "event": "transcription-result",
        "type": "transcription-result",
        "message_id": "m-1",
        "is_interim": False,
        "transcript": [{"text": "안녕하세요", "confidence": 0.912}],
        "participant": {"id": "ab12", "tag": "ab12-a0"},
        "timestamp": 1773349879161,
        "language": "ko",
    }


def p(seq: int, ts: int | None = None, silent: bool = False) -> Packet:
    return Packet(seq, seq * 960 if ts is None else ts, b"\x78", silent)


def kinds(steps: list[opus.Step]) -> list[object]:
    return [s.seq if isinstance(s, Packet) else s for s in steps]


def test_jitter_buffer_reorders_within_its_depth() -> None:
    jb = JitterBuffer(depth=3)
    assert kinds(jb.push(p(1))) == [1]
    assert kinds(jb.push(p(3))) == []  # 2 is late: wait for it
    assert kinds(jb.push(p(2))) == [2, 3]
    assert jb.lost == 0 and jb.stale == 0


def test_jitter_buffer_declares_loss_and_drops_duplicates() -> None:
    jb = JitterBuffer(depth=2, max_conceal=5)
    jb.push(p(10))
    assert jb.push(p(12)) == [] and jb.push(p(13)) == []
    assert kinds(jb.push(p(14))) == [Lost(1), 12, 13, 14]
    assert jb.push(p(11)) == [] and jb.push(p(13)) == []  # too late, and a duplicate
    assert (jb.lost, jb.stale) == (1, 2)
    assert kinds(jb.push(p(40))) == []  # a long gap: concealment is capped
    jb.push(p(41))
    assert kinds(jb.push(p(42))) == [Lost(5), 40, 41, 42]


def test_jitter_buffer_wraps_sequence_numbers() -> None:
    jb = JitterBuffer()
    out = []
    for seq in (65534, 65535, 0, 1):
        out += jb.push(Packet(seq, 0 if seq > 2 else 0, b"", False))
    assert [s.seq for s in out if isinstance(s, Packet)] == [65534, 65535, 0, 1]


def test_timestamp_jump_with_contiguous_sequence_is_silence_capped() -> None:
    jb = JitterBuffer(max_gap=48000)
    jb.push(p(1, ts=0))
    assert kinds(jb.push(p(2, ts=960 + 6720))) == [Gap(6720), 2]  # the fixture's 140 ms
    assert kinds(jb.push(p(3, ts=960 + 6720 + 960 + 1534080))) == [Gap(48000), 3]


def test_drain_releases_held_packets_and_a_restart_is_not_loss() -> None:
    jb = JitterBuffer(depth=3)
    jb.push(p(1))
    jb.push(p(3))
    assert kinds(jb.drain()) == [Lost(1), 3]
    assert kinds(jb.push(p(30000))) == [30000]  # a new stream under the same tag
    assert jb.restarts == 1 and jb.lost == 1


def test_packet_samples_reads_the_toc() -> None:
    assert opus.packet_samples(b"\x78") == 960  # SILK WB 20 ms
    assert opus.packet_samples(b"\xfc") == 960  # CELT FB 20 ms
    assert opus.packet_samples(b"\x90") == 480  # CELT NB 10 ms (config 18)
    assert opus.packet_samples(b"\x79") == 1920  # two 20 ms frames
    assert opus.packet_samples(b"") == 960


def test_decoder_conceals_loss_and_rejects_garbage() -> None:
    encoder = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    tone = (np.sin(np.arange(960) * 0.05) * 8000).astype("<i2").tobytes()
    packets = [encoder.encode(tone, 960) for _ in range(5)]
    source = opus.OpusSource()
    assert len(source.decode(packets[0])) == 1920
    assert len(source.conceal(2)) == 2 * 1920
    assert len(source.conceal(1, following=packets[2])) == 1920  # FEC or concealment
    with pytest.raises(opus.OpusError, match="corrupted"):
        source.decode(b"\xff\xff\xff")
    assert len(source.decode(packets[3])) == 1920  # a bad packet does not break the decoder
    assert source.concealed == 3


def test_query_room_parameter_is_validated() -> None:
    from bots.captioner.mediajson import parse_query

    assert parse_query({"sessionId": "m1", "room": "Keynote"}).room == "keynote"
    assert parse_query({"sessionId": "m1", "room": "a b/../c"}).room is None
    assert parse_query({"sessionId": "m1"}).room is None


# --- Opus packet framing (RFC 6716 §3.4) ---


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"", "empty"),
        (b"\x78" + bytes(1276), "length"),  # code 0: one frame over 1275 bytes
        (b"\x79" + bytes(5), "length"),  # code 1: two equal frames need an even length
        (b"\x7a", "truncated"),  # code 2 without the first frame's length
        (b"\x7a\xfc", "truncated"),  # a two-byte length cut after its first byte
        (b"\x7a\x10" + bytes(8), "truncated"),  # first frame longer than the packet
        (b"\x7b", "truncated"),  # code 3 without its frame count
        (b"\x7b\x00", "toc"),  # no frames
        (b"\xfb\x07", "toc"),  # 7 frames of 20 ms: over 120 ms
        (b"\x7b\x43\xff", "padding"),  # padding length runs off the end
        (b"\x7b\x42\x20" + bytes(4), "padding"),  # more padding than bytes
        (b"\x7b\x03" + bytes(10), "length"),  # CBR: 10 bytes do not split in 3 frames
        (b"\x7b\x83\x05" + bytes(3), "truncated"),  # VBR: frame lengths beyond the packet
        (b"\x7b\x03" + bytes(8000), "oversized"),
    ],
)
def test_invalid_opus_packets_are_named(packet: bytes, reason: str) -> None:
    assert opus.invalid_packet(packet) == reason


def test_valid_opus_packets_pass() -> None:
    assert opus.invalid_packet(b"\xf8") is None  # a 0-byte frame (DTX) is valid
    assert opus.invalid_packet(b"\x79" + bytes(6)) is None
    assert opus.invalid_packet(b"\x7a\x02" + bytes(5)) is None
    assert opus.invalid_packet(b"\x7b\x42\x02" + bytes(6)) is None  # CBR, 2 bytes padding
    assert opus.invalid_packet(b"\x7b\x83\x02\x03" + bytes(9)) is None  # VBR 2+3+4
    encoder = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    noise = np.random.default_rng(1).normal(0, 3000, 960 * 40).astype("<i2")
    for n in range(40):
        assert (
            opus.invalid_packet(encoder.encode(noise[n * 960 : (n + 1) * 960].tobytes(), 960))
            is None
        )
    # Every packet of the real videobridge capture.
    payloads = [
        mj.decode_payload(m)
        for m in (mj.parse_frame(f) for f in dump_frames())
        if isinstance(m, mj.Media)
    ]
    assert len(payloads) > 100
    assert [p for p in payloads if opus.invalid_packet(p)] == []
