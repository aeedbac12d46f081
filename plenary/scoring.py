"""Accuracy scoring: text normalization, CER and WER.

The Korean references spell numbers in Hangul as spoken ("칠년"); the model writes
digits ("7 년"). Both sides are normalized the same way: digits read as
Sino-Korean numerals, punctuation and spaces dropped, then characters compared.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence

from rapidfuzz.distance import Levenshtein

_DIGITS = "영일이삼사오육칠팔구"
_SMALL_UNITS = ["", "십", "백", "천"]
_BIG_UNITS = ["", "만", "억", "조", "경"]


def sino_korean(number: int) -> str:
    """Read a non-negative integer as Sino-Korean: 7 → 칠, 30 → 삼십, 10000 → 만.

    >>> sino_korean(2024)
    '이천이십사'
    """
    if number == 0:
        return _DIGITS[0]
    groups: list[str] = []
    big = 0
    while number:
        number, group = divmod(number, 10000)
        if group:
            words = ""
            for place in range(3, -1, -1):
                digit = group // 10**place % 10
                if not digit:
                    continue
                # A leading 1 is silent before 십/백/천 (십, not 일십).
                words += ("" if digit == 1 and place else _DIGITS[digit]) + _SMALL_UNITS[place]
            if big == 1 and group == 1:
                words = ""  # 만, not 일만
            groups.append(words + _BIG_UNITS[big])
        big += 1
    return "".join(reversed(groups))


def _spell_digits(text: str) -> str:
    return re.sub(r"\d+", lambda m: sino_korean(int(m.group())), text)


def normalize_ko(text: str) -> str:
    """Characters that count for Korean CER: numerals spelled, no punctuation or spaces."""
    text = _spell_digits(unicodedata.normalize("NFC", text))
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def normalize_en(text: str) -> list[str]:
    """Words that count for English WER: upper case, apostrophes kept, other punctuation gone."""
    text = unicodedata.normalize("NFC", text).upper()
    text = re.sub(r"[^\w' ]+", " ", text)
    return text.split()


def cer(pairs: Iterable[tuple[str, str]]) -> float:
    """Corpus character error rate over (reference, hypothesis) pairs, Korean-normalized."""
    return _error_rate(pairs, normalize_ko)


def wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Corpus word error rate over (reference, hypothesis) pairs, English-normalized."""
    return _error_rate(pairs, normalize_en)


def _error_rate(
    pairs: Iterable[tuple[str, str]], normalize: Callable[[str], Sequence[str]]
) -> float:
    """Edits over reference length, summed over the corpus (not averaged per pair)."""
    edits = total = 0
    for ref, hyp in pairs:
        r, h = normalize(ref), normalize(hyp)
        edits += Levenshtein.distance(r, h)
        total += len(r)
    return edits / total if total else 0.0
