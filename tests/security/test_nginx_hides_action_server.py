"""Issue 13 item 1, nginx's part, from the outside: the nginx.conf bot/ops/cluster.py generates
(the same generator writes deploy/nginx/qingcheng.conf) never lets the public reach the
action server; only the internal listener does, and there the secret is still required.

A real nginx (private prefix) in front of our real action server; the Rasa and web
upstreams are closed ports, so anything not meant for the action server answers 502."""
from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
import requests

from bot.ops.cluster import find_nginx, free_port, nginx_conf
from bot.ops.serve import actions_command, stop_stack, wait_http
from bot.paths import REPO_ROOT

SECRET = "nginx-" + uuid.uuid4().hex


def _wait_answering(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Until anything answers over HTTP (here: the action server's 401 through nginx)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    try:
        nginx = find_nginx()
    except RuntimeError as exc:
        pytest.fail(str(exc))  # `make nginx-deps` installs it; a missing nginx is no pass
    tmp = tmp_path_factory.mktemp("nginx_actions")
    (tmp / "tmp").mkdir()
    public, internal, actions, dead = free_port(), free_port(), free_port(), free_port()
    (tmp / "nginx.conf").write_text(nginx_conf(
        f"127.0.0.1:{public}", f"127.0.0.1:{internal}", [f"127.0.0.1:{dead}"], [f"127.0.0.1:{actions}"],
        [f"127.0.0.1:{dead}"], prefix=tmp, user="root" if os.geteuid() == 0 else None), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QC_ACTIONS_TOKEN": SECRET,
           "QC_DATABASE_URL": f"sqlite:///{tmp / 'tickets.db'}"}
    logs = [open(tmp / "actions.log", "ab"), open(tmp / "nginx.log", "ab")]  # closed with the stack
    procs = [subprocess.Popen(actions_command(actions), cwd=REPO_ROOT, env=env, stdout=logs[0],
                              stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        assert wait_http(f"http://127.0.0.1:{actions}/health", 90, procs[0]), "action server did not start"
        procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                                      stdout=logs[1], stderr=subprocess.STDOUT,
                                      start_new_session=True))
        _wait_answering(f"http://127.0.0.1:{internal}/webhook", procs[1])
        yield f"http://127.0.0.1:{public}", f"http://127.0.0.1:{internal}"
    finally:
        stop_stack(procs)
        for log in logs:
            log.close()


@pytest.mark.parametrize("method,path", [("POST", "/webhook"), ("GET", "/actions"), ("GET", "/health"),
                                         ("POST", "/webhooks/webhook"), ("POST", "/webhooks/../webhook"),
                                         ("POST", "//webhook")])
def test_the_public_listener_never_reaches_the_action_server(proxied, method, path):
    public, _ = proxied
    r = requests.request(method, public + path, json={"next_action": "action_submit_complaint"},
                         headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
    # the closed Rasa/web upstreams: 502 (/webhooks/: the REST channel's busy 503), or nginx's
    # own 400/404 — never an action server answer
    assert r.status_code in (400, 404, 502, 503), (r.status_code, r.text[:200])
    assert "action" not in r.text.lower()


def test_the_internal_listener_reaches_it_and_the_secret_is_still_required(proxied):
    _, internal = proxied
    call = {"next_action": "action_no_such", "tracker": {}, "domain": {}, "version": "3.6.21"}
    r = requests.post(internal + "/webhook", json=call, timeout=10)
    assert (r.status_code, r.json()) == (401, {"error": "unauthorized"})
    r = requests.post(internal + "/webhook", json=call, headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
    assert r.status_code == 404 and r.json()["action_name"] == "action_no_such"  # rasa_sdk itself answered
