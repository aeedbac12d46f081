"""Scoring used by the accuracy tests and the benchmarks, checked with literal cases."""

from __future__ import annotations

import pytest

from plenary.scoring import cer, normalize_en, normalize_ko, sino_korean, wer


@pytest.mark.parametrize(
    ("number", "spoken"),
    [
        (0, "영"),
        (1, "일"),
        (7, "칠"),
        (10, "십"),
        (11, "십일"),
        (30, "삼십"),
        (100, "백"),
        (101, "백일"),
        (110, "백십"),
        (1000, "천"),
        (2024, "이천이십사"),
        (10000, "만"),
        (10001, "만일"),
        (20000, "이만"),
        (110000, "십일만"),
        (1234567, "백이십삼만사천오백육십칠"),
        (100000000, "일억"),
    ],
)
def test_sino_korean(number: int, spoken: str) -> None:
    assert sino_korean(number) == spoken


def test_normalize_ko_spells_digits_and_drops_punctuation_and_spaces() -> None:
    assert normalize_ko("구입하신 건 [7] 년전, 30년 전!") == "구입하신건칠년전삼십년전"


def test_normalize_ko_composes_jamo() -> None:
    decomposed = "\u1100\u1161"  # ᄀ + ᅡ, the NFD spelling of 가
    assert normalize_ko(decomposed) == "가"


def test_normalize_en_upper_cases_and_keeps_apostrophes() -> None:
    assert normalize_en("Hello, world! It's  me...") == ["HELLO", "WORLD", "IT'S", "ME"]


def test_cer_digits_match_spelled_numbers() -> None:
    # The model writes "7 년전"; the reference spells "칠년 전": no error.
    assert cer([("칠년 전", "7 년전")]) == 0.0


def test_cer_counts_edits_over_reference_characters() -> None:
    assert cer([("가나다", "가나")]) == pytest.approx(1 / 3)
    assert cer([("가나", "다라")]) == 1.0
    assert cer([("가나", "가나다라")]) == 1.0  # insertions count too


def test_cer_is_pooled_over_the_corpus_not_averaged() -> None:
    # 1 edit in 4 characters + 0 in 1: 1/5, not the mean of 1/4 and 0.
    assert cer([("가나다라", "가나다마"), ("바", "바")]) == pytest.approx(0.2)


def test_cer_of_nothing_is_zero() -> None:
    assert cer([]) == 0.0


def test_wer_counts_word_edits() -> None:
    assert wer([("the cat sat", "The cat, sat.")]) == 0.0
    assert wer([("the cat sat", "the hat sat down")]) == pytest.approx(2 / 3)
    assert wer([("a b", "a c d"), ("e f g", "e f g")]) == pytest.approx(2 / 5)
