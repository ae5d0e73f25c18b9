"""`python -m bot cluster`: the production layout on one machine, on loopback.

    nginx :proxy   /webhooks/, /socket.io/ → Rasa servers (round robin; Redis lock store)
                   everything else        → our web server (console, Open311, widget)
    nginx :internal (loopback only)
                   /webhook               → action servers (a dead one is skipped)
                   /                      → Rasa HTTP API (the console's notices to residents)
    rasa-1..n      tracker store PostgreSQL, lock store Redis, events to RabbitMQ
    actions-1..n   ticket store PostgreSQL
    web            console + notifier (outbox → Rasa, ticket events → RabbitMQ);
                   a retrained model is activated on rasa-1..n directly (QC_RASA_MODEL_URLS)

The same layout on separate hosts: deploy/ (systemd units, nginx template) and the
README's "Production" section. Tests and the benchmark start it with random ports
(Cluster(...).start()), the command line with fixed ones.
"""
from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.channels.common import MSG_BUSY
from bot.ops.production import ACTIONS_TOKEN_ENV
from bot.ops.serve import VENV_BIN, actions_command, stop_stack
from bot.ops.serve import wait_http as _wait_http
from bot.paths import REPO_ROOT, VAR_DIR

if TYPE_CHECKING:
    import jinja2

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in NGINX_CANDIDATES if os.access(p, os.X_OK)), None)
    if not found:
        raise RuntimeError("nginx not found: `make nginx-deps` installs Debian's package")
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ADDRESS = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _address(value: str) -> str:
    """host:port; the template is not escaped, so nothing else may reach it."""
    m = _ADDRESS.fullmatch(value)
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise ValueError(f"not a host:port address for nginx: {value!r}")
    return value


def _addresses(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str) or not values:
        raise ValueError(f"nginx upstream {what} needs at least one host:port")
    return [_address(v) for v in values]


def nginx_conf(proxy_listen: str, internal_listen: str, rasa: Sequence[str], actions: Sequence[str], web: Sequence[str],
               prefix: Path | None = None, user: str | None = None) -> str:
    """nginx.conf for the layout above (bot/ops/templates/nginx.conf.j2); addresses are
    host:port. `prefix` keeps pid, logs and temp files in one directory (a private nginx);
    None gives a system-wide config."""
    if prefix is not None and not _PATH.fullmatch(str(prefix)):
        raise ValueError(f"nginx prefix must be an absolute path of letters, digits and ._/-: {str(prefix)!r}")
    if user and not _USER.fullmatch(user):
        raise ValueError(f"not a system user name: {user!r}")
    # the REST channel's error format (bot/channels/rest.py: error(503, "unavailable", MSG_BUSY))
    busy_json = json.dumps({"error": "unavailable", "message": MSG_BUSY}, ensure_ascii=False, separators=(",", ":"))
    if any(c in busy_json for c in "'\\\n"):
        raise ValueError("the busy answer must fit inside nginx's single quotes")
    return _templates().get_template("nginx.conf.j2").render(
        proxy_listen=_address(proxy_listen), internal_listen=_address(internal_listen),
        rasa=_addresses(rasa, "rasa"), actions=_addresses(actions, "actions"), web=_addresses(web, "web"),
        prefix=None if prefix is None else str(prefix), user=user or None, busy_json=busy_json)


@functools.lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    import jinja2

    # autoescape off: nginx syntax, not HTML; the values are validated in nginx_conf instead
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                              autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


@dataclass
class Cluster:
    """Two (or n) Rasa servers and action servers, the web server and nginx, on loopback."""

    env: Mapping[str, str]  # the production profile's variables (QC_PROFILE=production, URLs)
    work_dir: Path
    instances: int = 2
    model: str | None = None
    api_token: str = field(default_factory=lambda: "cluster-" + uuid.uuid4().hex)
    # the action servers' shared secret (bot/ops/actions_server.py): env's QC_ACTIONS_TOKEN or a fresh one
    actions_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    proxy_port: int = 0
    internal_port: int = 0
    web_port: int = 0
    rasa_ports: list[int] = field(default_factory=list)
    action_ports: list[int] = field(default_factory=list)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        taken = set()

        def pick(port: int) -> int:
            while not port or port in taken:
                port = free_port()
            taken.add(port)
            return port

        self.proxy_port = pick(self.proxy_port)
        self.internal_port = pick(self.internal_port)
        self.web_port = pick(self.web_port)
        self.rasa_ports = [pick(p) for p in (self.rasa_ports or [0] * self.instances)]
        self.action_ports = [pick(p) for p in (self.action_ports or [0] * self.instances)]
        self.work_dir = Path(self.work_dir)

    # --- addresses -------------------------------------------------------------------
    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def rasa_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.rasa_ports]

    # --- processes ---------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        from bot.ops.production import is_production, rasa_env

        env = {**os.environ, **self.env, "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT)}
        env[ACTIONS_TOKEN_ENV] = env.get(ACTIONS_TOKEN_ENV) or self.actions_token
        if not is_production(env):
            raise RuntimeError("the cluster runs the production profile: set QC_PROFILE=production and its URLs")
        env.update(rasa_env(env))
        env.setdefault("SANIC_HOST", "127.0.0.1")  # rasa-sdk's action server listens on 0.0.0.0 otherwise
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.work_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def _command(self, name: str) -> list[str]:
        rasa = str(VENV_BIN / "rasa")
        kind, _, n = name.partition("-")
        if kind == "actions":
            return actions_command(self.action_ports[int(n) - 1])
        if kind == "rasa":
            return [rasa, "run", "-i", "127.0.0.1", "-p", str(self.rasa_ports[int(n) - 1]),
                    "--credentials", "credentials.yml", "--endpoints", str(self.work_dir / "endpoints.yml"),
                    "--model", self.model or "models", "--cors", "*", "--enable-api", "--auth-token", self.api_token]
        if kind == "web":
            return [sys.executable, "-m", "bot.web.app"]
        if kind == "nginx":
            return [find_nginx(), "-p", str(self.work_dir), "-c", str(self.work_dir / "nginx.conf"),
                    "-g", "daemon off;"]
        raise KeyError(name)

    def _health(self, name: str) -> str:
        kind, _, n = name.partition("-")
        if kind == "actions":
            return f"http://127.0.0.1:{self.action_ports[int(n) - 1]}/health"
        if kind == "rasa":
            return f"http://127.0.0.1:{self.rasa_ports[int(n) - 1]}/"
        if kind == "web":
            return f"http://127.0.0.1:{self.web_port}/health"
        return f"{self.proxy_url}/health"

    def process_env(self, name: str) -> dict[str, str]:
        """The environment one process starts with. The web server reaches Rasa's HTTP API
        through the internal proxy (one server per request), but activating a retrained
        model must reach every Rasa server: QC_RASA_MODEL_URLS lists them directly."""
        env = self._env()
        if name == "web":
            env.update({"QC_WEB_PORT": str(self.web_port), "QC_RASA_URL": f"http://127.0.0.1:{self.internal_port}",
                        "QC_RASA_MODEL_URLS": ",".join(self.rasa_urls), "QC_RASA_TOKEN": self.api_token,
                        "QC_TRUSTED_PROXIES": "127.0.0.1",  # nginx in front: limits count its X-Forwarded-For client
                        # the widget's Socket.IO goes where the page came from: nginx proxies /socket.io/
                        "QC_WIDGET_SOCKET_URL": env.get("QC_WIDGET_SOCKET_URL") or "same-origin"})
        if name.startswith("rasa"):
            env["QC_RASA_TOKEN"] = self.api_token  # read by bot.ops.rasa_run
            env["QC_TRUSTED_PROXIES"] = "127.0.0.1"  # the per-client message limit counts nginx's client
        return env

    def respawn(self, name: str) -> subprocess.Popen:
        """Start one process again without waiting (the supervisor's restart)."""
        return self._spawn(name, self._command(name), self.process_env(name))

    def start_process(self, name: str, timeout: float = 240) -> None:
        """(Re)start one process and wait until it answers."""
        proc = self._spawn(name, self._command(name), self.process_env(name))
        if not _wait_http(self._health(name), timeout, proc):
            raise RuntimeError(f"{name} did not start; see {self.work_dir / (name + '.log')}")

    def wait_actions_reachable(self, timeout: float = 30) -> None:
        """After action servers come back, nginx still treats them as failed for up to
        fail_timeout: wait until the internal proxy reaches one (a GET on /webhook is
        then the action server's 405, not the proxy's "all action servers down" 502)."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.internal_port}/webhook", timeout=3):
                    return  # an action server answered
            except urllib.error.HTTPError as exc:
                if exc.code not in (502, 503, 504):
                    return  # an action server answered (405 for a GET)
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"no action server reachable through the proxy after {timeout:.0f} s")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Fault injection: kill one process (and its children) without warning."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def start(self) -> Cluster:
        from bot.ops.production import ProductionSettings, endpoints_yaml
        from bot.services.setup import prepare_store
        from bot.storage.engine import make_engine

        env = self._env()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "tmp").mkdir(exist_ok=True)
        settings = ProductionSettings.from_env(env)
        engine = make_engine(settings.database_url)
        try:
            prepare_store(engine)  # migrations, queues, routing rules: once, before anyone writes
        finally:
            engine.dispose()
        (self.work_dir / "endpoints.yml").write_text(
            endpoints_yaml(f"http://127.0.0.1:{self.internal_port}/webhook", env), encoding="utf-8")
        (self.work_dir / "nginx.conf").write_text(nginx_conf(
            f"127.0.0.1:{self.proxy_port}", f"127.0.0.1:{self.internal_port}",
            [f"127.0.0.1:{p}" for p in self.rasa_ports], [f"127.0.0.1:{p}" for p in self.action_ports],
            [f"127.0.0.1:{self.web_port}"], prefix=self.work_dir, user="root" if os.geteuid() == 0 else None),
            encoding="utf-8")
        try:
            for i in range(1, self.instances + 1):
                self._spawn(f"actions-{i}", self._command(f"actions-{i}"), env)
            self.start_process("web", 90)
            self.start_process("nginx", 30)
            # One Rasa server first: it creates the tracker tables; then the others.
            for i in range(1, self.instances + 1):
                self.start_process(f"rasa-{i}")
            for i in range(1, self.instances + 1):
                name = f"actions-{i}"
                if not _wait_http(self._health(name), 120, self.procs[name]):
                    raise RuntimeError(f"{name} did not start; see {self.work_dir / (name + '.log')}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_stack(list(self.procs.values()))

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RasaHttpParser:
    """`parse(text)` through a Rasa server's /model/parse (bench.load.pick_residents takes it:
    residents are picked by the served model itself, without loading it here)."""

    def __init__(self, rasa_url: str, token: str) -> None:
        from urllib.parse import quote

        self.url = f"{rasa_url}/model/parse?token={quote(token)}"

    def parse(self, message: str) -> dict:
        import urllib.request

        req = urllib.request.Request(self.url, data=json.dumps({"text": message}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())


def ensure_databases(urls: Sequence[str]) -> None:
    """CREATE DATABASE for each PostgreSQL URL whose database is missing (first start)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    for url in urls:
        u = make_url(url)
        admin = create_engine(u.set(database="postgres"), future=True, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": u.database}).first() is None:
                    conn.exec_driver_sql(f'CREATE DATABASE "{u.database.replace(chr(34), "")}"')
        finally:
            admin.dispose()


def run_cluster(instances: int, proxy_port: int) -> int:
    from bot.ops.production import ProductionSettings

    env = dict(os.environ)
    settings = ProductionSettings.from_env(env)
    ensure_databases([settings.database_url, settings.tracker_url])
    work_dir = Path(os.environ.get("QC_CLUSTER_DIR") or VAR_DIR / "cluster")
    cluster = Cluster(env=env, work_dir=work_dir, instances=instances, proxy_port=proxy_port,
                      api_token=os.environ.get("QC_RASA_TOKEN") or "cluster-" + uuid.uuid4().hex)
    from bot.retraining.serving import prepare

    cluster.model = prepare(cluster.rasa_urls, cluster.api_token)  # the registry's active model
    print(f"starting {instances} Rasa servers, {instances} action servers, the web server and nginx…", flush=True)
    cluster.start()
    print(f"""
青城诉求 (production profile) is running behind nginx.
  Residents (REST):  curl -s {cluster.proxy_url}/webhooks/rest/webhook -H 'Content-Type: application/json' \\
                       -d '{{"sender": "resident-1", "message": "楼下有人遛狗不牵绳"}}'
  Work console:      {cluster.proxy_url}/console/   (accounts: python -m bot console seed | adduser)
  Rasa servers:      {', '.join(cluster.rasa_urls)}   (internal proxy :{cluster.internal_port})
  Config and logs:   {cluster.work_dir}/ (nginx.conf, endpoints.yml, *.log)
Press Ctrl-C to stop.""", flush=True)
    from bot.ops.supervisor import Supervisor

    # One dead process does not stop the others: it is logged and restarted (bot/ops/supervisor.py).
    return Supervisor(cluster.procs, cluster.respawn, cluster.stop).run()
