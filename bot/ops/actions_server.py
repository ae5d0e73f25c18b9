"""`python -m bot.ops.actions_server --port N`: rasa_sdk's action server, on loopback by default,
refusing calls without the shared secret Rasa sends.

rasa_sdk 3.6 binds 0.0.0.0 (SANIC_HOST) and checks nothing, so anyone who reached it could
file tickets with a hand-written tracker. Here:
- it listens on QC_ACTIONS_HOST (default 127.0.0.1);
- with QC_ACTIONS_TOKEN set, every request but GET /health must carry
  `Authorization: Bearer <token>` (Rasa sends it: `headers:` of action_endpoint, written by
  bot.ops.production.endpoints_yaml as a ${QC_ACTIONS_TOKEN} reference); else 401, nothing runs;
- it refuses to start on a non-loopback address without a token.
The secret is read from the environment only, never from the command line (ps shows that).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

from bot.security.bearer import bearer_ok

HOST_ENV = "QC_ACTIONS_HOST"
TOKEN_ENV = "QC_ACTIONS_TOKEN"
HEADER = "Authorization"
DEFAULT_HOST = "127.0.0.1"

log = logging.getLogger("bot.ops.actions_server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(token: str | None, package: str = "actions"):
    from rasa_sdk.endpoint import create_app as sdk_app
    from sanic import response

    app = sdk_app(package, cors_origins=[])  # Rasa calls it server to server: no browser origin

    @app.on_request
    async def check_secret(request):  # noqa: ANN001, ANN202
        if not token or (request.method == "GET" and request.path == "/health"):
            return None
        if bearer_ok(request.headers.get(HEADER), token):
            return None
        log.warning("action server: %s %s without the shared secret refused", request.method, request.path)
        return response.json({"error": "unauthorized"}, status=401)

    return app


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, default=5055)
    parser.add_argument("--actions", default="actions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = (os.environ.get(HOST_ENV) or DEFAULT_HOST).strip()
    token = os.environ.get(TOKEN_ENV) or None
    if not token and not is_loopback(host):
        print(f"action server: {HOST_ENV}={host} is not loopback; set {TOKEN_ENV} (the secret Rasa sends)",
              file=sys.stderr)
        return 2
    from rasa_sdk import utils
    from rasa_sdk.plugin import plugin_manager

    app = create_app(token, args.actions)
    plugin_manager().hook.attach_sanic_app_extensions(app=app)
    log.info("action server on http://%s:%d (%s)", host, args.port,
             "shared secret required" if token else "no shared secret: loopback only")
    app.run(host, args.port, workers=utils.number_of_sanic_workers(), access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
