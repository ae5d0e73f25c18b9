"""aiohttp application factory for our web server (chat widget, work console, Open311).

Each feature contributes a `setup_<feature>(app)` called below (its routes and its
cleanup_ctx); the middleware chain is set here, in one place; shared objects live under
typed AppKeys (see bot.web.keys).
"""
from __future__ import annotations

from aiohttp import web

from bot.console import middleware as console_mw
from bot.console.app import setup_console
from bot.web import open311
from bot.web.keys import SETTINGS, Settings
from bot.web.retention import setup_retention
from bot.web.widget import setup_widget


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def init_app(settings: Settings | None = None) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[SETTINGS] = settings or Settings.from_env()
    app.router.add_get("/health", health)
    # features register themselves here (one line each)
    setup_widget(app)  # chat widget: /widget/ (bot/web/widget.py)
    setup_console(app)  # work console: /console/ (bot/console/)
    open311.setup(app)  # Open311 GeoReport v2: /open311/v2/ (bot/web/open311.py)
    setup_retention(app)  # personal data deleted/anonymised when due (bot/services/retention.py); after the console's schema set-up
    # Outermost first; each passes on what is not its own. Open311 answers its errors in
    # JSON before the console's error pages (console and unknown paths) see them.
    app.middlewares.extend([
        console_mw.error_middleware,
        open311.error_middleware,
        console_mw.input_middleware,  # NUL / lone surrogates in a path or query: refused everywhere
        console_mw.headers_middleware,
        console_mw.session_middleware,
    ])
    return app


# After SIGTERM: how long requests in flight may take before their connections are closed
# (aiohttp's default, 60 s, outlives stop_stack's 15 s before SIGKILL). The notifier's
# delivery in flight has its own grace (bot/console/notifier.py), before this one.
SHUTDOWN_TIMEOUT_ENV = "QC_WEB_SHUTDOWN_TIMEOUT"


def main() -> None:  # python -m bot.web.app
    import os

    settings = Settings.from_env()
    web.run_app(init_app(settings), host=settings.host, port=settings.port,
                shutdown_timeout=float(os.environ.get(SHUTDOWN_TIMEOUT_ENV) or 5))


if __name__ == "__main__":
    main()
