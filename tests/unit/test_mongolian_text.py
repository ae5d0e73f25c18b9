"""Mongolian script survives input cleaning and display (the outside tester: U+180E, the
Mongolian vowel separator in ᠪᠠᠢᠨ᠎ᠠ, was stored as a space and shown as ‹U+180E›), while a
U+180E anywhere else is still treated as invisible formatting."""
from __future__ import annotations

from bot.text import clean_message, display_text

MONGOLIAN = "ᠰᠠᠢᠨ ᠪᠠᠢᠨ\u180eᠠ ᠤᠤ"


def test_the_vowel_separator_inside_mongolian_words_is_kept() -> None:
    assert clean_message(MONGOLIAN) == MONGOLIAN
    assert display_text(MONGOLIAN) == MONGOLIAN


def test_a_stray_vowel_separator_is_still_invisible_formatting() -> None:
    assert clean_message("已办\u180e结") == "已办 结"
    assert clean_message("\u180eᠠ") == " ᠠ"
    assert display_text("已办\u180e结") == "已办‹U+180E›结"
    assert display_text("ᠠ\u180e") == "ᠠ‹U+180E›"
