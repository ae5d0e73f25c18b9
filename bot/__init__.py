"""青城诉求 — citizen grievance assistant for Hohhot."""

from bot import logmask as _logmask

_logmask.install()  # phone and ID numbers masked in every log record of the process (bot/logmask.py)
