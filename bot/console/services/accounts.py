"""Accounts and sessions: users, passwords, log-in and out, the demo accounts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.console import auth
from bot.console.names import is_known_queue, queue_label
from bot.console.services.access import ConsoleError, Principal, SessionExpired
from bot.console.tables import ROLES
from bot.console.uow import ConsoleUnitOfWork
from bot.domain.model import (
    DISPATCH_CENTER,
)

SESSION_TTL = timedelta(hours=8)


# --- accounts and sessions ---------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie; the database keeps only its hash
    csrf_token: str
    principal: Principal
    expires_at: datetime


def validate_username(username: str) -> str:
    username = (username or "").strip()
    if not (2 <= len(username) <= 64) or any(c.isspace() for c in username):
        raise ConsoleError("用户名须为2–64个字符，不含空格", 400)
    return username


def create_user(
    uow: ConsoleUnitOfWork,
    username: str,
    display_name: str,
    password: str,
    role: str,
    queues: Iterable[str],
    now: datetime,
) -> int:
    username = validate_username(username)
    if role not in ROLES:
        raise ConsoleError(f"角色必须是 {', '.join(ROLES)} 之一", 400)
    if len(password) < 10:
        raise ConsoleError("密码至少10个字符", 400)
    queues = [q.strip() for q in queues if q.strip()]
    for q in queues:
        if not is_known_queue(q):
            raise ConsoleError(f"未知的队列 {q}", 400)
    with uow:
        if uow.console.get_user_by_username(username) is not None:
            raise ConsoleError(f"用户名 {username} 已存在", 409)
        user_id = uow.console.add_user(username, display_name.strip() or username, auth.hash_password(password), role, queues, now)
        uow.commit()
    return user_id


def set_password(uow: ConsoleUnitOfWork, username: str, password: str) -> None:
    if len(password) < 10:
        raise ConsoleError("密码至少10个字符", 400)
    with uow:
        user = uow.console.get_user_by_username(username)
        if user is None:
            raise ConsoleError(f"没有用户 {username}", 404)
        uow.console.set_password(user.id, auth.hash_password(password))
        uow.console.delete_user_sessions(user.id)  # a new password logs every device out
        uow.commit()


def log_in(
    uow: ConsoleUnitOfWork, username: str, password: str, now: datetime, ttl: timedelta = SESSION_TTL
) -> NewSession | None:
    """A new session for the right password of an active user; None otherwise (same answer
    and about the same time for a wrong password, an unknown user and a disabled one)."""
    with uow:
        user = uow.console.get_user_by_username((username or "").strip())
        ok = auth.verify_password(user.password_hash if user else None, password or "")
        if user is None or not ok or not user.active:
            return None
        if auth.needs_rehash(user.password_hash):
            uow.console.set_password(user.id, auth.hash_password(password))
        token, csrf = auth.new_token(), auth.new_token()
        uow.console.delete_expired_sessions(now)
        uow.console.add_session(auth.token_hash(token), user.id, csrf, now, now + ttl)
        uow.commit()
        return NewSession(token, csrf, Principal.of(user), now + ttl)


def session_principal(uow: ConsoleUnitOfWork, token: str, now: datetime) -> tuple[Principal, str] | None:
    """(principal, csrf token) of a live session; raises SessionExpired for an expired one,
    None for an unknown token or a disabled user."""
    if not token:
        return None
    with uow:
        session = uow.console.get_session(auth.token_hash(token))
        if session is None:
            return None
        if session.expires_at <= now:
            uow.console.delete_session(session.id)
            uow.commit()
            raise SessionExpired()
        user = uow.console.get_user(session.user_id)
        if user is None or not user.active:
            return None
        return Principal.of(user), session.csrf_token


def log_out(uow: ConsoleUnitOfWork, token: str) -> None:
    with uow:
        uow.console.delete_session(auth.token_hash(token))
        uow.commit()


# --- demo accounts -----------------------------------------------------------

DEMO_ACCOUNTS = (
    # username, display name, role, queues
    ("grid_hld", "海拉尔东路街道网格员（演示）", "worker", ("street:150102001",)),
    ("dept_dog", "市公安局养犬管理（演示）", "department", ("police_dog",)),
    ("dispatcher", "12345派单中心（演示）", "dispatcher", (DISPATCH_CENTER,)),
    ("admin", "系统管理员（演示）", "admin", ()),
    ("agent", "12345坐席（演示）", "agent", ()),  # 转人工 (languages zh)
)


def seed_demo_accounts(uow: ConsoleUnitOfWork, now: datetime) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Create the missing demo accounts with random passwords; returns (username,
    password, role, queues) of those created now: print them once, they are stored hashed."""
    created = []
    with uow:
        for username, display, role, queues in DEMO_ACCOUNTS:
            if uow.console.get_user_by_username(username) is not None:
                continue
            password = auth.random_password()
            uow.console.add_user(username, display, auth.hash_password(password), role, queues, now)
            created.append((username, password, role, queues))
        uow.commit()
    return created


def print_demo_accounts(created: list[tuple[str, str, str, tuple[str, ...]]]) -> None:
    if not created:
        return
    print("Console demo accounts (passwords shown once; stored hashed — reset with "
          "`python -m bot console passwd USER`):", flush=True)
    for username, password, role, queues in created:
        where = ", ".join(queue_label(q) for q in queues) or ("转人工" if role == "agent" else "全部")
        print(f"  {username:<11} {password}   {role:<10} {where}", flush=True)
