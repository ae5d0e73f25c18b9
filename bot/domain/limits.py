"""Time limits for each step of a ticket (签收时限 and 办结时限), per dispatch class with an
optional override per category.

The numbers live in data/routing/catalogue.yml (`dispatch_classes`, and `limits` under a
category); `TimeLimits.parse` reads that mapping, bot.reference.routing hands it over. A ticket
records the limits it was filed under in its 受理 (and 改类) event, so a later edit of the
catalogue does not move the deadlines of tickets already filed; tickets filed before
per-step limits keep their single stored deadline (the class's `hours`, the old rule).
Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.domain.workcal import WorkCalendar, add_working_time

SIGN, FINISH = "签收", "办结"
_STEP_KEYS = {SIGN: "sign", FINISH: "finish"}


class LimitsError(ValueError):
    """A malformed time-limit entry in the catalogue."""


@dataclass(frozen=True)
class Limit:
    amount: timedelta
    working_days: bool  # True: the clock runs on working days only (see bot.domain.workcal)

    @property
    def label(self) -> str:
        if self.working_days:
            days = self.amount / timedelta(days=1)
            return f"{days:g}个工作日"
        hours = self.amount / timedelta(hours=1)
        return f"{hours:g}小时"

    def due(self, start: datetime, calendar: WorkCalendar | None = None) -> datetime:
        if self.working_days:
            return add_working_time(start, self.amount, calendar)
        return start + self.amount

    def to_data(self) -> list[Any]:
        return [self.amount.total_seconds() / 3600, self.working_days]

    @classmethod
    def from_data(cls, data: Any) -> Limit:
        hours, working_days = data
        return cls(timedelta(hours=float(hours)), bool(working_days))

    @classmethod
    def parse(cls, spec: Any, where: str) -> Limit:
        """{working_days: N} or {hours: N}."""
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise LimitsError(f"{where}: give exactly one of working_days: N or hours: N")
        (unit, value), = spec.items()
        if unit not in ("working_days", "hours") or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or value <= 0:
            raise LimitsError(f"{where}: {unit}: {value!r} is not a positive number of working_days or hours")
        if unit == "working_days":
            return cls(timedelta(days=value), True)
        return cls(timedelta(hours=value), False)


@dataclass(frozen=True)
class StepLimits:
    sign: Limit
    finish: Limit

    def of(self, step: str) -> Limit:
        return self.sign if step == SIGN else self.finish

    def to_data(self) -> dict[str, Any]:
        return {"sign": self.sign.to_data(), "finish": self.finish.to_data()}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StepLimits:
        return cls(Limit.from_data(data["sign"]), Limit.from_data(data["finish"]))


@dataclass(frozen=True)
class TimeLimits:
    classes: Mapping[str, StepLimits]
    # category → (its dispatch class, limits): an override applies while the ticket has
    # the category's own class (a keyword that makes it 紧急 takes the class's limits).
    categories: Mapping[str, tuple[str, StepLimits]]
    # The old rule (one limit for the whole ticket): deadlines of tickets filed before
    # per-step limits are recomputed with it when the holiday calendar changes.
    legacy: Mapping[str, Limit]

    def for_ticket(self, dispatch_class: str, category: str) -> StepLimits:
        override = self.categories.get(category)
        if override is not None and override[0] == str(dispatch_class):
            return override[1]
        return self.classes[str(dispatch_class)]

    @classmethod
    def parse(cls, catalogue: Mapping[str, Any]) -> TimeLimits:
        """`catalogue` is data/routing/catalogue.yml as a mapping."""
        classes: dict[str, StepLimits] = {}
        legacy: dict[str, Limit] = {}
        for code, spec in (catalogue.get("dispatch_classes") or {}).items():
            code = str(code)
            spec = spec or {}
            try:
                classes[code] = StepLimits(Limit.parse(spec.get(SIGN), f"dispatch_classes.{code}.{SIGN}"),
                                           Limit.parse(spec.get(FINISH), f"dispatch_classes.{code}.{FINISH}"))
            except AttributeError:
                raise LimitsError(f"dispatch_classes.{code}: not a mapping") from None
            hours = spec.get("hours")
            if hours is not None:
                # The old rule: 一般 counted its 24 h on working days, the urgent classes clock hours.
                legacy[code] = Limit(timedelta(hours=hours), code == "normal")
        categories: dict[str, tuple[str, StepLimits]] = {}
        for code, spec in (catalogue.get("categories") or {}).items():
            override = (spec or {}).get("limits")
            if override is None:
                continue
            own_class = str((spec or {}).get("dispatch_class", "normal"))
            base = classes.get(own_class)
            if base is None:
                raise LimitsError(f"categories.{code}: unknown dispatch_class")
            if not isinstance(override, Mapping) or set(override) - set(_STEP_KEYS):
                raise LimitsError(f"categories.{code}.limits: only {SIGN} and {FINISH} may be given")
            categories[str(code)] = (own_class, StepLimits(
                Limit.parse(override[SIGN], f"categories.{code}.limits.{SIGN}") if SIGN in override else base.sign,
                Limit.parse(override[FINISH], f"categories.{code}.limits.{FINISH}") if FINISH in override
                else base.finish,
            ))
        return cls(classes, categories, legacy)


_limits: TimeLimits | None = None
_loader: Callable[[], TimeLimits] | None = None


def use_time_limits(limits: TimeLimits | None = None, loader: Callable[[], TimeLimits] | None = None) -> None:
    """Set this process's limits (tests), or how to load them on first use (bot/__init__.py: the catalogue's)."""
    global _limits, _loader
    _limits = limits
    if loader is not None:
        _loader = loader


def time_limits() -> TimeLimits:
    global _limits
    if _limits is None:
        assert _loader is not None, "no time limits configured"
        _limits = _loader()
    return _limits
