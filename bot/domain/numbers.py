"""Ticket numbers (QC-261124-0003) and the last four digits of a phone: formatting, and
finding them in what a resident typed. No framework imports."""
from __future__ import annotations

import re
import unicodedata
from datetime import date


def format_ticket_number(day: date, seq: int) -> str:
    if not 1 <= seq <= 99999:
        raise ValueError(f"ticket sequence out of range: {seq}")
    return f"QC-{day:%y%m%d}-{seq:04d}"


_NUMBER_RE = re.compile(r"(?<![A-Za-z0-9])QC[\s\-_—–]*(\d{6})[\s\-_—–]*(\d{4,5})(?!\d)", re.IGNORECASE)


def parse_ticket_number(text: str) -> str | None:
    """Find a ticket number in what a resident typed and return it in canonical form."""
    # NFKC folds full-width letters, digits and dashes typed on Chinese keyboards.
    match = _NUMBER_RE.search(unicodedata.normalize("NFKC", text or ""))
    if not match:
        return None
    ymd, seq = match.groups()
    try:
        day = date(2000 + int(ymd[:2]), int(ymd[2:4]), int(ymd[4:]))
        return format_ticket_number(day, int(seq))
    except ValueError:
        return None


# "尾号5678", "手机后四位5678", "电话后4位：5678", "末四位是 5678": the last four digits of the
# phone a ticket was filed with (a caller's proof when the ticket was filed for them).
_PHONE_TAIL_RE = re.compile(r"(?:尾号|尾数|后[四4]位|末[四4]位)(?:数字|号码)?(?:是|为)?[\s:：]*(\d{4})(?!\d)")


def parse_phone_tail(text: str) -> str | None:
    """The last four phone digits a resident named beside a ticket number, or None."""
    folded = _NUMBER_RE.sub(" ", unicodedata.normalize("NFKC", text or ""))
    match = _PHONE_TAIL_RE.search(folded)
    return match.group(1) if match else None


def phone_tail(phone: str | None) -> str | None:
    """The last four digits of a stored phone number (13847115678, 0471-6925678)."""
    digits = re.sub(r"\D", "", phone or "")
    return digits[-4:] if len(digits) >= 7 else None
