"""Phone and ID numbers never reach a log file, whatever the log level.

Rasa logs every user message (and the slots) at DEBUG, as structlog JSON in which Chinese
text is \\uXXXX-escaped; an operator may turn DEBUG on (`--debug`, LOG_LEVEL=DEBUG). So the
mask sits in the log *record factory*: every record of every logger in the process (Rasa,
rasa-sdk, sanic, ours) is formatted, its JSON escapes are turned back into the characters
they stand for (an escape such as \\u8bc1 ends in a digit and would hide a number's edge),
and bot.text.mask_personal_data masks mobiles, landlines and 18-digit ID numbers
(138****5678) before any handler sees it. Installed when the `bot` package is imported,
which every one of our processes does (Rasa loads our components and channels, the action
server our actions, the web server our app).
"""
from __future__ import annotations

import logging
import re
from typing import Any

from bot.text import mask_personal_data

_ESCAPE = re.compile(r"\\u(?![dD][89a-fA-F])([0-9a-fA-F]{4})")  # not surrogate halves: emoji stay escaped
_DIGITS = re.compile(r"\d{7}")
_installed = False
_FORMATTER = logging.Formatter()


def mask_message(message: str) -> str:
    if "\\u" in message:
        message = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), message)
    return mask_personal_data(message)


def install() -> None:
    """Wrap the log record factory (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error report
            return record
        if _DIGITS.search(message):  # nothing to mask without a run of digits: keep the record as is
            masked = mask_message(message)
            if masked != message:
                record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            # a traceback carries the exception's text (e.g. SQL parameters with a phone number):
            # formatted here, masked; Formatter.format uses a record's exc_text when it is set
            text = _FORMATTER.formatException(record.exc_info)
            if _DIGITS.search(text):
                record.exc_text = mask_message(text)
        return record

    logging.setLogRecordFactory(factory)
