"""issue 20 follow-up: while every Rasa server is down (a restart takes ~20 s) a REST client
got nginx's HTML 502 page. Through a real nginx with the cluster's configuration
(bot.ops.cluster.nginx_conf) and no live upstream, /webhooks/ answers the REST channel's own
error: HTTP 503, JSON, {"error": "unavailable", "message": MSG_BUSY}; other paths keep
nginx's own answer. The shipped deploy/nginx/qingcheng.conf is the same generator's output
(tests/unit/test_production_profile.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from bot.channels.common import MSG_BUSY
from bot.paths import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx_without_upstream(tmp_path):
    from bot.ops.cluster import find_nginx, nginx_conf

    try:
        find_nginx()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    port, dead = _free_port(), _free_port()  # nothing listens on `dead`
    (tmp_path / "tmp").mkdir()
    (tmp_path / "nginx.conf").write_text(nginx_conf(
        f"127.0.0.1:{port}", f"127.0.0.1:{_free_port()}", [f"127.0.0.1:{dead}"] * 1, [f"127.0.0.1:{dead}"],
        [f"127.0.0.1:{dead}"], prefix=tmp_path, user="root" if os.geteuid() == 0 else None), encoding="utf-8")
    proc = subprocess.Popen([find_nginx(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
                            cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "nginx-error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _post(url: str, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_rest_client_gets_the_busy_json_while_no_rasa_server_answers(nginx_without_upstream):
    base = nginx_without_upstream
    for _ in range(2):  # the first try marks the server failed; the second finds none alive
        status, headers, body = _post(f"{base}/webhooks/rest/webhook",
                                      json.dumps({"sender": "r-1", "message": "楼下有人遛狗不牵绳"}).encode())
        assert status == 503
        assert headers.get_content_type() == "application/json"
        assert headers.get_content_charset() == "utf-8"
        assert json.loads(body.decode("utf-8")) == {"error": "unavailable", "message": MSG_BUSY}
        assert headers["Retry-After"] == "20"


def test_other_paths_keep_nginx_answer(nginx_without_upstream):
    status, headers, _ = _post(f"{nginx_without_upstream}/console/login", b"{}")
    assert status == 502 and headers.get_content_type() == "text/html"
