"""The vosk-server protocol (docs/protocols.md §1): parser and reply shapes, with literal frames."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bots.captioner import vosk_protocol as vp

# --- config frames exactly as real clients send them ---


def test_vosk_server_test_py_config() -> None:
    msg = vp.parse_text_frame('{ "config" : { "sample_rate" : 16000 } }')
    assert msg == vp.Config(sample_rate=16000.0)


def test_jigasi_config_with_float_rate() -> None:
    # VoskTranscriptionService.java sends exactly this (note the spaces and the float).
    msg = vp.parse_text_frame('{"config" : {"sample_rate" : 48000.0 }}')
    assert msg == vp.Config(sample_rate=48000.0)


def test_bigbluebutton_config_with_string_rate() -> None:
    msg = vp.parse_text_frame('{"config": {"sample_rate": "16000"}}')
    assert isinstance(msg, vp.Config)
    assert msg.sample_rate == 16000.0


def test_config_words_alternatives_phrase_list() -> None:
    msg = vp.parse_text_frame(
        '{"config": {"sample_rate": 8000, "words": true, "max_alternatives": 3,'
        ' "phrase_list": ["안녕하세요", "반갑습니다", "[unk]"]}}'
    )
    assert msg == vp.Config(
        sample_rate=8000.0,
        words=True,
        max_alternatives=3,
        phrase_list=("안녕하세요", "반갑습니다", "[unk]"),
    )


def test_config_words_as_integer_and_alternatives_as_string() -> None:
    # vosk-server's own examples send "words": 1; some clients stringify numbers.
    msg = vp.parse_text_frame('{"config": {"words": 1, "max_alternatives": "2"}}')
    assert msg == vp.Config(words=True, max_alternatives=2)
    off = vp.parse_text_frame('{"config": {"words": false}}')
    assert off == vp.Config(words=False)


def test_config_absent_keys_are_none_and_empty_phrase_list_means_none() -> None:
    assert vp.parse_text_frame('{"config": {}}') == vp.Config()
    assert vp.parse_text_frame('{"config": {"phrase_list": []}}') == vp.Config()


@pytest.mark.parametrize("frame", ['{"eof" : 1}', '{"eof":1}', '{ "eof" : 1 }\n'])
def test_eof(frame: str) -> None:
    assert vp.parse_text_frame(frame) == vp.Eof()


@pytest.mark.parametrize("frame", ['{"reset" : 1}', '{"reset":1}'])
def test_reset(frame: str) -> None:
    assert vp.parse_text_frame(frame) == vp.Reset()


# --- errors and their close codes ---


def _error(frame: str) -> vp.ProtocolError:
    with pytest.raises(vp.ProtocolError) as info:
        vp.parse_text_frame(frame)
    return info.value


@pytest.mark.parametrize("frame", ["", "eof", '{"eof": 1', "{'eof': 1}", '{"eof": 1}}'])
def test_not_json_is_1007(frame: str) -> None:
    err = _error(frame)
    assert err.code == vp.CLOSE_INVALID == 1007
    assert "not JSON" in err.reason


def test_absurd_json_is_a_protocol_error_not_a_crash() -> None:
    # Python refuses integers of more than 4300 digits with a plain ValueError and
    # deep nesting with RecursionError; neither may escape the parser.
    huge = vp.parse_text_frame  # keep the line short
    for frame in ('{"config": {"sample_rate": ' + "9" * 5000 + "}}", "[" * 100_000):
        with pytest.raises(vp.ProtocolError) as info:
            huge(frame)
        assert info.value.code in (vp.CLOSE_INVALID, vp.CLOSE_UNSUPPORTED)
        assert len(info.value.reason) < 200


@pytest.mark.parametrize(
    "frame",
    ["[]", '["eof"]', "1", '"eof"', "null", "{}", '{"eof": 1, "config": {"sample_rate": 8000}}'],
)
def test_not_a_one_key_object_is_1003(frame: str) -> None:
    err = _error(frame)
    assert err.code == vp.CLOSE_UNSUPPORTED == 1003
    assert '{"eof": 1}' in err.reason  # tells the client what it may send


def test_unknown_key_is_1003_and_named() -> None:
    err = _error('{"hello": 1}')
    assert err.code == 1003
    assert "hello" in err.reason


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        ("0", "0"),
        ("-1", "-1"),
        ('"abc"', "abc"),
        ("NaN", "nan"),
        ('"NaN"', "NaN"),
        ("Infinity", "inf"),
        ("1e9", "1000000000"),
        ("true", "True"),
        ("[16000]", "16000"),
        ("{}", "{}"),
    ],
)
def test_bad_sample_rate_is_1007_and_shows_the_value(rate: str, shown: str) -> None:
    err = _error('{"config": {"sample_rate": ' + rate + "}}")
    assert err.code == vp.CLOSE_INVALID
    assert "sample_rate" in err.reason
    assert shown in err.reason


def test_rate_range_limits_are_inclusive() -> None:
    assert vp.parse_text_frame('{"config": {"sample_rate": 8000}}') == vp.Config(8000.0)
    assert vp.parse_text_frame('{"config": {"sample_rate": 192000}}') == vp.Config(192000.0)
    assert _error('{"config": {"sample_rate": 7999}}').code == 1007
    assert _error('{"config": {"sample_rate": 192001}}').code == 1007


@pytest.mark.parametrize(
    "phrases", ['"안녕하세요"', '["ok", 1]', '[["nested"]]', "{}", "[null]", "true"]
)
def test_bad_phrase_list_is_1007(phrases: str) -> None:
    err = _error('{"config": {"phrase_list": ' + phrases + "}}")
    assert err.code == 1007
    assert "phrase_list" in err.reason


@pytest.mark.parametrize(
    "config",
    [
        '{"words": "yes"}',
        '{"max_alternatives": -1}',
        '{"max_alternatives": 21}',
        '{"max_alternatives": true}',
        '{"max_alternatives": "many"}',
        '{"max_alternatives": 2.5}',
    ],
)
def test_bad_words_or_alternatives_is_1007(config: str) -> None:
    err = _error('{"config": ' + config + "}")
    assert err.code == 1007
    key = "words" if "words" in config else "max_alternatives"
    assert key in err.reason


@pytest.mark.parametrize("value", ["16000", "[]", '"x"', "null"])
def test_config_not_an_object_is_1007(value: str) -> None:
    err = _error('{"config": ' + value + "}")
    assert err.code == 1007
    assert "config" in err.reason


def test_huge_bad_value_gives_a_short_reason() -> None:
    err = _error('{"config": {"sample_rate": "%s"}}' % ("x" * 100_000))
    assert err.code == 1007
    assert len(err.reason) < 200


# --- reply shapes ---


def _word(word: str, start: float, end: float) -> dict[str, Any]:
    return {"conf": 0.9, "start": start, "end": end, "word": word}


def test_partial_and_empty_replies() -> None:
    assert json.loads(vp.partial_reply("안녕")) == {"partial": "안녕"}
    assert json.loads(vp.partial_reply("")) == {"partial": ""}
    assert json.loads(vp.empty_reply()) == {"text": ""}
    assert "안녕" in vp.partial_reply("안녕")  # UTF-8, not \\uXXXX escapes


def test_final_reply_without_words_has_text_only() -> None:
    result = {"text": "안녕 하세요", "result": [_word("안녕", 0.1, 0.4), _word("하세요", 0.4, 0.9)]}
    assert json.loads(vp.final_reply([result], words=False)) == {"text": "안녕 하세요"}


def test_final_reply_with_words_keeps_result() -> None:
    words = [_word("안녕", 0.1, 0.4), _word("하세요", 0.4, 0.9)]
    reply = json.loads(vp.final_reply([{"text": "안녕 하세요", "result": words}], words=True))
    assert reply == {"text": "안녕 하세요", "result": words}


def test_final_reply_of_nothing_is_empty_text() -> None:
    assert json.loads(vp.final_reply([], words=True)) == {"text": ""}
    assert json.loads(vp.final_reply([], words=False)) == {"text": ""}


def test_two_finals_in_one_frame_are_merged() -> None:
    first = {"text": "안녕", "result": [_word("안녕", 0.1, 0.4)]}
    second = {"text": "반가워요", "result": [_word("반가워요", 1.5, 2.0)]}
    assert json.loads(vp.final_reply([first, second], words=False)) == {"text": "안녕 반가워요"}
    merged = json.loads(vp.final_reply([first, second], words=True))
    assert merged["text"] == "안녕 반가워요"
    assert [w["word"] for w in merged["result"]] == ["안녕", "반가워요"]


def test_final_reply_with_alternatives() -> None:
    alternatives = [
        {"confidence": 210.5, "text": "안녕 하세요", "result": [_word("안녕", 0.1, 0.4)]},
        {"confidence": 200.1, "text": "안녕 하세", "result": [_word("안녕", 0.1, 0.4)]},
    ]
    reply = json.loads(vp.final_reply([{"alternatives": alternatives}], words=False))
    assert reply == {
        "alternatives": [
            {"confidence": 210.5, "text": "안녕 하세요"},
            {"confidence": 200.1, "text": "안녕 하세"},
        ]
    }
    with_words = json.loads(vp.final_reply([{"alternatives": alternatives}], words=True))
    assert with_words == {"alternatives": alternatives}


def test_alternatives_of_two_finals_prefix_the_earlier_best_text() -> None:
    first = {
        "alternatives": [{"confidence": 1.0, "text": "안녕"}, {"confidence": 0.5, "text": "앙"}]
    }
    second = {"alternatives": [{"confidence": 1.0, "text": "반가워요"}]}
    reply = json.loads(vp.final_reply([first, second], words=False))
    assert reply == {"alternatives": [{"confidence": 1.0, "text": "안녕 반가워요"}]}


def test_final_reply_does_not_change_its_input() -> None:
    alternatives = [{"confidence": 1.0, "text": "안녕", "result": [_word("안녕", 0.1, 0.4)]}]
    results = [{"alternatives": alternatives}]
    vp.final_reply(results, words=False)
    assert alternatives[0]["text"] == "안녕"
    assert "result" in alternatives[0]


# --- close reasons ---


def test_short_close_reason_is_kept() -> None:
    assert vp.close_reason("idle: no frame for 60 s") == b"idle: no frame for 60 s"


@pytest.mark.parametrize("text", ["a" * 500, "가" * 100, "a" + "가" * 60, "ab" + "😀" * 40])
def test_long_close_reason_fits_123_bytes_on_a_character_boundary(text: str) -> None:
    reason = vp.close_reason(text)
    assert len(reason) <= 123
    decoded = reason.decode("utf-8")  # raises if a character was cut in half
    assert decoded.endswith("...")
    assert text.startswith(decoded[:-3])
    assert len(reason) >= 123 - 3 - 3  # no more cut than one character


def test_close_reason_exactly_123_bytes_is_not_cut() -> None:
    text = "가" * 41  # 123 bytes
    assert vp.close_reason(text) == text.encode("utf-8")


def test_close_reason_survives_unencodable_text() -> None:
    reason = vp.close_reason("bad \ud800 surrogate")
    assert len(reason) <= 123
    assert reason.decode("utf-8").startswith("bad ")
