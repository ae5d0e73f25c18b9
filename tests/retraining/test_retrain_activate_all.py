"""Activating a model with several Rasa servers (the production cluster: n servers behind
an internal proxy). QC_RASA_URL is the proxy, which hands one PUT /model to one server;
QC_RASA_MODEL_URLS names every server, and an activation loads the model into each of
them or into none: when one fails, the servers already switched get the previous model
back and the registry keeps it active. The Rasa servers here are small HTTP servers that
record every request they get."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from bot.retraining import trainer
from bot.retraining.tables import model_registry
from bot.retraining.trainer import RetrainError, RetrainSettings

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
TOKEN = "s3cret token/&="  # quoted into the query exactly as for one server


@dataclass
class FakeRasa:
    """Answers PUT /model with `status` (or `status_for[model_file]`), after `delay_for`
    seconds for that file; records (method, path with query, model_file) of each request."""

    status: int = 204
    status_for: dict[str, int] = field(default_factory=dict)
    delay_for: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def loaded(self) -> list[str | None]:
        return [model for _, _, model in self.requests]

    def start(self) -> FakeRasa:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                model = json.loads(body or b"{}").get("model_file")
                fake.requests.append(("PUT", self.path, model))
                time.sleep(fake.delay_for.get(model, 0.0))
                status = fake.status_for.get(model, fake.status)
                reply = b"" if status == 204 else json.dumps({"message": "Server failed to load model"}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def fakes() -> Iterator[list[FakeRasa]]:
    """Three fake servers: two Rasa servers and the proxy (which must never be asked)."""
    started = [FakeRasa().start() for _ in range(3)]
    yield started
    for fake in started:
        fake.stop()


@pytest.fixture
def models(engine: Engine, tmp_path: Path) -> tuple[int, Path, int, Path]:
    """The serving model (active in the registry) and a candidate that may be activated."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    previous = deploy / "previous.tar.gz"
    previous.write_bytes(b"the serving model")
    previous_id = trainer.register_existing(engine, previous, "setup", at=NOW)
    candidate = tmp_path / "store" / "model-7" / "model-7.tar.gz"
    candidate.parent.mkdir(parents=True)
    candidate.write_bytes(b"the candidate")
    with engine.begin() as conn:
        conn.execute(insert(model_registry).values(id=7, created_at=NOW, created_by="root", status="candidate",
                                                   progress=100, path=str(candidate),
                                                   metrics={"candidate": {"split": {"accuracy": 0.9}}}))
    return previous_id, previous, 7, candidate


def _settings(tmp_path: Path, proxy: FakeRasa, servers: list[str]) -> RetrainSettings:
    return RetrainSettings(deploy_dir=tmp_path / "deploy", rasa_url=proxy.url, rasa_token=TOKEN,
                           rasa_model_urls=", ".join(servers) + ",")


def _put_path() -> str:
    return "/model?token=" + urllib.request.quote(TOKEN)


def test_every_rasa_server_gets_the_model_once_and_it_becomes_active(
        engine: Engine, tmp_path: Path, fakes: list[FakeRasa], models: tuple[int, Path, int, Path]) -> None:
    one, two, proxy = fakes
    previous_id, _, model_id, candidate = models
    done = trainer.activate(engine, _settings(tmp_path, proxy, [one.url, two.url]), model_id, "root")
    assert (done["id"], done["status"], done["activated_by"]) == (model_id, "active", "root")
    expected = [("PUT", _put_path(), str(candidate.resolve()))]
    assert one.requests == expected
    assert two.requests == expected
    assert proxy.requests == []  # the proxy would have reached only one of them
    assert trainer.active_model(engine)["id"] == model_id
    assert trainer.get_model(engine, previous_id)["status"] == "retired"
    assert (tmp_path / "deploy" / candidate.name).read_bytes() == b"the candidate"


def test_a_server_refusing_the_model_switches_the_others_back_and_keeps_the_previous_model(
        engine: Engine, tmp_path: Path, fakes: list[FakeRasa], models: tuple[int, Path, int, Path]) -> None:
    one, two, proxy = fakes
    previous_id, previous, model_id, candidate = models
    two.status = 500
    with pytest.raises(RetrainError) as failed:
        trainer.activate(engine, _settings(tmp_path, proxy, [one.url, two.url]), model_id, "root")
    message = str(failed.value)
    assert message.startswith(f"Rasa 服务器（{two.url}）拒绝加载模型（HTTP 500）")
    assert f"模型没有启用：已换上新模型的 Rasa 服务器（{one.url}）已换回原来的模型。" in message
    assert one.loaded == [str(candidate.resolve()), str(previous.resolve())]  # switched, then back
    assert {path for _, path, _ in one.requests} == {_put_path()}
    assert two.requests == [("PUT", _put_path(), str(candidate.resolve()))]  # it said no: still the old one
    assert proxy.requests == []
    assert trainer.active_model(engine)["id"] == previous_id
    assert trainer.get_model(engine, model_id)["status"] == "candidate"
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["previous.tar.gz"]  # a restart: old model


def test_a_server_that_does_not_answer_in_time_is_switched_back_too(
        engine: Engine, tmp_path: Path, fakes: list[FakeRasa], models: tuple[int, Path, int, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    one, two, proxy = fakes
    previous_id, previous, model_id, candidate = models
    monkeypatch.setattr(trainer, "LOAD_TIMEOUT", 0.5)
    two.delay_for[str(candidate.resolve())] = 2.0  # it got the model and may load it after we gave up
    with pytest.raises(RetrainError, match=f"Rasa 服务器（{two.url}）在 0.5 秒内没有加载完模型"):
        trainer.activate(engine, _settings(tmp_path, proxy, [one.url, two.url]), model_id, "root")
    assert one.loaded == [str(candidate.resolve()), str(previous.resolve())]
    assert two.loaded == [str(candidate.resolve()), str(previous.resolve())]
    assert trainer.active_model(engine)["id"] == previous_id


def test_an_unreachable_first_server_changes_nothing_anywhere(
        engine: Engine, tmp_path: Path, fakes: list[FakeRasa], models: tuple[int, Path, int, Path]) -> None:
    _, two, proxy = fakes
    previous_id, _, model_id, _ = models
    with pytest.raises(RetrainError) as failed:
        trainer.activate(engine, _settings(tmp_path, proxy, ["http://127.0.0.1:9", two.url]), model_id, "root")
    assert str(failed.value).startswith("连不上 Rasa 服务器（http://127.0.0.1:9）")
    assert str(failed.value).endswith("模型没有启用，Rasa 服务器仍在使用原来的模型。")
    assert two.requests == [] and proxy.requests == []
    assert trainer.active_model(engine)["id"] == previous_id


def test_a_server_that_cannot_be_switched_back_is_named(
        engine: Engine, tmp_path: Path, fakes: list[FakeRasa], models: tuple[int, Path, int, Path]) -> None:
    one, two, proxy = fakes
    previous_id, previous, model_id, candidate = models
    one.status_for[str(previous.resolve())] = 500
    two.status = 500
    with pytest.raises(RetrainError) as failed:
        trainer.activate(engine, _settings(tmp_path, proxy, [one.url, two.url]), model_id, "root")
    assert f"没能换回原来的模型、仍在使用新模型，请检查后重试或重启它们：{one.url}" in str(failed.value)
    assert one.loaded == [str(candidate.resolve()), str(previous.resolve())]
    assert trainer.active_model(engine)["id"] == previous_id


def test_without_model_urls_the_one_rasa_url_is_used_as_before(
        engine: Engine, tmp_path: Path, fakes: list[FakeRasa], models: tuple[int, Path, int, Path]) -> None:
    one, _, _ = fakes
    _, _, model_id, candidate = models
    settings = RetrainSettings(deploy_dir=tmp_path / "deploy", rasa_url=one.url + "/", rasa_token=TOKEN)
    trainer.activate(engine, settings, model_id, "root")
    assert one.requests == [("PUT", _put_path(), str(candidate.resolve()))]
    assert trainer.active_model(engine)["id"] == model_id


@pytest.mark.parametrize("model_urls,expected", [
    ("", ["http://proxy:8081"]),
    (" , ,", ["http://proxy:8081"]),
    ("http://a:5005", ["http://a:5005"]),
    (" http://a:5005 , http://b:5005/,", ["http://a:5005", "http://b:5005"]),
    ("http://a:5005,,http://b:5005, http://a:5005/", ["http://a:5005", "http://b:5005"]),
])
def test_model_targets(model_urls: str, expected: list[str]) -> None:
    assert RetrainSettings(rasa_url="http://proxy:8081/", rasa_model_urls=model_urls).model_targets() == expected


def test_model_urls_come_from_the_environment_and_reach_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_RASA_URL", "http://10.0.0.10:8081")
    monkeypatch.setenv("QC_RASA_MODEL_URLS", "http://10.0.0.21:5005, http://10.0.0.22:5005")
    settings = RetrainSettings.from_env()
    assert settings.model_targets() == ["http://10.0.0.21:5005", "http://10.0.0.22:5005"]
    assert RetrainSettings.from_json(settings.to_json()) == settings
    monkeypatch.delenv("QC_RASA_MODEL_URLS")
    assert RetrainSettings.from_env().model_targets() == ["http://10.0.0.10:8081"]
