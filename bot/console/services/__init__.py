"""Console use cases, one module per concern; every function takes a unit of work (like
bot.services.tickets) and the current time; nothing here knows about HTTP.

    access    who may see what: Principal, visibility, the refusals a user reads
    accounts  users, passwords, sessions, demo accounts
    queues    the queues and one ticket's page
    handling  the actions on a ticket, escalation (督办)
    notices   ticket events → the outbox; worker notices

The names below are the package's API (callers write `svc.perform(...)`)."""

from __future__ import annotations

from bot.console.services.access import (
    ConsoleError,
    NotFound,
    Principal,
    SessionExpired,
    can_see,
    get_visible,
    is_member,
    signing_unit,
    ticket_queues,
)
from bot.console.services.accounts import (
    DEMO_ACCOUNTS,
    SESSION_TTL,
    NewSession,
    create_user,
    log_in,
    log_out,
    print_demo_accounts,
    seed_demo_accounts,
    session_principal,
    set_password,
    validate_username,
)
from bot.console.services.handling import (
    ACTIONS,
    DISPATCHER_ACTIONS,
    WORKER_ACTIONS,
    ActionResult,
    allowed_actions,
    perform,
    recategorise_choices,
    sweep_overdue,
)
from bot.console.services.notices import (
    FEED,
    NO_PUSH_CHANNELS,
    RESIDENT_EVENTS,
    ensure_feed,
    notices,
    process_feed,
    unread_notices,
)
from bot.console.services.queues import (
    DISPATCHER_VIEWS,
    PAGE_SIZE,
    SYSTEM_ACTORS,
    VIEWS,
    QueueItem,
    QueuePage,
    TicketView,
    actor_label,
    attachment_for,
    category_names,
    counts_weekdays_only,
    flags,
    queue_page,
    repeats_of,
    report_photo,
    stored_photo_of,
    ticket_view,
    urgency,
    views_for,
)
from bot.services.tickets import SATISFACTION, FollowUpResult, record_follow_up

__all__ = [
    "ConsoleError",
    "NotFound",
    "SessionExpired",
    "Principal",
    "ticket_queues",
    "is_member",
    "can_see",
    "signing_unit",
    "get_visible",
    "SESSION_TTL",
    "NewSession",
    "validate_username",
    "create_user",
    "set_password",
    "log_in",
    "session_principal",
    "log_out",
    "DEMO_ACCOUNTS",
    "seed_demo_accounts",
    "print_demo_accounts",
    "VIEWS",
    "DISPATCHER_VIEWS",
    "views_for",
    "QueueItem",
    "QueuePage",
    "PAGE_SIZE",
    "urgency",
    "flags",
    "queue_page",
    "TicketView",
    "counts_weekdays_only",
    "ticket_view",
    "SYSTEM_ACTORS",
    "actor_label",
    "report_photo",
    "repeats_of",
    "stored_photo_of",
    "attachment_for",
    "category_names",
    "ACTIONS",
    "WORKER_ACTIONS",
    "DISPATCHER_ACTIONS",
    "allowed_actions",
    "ActionResult",
    "recategorise_choices",
    "perform",
    "sweep_overdue",
    "FEED",
    "NO_PUSH_CHANNELS",
    "RESIDENT_EVENTS",
    "process_feed",
    "ensure_feed",
    "notices",
    "unread_notices",
    "SATISFACTION",
    "FollowUpResult",
    "record_follow_up",
]
