"""Text helpers shared by the NLU components, the actions and the console.

Normalisation is length-preserving (one character in, one character out) so that
entity offsets computed on normalised text are valid on the text as typed.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Optional

MAX_NLU_CHARS = 1000  # longer messages are kept whole but only their head is classified

_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}


def _normalise_char(ch: str) -> str:
    if ch in _ZERO_WIDTH or ch == "\u3000":
        return " "
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Zl", "Zp", "Zs") and ch != " ":
        return " "
    if "\uff01" <= ch <= "\uff5e":  # full-width ASCII block
        return chr(ord(ch) - 0xFEE0)
    return ch


def normalise(text: str) -> str:
    """Full-width ASCII to half-width, odd spaces/controls to a plain space; same length."""
    return "".join(_normalise_char(ch) for ch in text)


_CJK_OR_ALNUM = re.compile(r"[0-9A-Za-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def input_issue(text: Optional[str]) -> Optional[str]:
    """Why a message cannot be understood as written, or None when it can be read.

    "empty": nothing but whitespace/control characters;
    "no_text": no letter, digit or Chinese character at all (emoji, punctuation).
    """
    if text is None or not normalise(text).strip():
        return "empty"
    if not _CJK_OR_ALNUM.search(normalise(text)):  # full-width ＡＢＣ１２３ count too
        return "no_text"
    return None


_PHONE_CANDIDATE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(1[3-9]\d(?:[\s-]?\d){8})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3})[\s-]?(\d{7,8})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[0-9Xx])(?![0-9A-Za-z])")


def find_phone(text: str) -> Optional[str]:
    """The first Chinese mobile or landline number in text, digits only (landline as 0471-xxxxxxx)."""
    t = normalise(text)
    m = _PHONE_CANDIDATE.search(t)
    if m:
        return re.sub(r"\D", "", m.group(1))
    m = _LANDLINE.search(t)
    if m:
        return f"{m.group(1)}-{m.group(2)}"
    return None


def valid_phone(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return True
    return bool(re.fullmatch(r"0\d{2,3}\d{7,8}", digits))


def mask_phone(phone: Optional[str]) -> str:
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) >= 7:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    return "*" * len(digits)


def mask_personal_data(text: str) -> str:
    """Mask phone and ID numbers (for logs, exports and the review inbox)."""
    if not text:
        return text
    text = _ID_NUMBER.sub(lambda m: m.group(1)[:3] + "*" * 11 + m.group(3)[-4:], text)
    text = _PHONE_CANDIDATE.sub(lambda m: mask_phone(m.group(1)), text)
    text = _LANDLINE.sub(lambda m: m.group(1) + "-****" + m.group(2)[-2:], text)
    return text


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(text: str) -> bool:
    """True when text holds what no store can keep: NUL (PostgreSQL refuses it) or a lone
    UTF-16 surrogate (not encodable as UTF-8; JSON's "\\ud800" decodes to one)."""
    return bool(_UNSTORABLE.search(text))


def clean_message(text: str) -> str:
    """A chat message as the bot and the stores can take it: control characters (NUL
    included) become spaces, lone surrogates U+FFFD; same length, nothing else touched."""
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", text))


def shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
