"""青城诉求 — citizen grievance assistant for Hohhot."""

from bot.domain.limits import use_time_limits as _use_time_limits
from bot.security import logmask as _logmask

_logmask.install()  # phone and ID numbers masked in every log record of the process (bot/security/logmask.py)


def _catalogue_time_limits():
    # The 签收/办结 limits live in the routing catalogue; the domain reads no files, so every
    # process hands it this loader (called on first use, when the catalogue is needed anyway).
    from bot.reference.routing import default_catalogue

    return default_catalogue().time_limits


_use_time_limits(loader=_catalogue_time_limits)
