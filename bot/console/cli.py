"""python -m bot console <command>: accounts and keys of the work console.

  seed                      create the missing demo accounts (one per role) and print
                            their random passwords once (stored argon2-hashed)
  adduser USER ROLE [QUEUE…] [--name 姓名]   a new account; prints its random password
  passwd USER               a new random password (ends the user's sessions)
  apikey NAME               a new Open311 API key; printed once, stored hashed
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone


def _uow():
    from bot.console.uow import ConsoleUnitOfWork
    from bot.storage.engine import init_db, make_engine

    engine = make_engine()
    init_db(engine)
    return ConsoleUnitOfWork(engine)


def main(argv: list[str] | None = None) -> int:
    from bot.console import auth
    from bot.console import services as svc
    from bot.console.tables import ROLES

    ap = argparse.ArgumentParser(prog="python -m bot console", description="work console accounts")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("seed", help="create the demo accounts (one per role)")
    add = sub.add_parser("adduser", help="create an account")
    add.add_argument("username")
    add.add_argument("role", choices=ROLES)
    add.add_argument("queues", nargs="*", help="police_dog, street:150102001, dispatch_center …")
    add.add_argument("--name", default="", help="display name")
    pw = sub.add_parser("passwd", help="set a new random password")
    pw.add_argument("username")
    key = sub.add_parser("apikey", help="create an Open311 API key")
    key.add_argument("name")
    key.add_argument("--scope", choices=("public", "personal"), default="public",
                     help="personal: this client may read descriptions unmasked (default public: masked)")
    args = ap.parse_args(argv)
    now = datetime.now(timezone.utc)
    try:
        if args.command == "seed":
            from bot.console.services import print_demo_accounts

            created = svc.seed_demo_accounts(_uow(), now)
            if created:
                print_demo_accounts(created)
            else:
                print("demo accounts exist already (reset one with: python -m bot console passwd USER)")
        elif args.command == "adduser":
            password = auth.random_password()
            svc.create_user(_uow(), args.username, args.name or args.username, password, args.role, args.queues, now)
            print(f"{args.username}  {password}")
        elif args.command == "passwd":
            password = auth.random_password()
            svc.set_password(_uow(), args.username, password)
            print(f"{args.username}  {password}")
        elif args.command == "apikey":
            from bot.console.admin import create_api_key

            print(create_api_key(_uow(), args.name, args.scope))
    except svc.ConsoleError as exc:
        print(exc.message)
        return 1
    return 0
