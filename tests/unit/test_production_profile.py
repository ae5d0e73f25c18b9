"""The production profile's generated Rasa endpoints file (bot/ops/production.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.ops.production import ProfileError, endpoints_yaml, rasa_env

ENV = {
    "QC_PROFILE": "production",
    "QC_DATABASE_URL": "postgresql://qc:tickets-pw@db.internal:5433/qingcheng",
    "QC_TRACKER_DB_URL": "postgresql://qc:tr%40cker@db.internal:5433/qingcheng_tracker",
    "QC_TRACKER_DB_SCHEMA": "rasa",
    "QC_REDIS_URL": "redis://:redis-pw@cache.internal:6380/2",
    "QC_LOCK_PREFIX": "qingcheng",
    "QC_AMQP_URL": "amqp://mq-user:mq-pw@mq.internal:5673/",
}


def test_embedded_default_is_the_action_endpoint_only():
    text = endpoints_yaml("http://127.0.0.1:5055/webhook", {})
    assert yaml.safe_load(text) == {"action_endpoint": {"url": "http://127.0.0.1:5055/webhook",
                                                      "enable_selective_domain": True}}
    assert rasa_env({}) == {}


def test_production_moves_every_store_and_keeps_passwords_out_of_the_file():
    text = endpoints_yaml("http://10.0.0.10:8081/webhook", ENV)
    for secret in ("tickets-pw", "tr@cker", "tr%40cker", "redis-pw", "mq-pw"):
        assert secret not in text
    doc = yaml.safe_load(text)  # plain YAML: ${VAR} stays a string until Rasa reads it
    assert doc == {
        "action_endpoint": {"url": "http://10.0.0.10:8081/webhook", "enable_selective_domain": True},
        "tracker_store": {"type": "bot.rasa_ext.trackerstore.ResilientSQLTrackerStore", "dialect": "postgresql",
                          "url": "db.internal", "port": 5433, "db": "qingcheng_tracker", "username": "qc",
                          "password": "${QC_TRACKER_DB_PASSWORD}"},
        "lock_store": {"type": "bot.rasa_ext.lockstore.AtomicRedisLockStore", "url": "cache.internal", "port": 6380, "db": 2,
                       "password": "${QC_REDIS_PASSWORD}", "key_prefix": "qingcheng"},
        "event_broker": {"type": "bot.rasa_ext.eventbroker.BoundedPikaEventBroker", "url": "mq.internal", "port": 5673,
                         "username": "mq-user", "password": "${QC_AMQP_PASSWORD}", "queues": ["qc_rasa_events"],
                         "exchange_name": "qc_rasa_events.exchange",
                         "max_length": 100000, "message_ttl_ms": 604800000, "dead_letter_exchange": "qc.dead",
                         "should_keep_unpublished_messages": True, "raise_on_failure": False},
    }
    assert rasa_env(ENV) == {"QC_TRACKER_DB_PASSWORD": "tr@cker", "QC_REDIS_PASSWORD": "redis-pw",
                             "QC_AMQP_PASSWORD": "mq-pw", "POSTGRESQL_SCHEMA": "rasa"}


def test_rasa_reads_the_file_with_the_passwords_from_the_environment(tmp_path, monkeypatch):
    from rasa.core.utils import read_endpoints_from_path

    path = tmp_path / "endpoints.yml"
    path.write_text(endpoints_yaml("http://127.0.0.1:5055/webhook", ENV), encoding="utf-8")
    for k, v in rasa_env(ENV).items():
        monkeypatch.setenv(k, v)
    endpoints = read_endpoints_from_path(str(path))
    assert endpoints.tracker_store.kwargs["password"] == "tr@cker"
    assert endpoints.lock_store.kwargs["password"] == "redis-pw"
    assert endpoints.event_broker.kwargs["password"] == "mq-pw"


def test_the_action_servers_secret_is_a_reference_that_rasa_sends_as_a_header(tmp_path, monkeypatch):
    from rasa.core.utils import read_endpoints_from_path

    text = endpoints_yaml("http://127.0.0.1:5055/webhook", {**ENV, "QC_ACTIONS_TOKEN": "s3cret-value"})
    assert "s3cret-value" not in text and "Authorization: Bearer ${QC_ACTIONS_TOKEN}" in text
    path = tmp_path / "endpoints.yml"
    path.write_text(text, encoding="utf-8")
    for k, v in rasa_env(ENV).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("QC_ACTIONS_TOKEN", "s3cret-value")
    assert read_endpoints_from_path(str(path)).action.headers == {"Authorization": "Bearer s3cret-value"}
    assert "headers" not in endpoints_yaml("http://127.0.0.1:5055/webhook", {})  # no secret: no header


def test_names_from_the_environment_reach_rasa_as_the_same_strings(tmp_path, monkeypatch):
    """Hosts and names are written quoted: YAML words (yes, null, 0), numbers, quotes, colons
    and backslashes come back as the same strings through Rasa's own reader."""
    from rasa.core.utils import read_endpoints_from_path

    env = {**ENV, "QC_TRACKER_DB_URL": "postgresql://we%22ird%5Cuser%3A:pw@[::1]/trk%20db",
           "QC_AMQP_URL": "amqp://123:pw@10.0.0.1/", "QC_RASA_EVENTS_QUEUE": "yes",
           "QC_RASA_EXCHANGE": "null", "QC_DEAD_LETTER_EXCHANGE": "dl: #x", "QC_LOCK_PREFIX": "0"}
    path = tmp_path / "endpoints.yml"
    path.write_text(endpoints_yaml("http://127.0.0.1:5055/webhook", env), encoding="utf-8")
    for k, v in rasa_env(env).items():
        monkeypatch.setenv(k, v)
    endpoints = read_endpoints_from_path(str(path))
    tracker, broker = endpoints.tracker_store.kwargs, endpoints.event_broker.kwargs
    assert (endpoints.tracker_store.url, tracker["db"], tracker["username"]) == ("::1", "trk db", 'we"ird\\user:')
    assert endpoints.lock_store.kwargs["key_prefix"] == "0"
    assert (broker["username"], broker["queues"], broker["exchange_name"], broker["dead_letter_exchange"]) == (
        "123", ["yes"], "null", "dl: #x")


@pytest.mark.parametrize("name,value,message", [
    ("QC_TRACKER_DB_URL", "", "needs QC_TRACKER_DB_URL"),
    ("QC_REDIS_URL", "http://cache", "QC_REDIS_URL must be a redis URL"),
    ("QC_DATABASE_URL", "sqlite:///x.db", "QC_DATABASE_URL must be a postgresql URL"),
    ("QC_LOCK_PREFIX", "qc-1", "alphanumeric"),
])
def test_a_missing_or_wrong_setting_is_refused_by_name(name, value, message):
    with pytest.raises(ProfileError, match=message):
        endpoints_yaml("http://x/webhook", {**ENV, name: value})


def test_shipped_nginx_config_is_what_the_generator_writes():
    """deploy/nginx/qingcheng.conf is the generator's output for docs/production.md's example hosts
    (regenerate it with the command in docs/production.md when bot/ops/cluster.py changes)."""
    from bot.ops.cluster import nginx_conf
    from bot.paths import REPO_ROOT

    expected = nginx_conf("0.0.0.0:80", "10.0.0.10:8081", ["10.0.0.21:5005", "10.0.0.22:5005"],
                          ["10.0.0.21:5055", "10.0.0.22:5055"], ["10.0.0.30:8080"], prefix=None, user="www-data")
    assert (REPO_ROOT / "deploy" / "nginx" / "qingcheng.conf").read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("change, message", [
    ({"proxy_listen": "0.0.0.0:80; include /etc/passwd"}, "host:port"),
    ({"internal_listen": "10.0.0.10:70000"}, "host:port"),
    ({"internal_listen": "10.0.0.10"}, "host:port"),
    ({"rasa": ["10.0.0.21:5005\n        server evil:1"]}, "host:port"),
    ({"actions": []}, "at least one"),
    ({"web": "10.0.0.30:8080"}, "at least one"),
    ({"prefix": Path("/tmp/qc; user root")}, "absolute path"),
    ({"prefix": Path("relative/dir")}, "absolute path"),
    ({"user": "www-data;"}, "user name"),
])
def test_nginx_config_refuses_a_value_that_is_not_a_plain_address_path_or_name(change, message):
    """The template is rendered with autoescape off: each value is checked instead."""
    from bot.ops.cluster import nginx_conf

    args = {"proxy_listen": "0.0.0.0:80", "internal_listen": "10.0.0.10:8081", "rasa": ["10.0.0.21:5005"],
            "actions": ["10.0.0.21:5055"], "web": ["10.0.0.30:8080"], "prefix": None, "user": "www-data"}
    with pytest.raises(ValueError, match=message):
        nginx_conf(**{**args, **change})


def test_nginx_config_for_a_private_prefix_and_ipv6_hosts():
    from bot.ops.cluster import nginx_conf

    conf = nginx_conf("[::1]:8000", "127.0.0.1:8001", ["[::1]:5005", "rasa-2.internal:5005"], ["127.0.0.1:5055"],
                      ["127.0.0.1:8080"], prefix=Path("/var/lib/qc/cluster-1"), user=None)
    assert "user " not in conf
    assert conf.count("        server [::1]:5005 max_fails=1 fail_timeout=5s;\n"
                      "        server rasa-2.internal:5005 max_fails=1 fail_timeout=5s;\n") == 2
    assert "pid /var/lib/qc/cluster-1/nginx.pid;\nerror_log /var/lib/qc/cluster-1/nginx-error.log warn;\n\nevents {" in conf
    assert "    scgi_temp_path /var/lib/qc/cluster-1/tmp/scgi;\n    client_max_body_size 8m;\n" in conf
    assert "        listen [::1]:8000;\n" in conf


def test_systemd_units_run_commands_that_exist():
    import re

    from bot.cli.main import main
    from bot.paths import REPO_ROOT

    units = sorted((REPO_ROOT / "deploy" / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["qingcheng-actions@.service", "qingcheng-rasa@.service", "qingcheng-web.service"]
    commands = {m for u in units for m in re.findall(r"python -m bot ([a-z-]+)", u.read_text(encoding="utf-8"))}
    assert commands == {"run-rasa", "prepare-store"}
    for command in commands:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0


def test_the_cluster_web_server_activates_models_on_every_rasa_server(tmp_path):
    """The console reaches Rasa's API through the internal proxy (one server per request);
    a retrained model must reach all of them: QC_RASA_MODEL_URLS lists each one directly."""
    from bot.ops.cluster import Cluster
    from bot.retraining.trainer import RetrainSettings

    cluster = Cluster(env=ENV, work_dir=tmp_path, instances=3, api_token="tok")
    env = cluster.process_env("web")
    assert env["QC_RASA_URL"] == f"http://127.0.0.1:{cluster.internal_port}"
    assert env["QC_RASA_TOKEN"] == "tok"
    assert env["QC_RASA_MODEL_URLS"].split(",") == cluster.rasa_urls
    assert len(set(cluster.rasa_urls)) == 3 and f":{cluster.internal_port}" not in env["QC_RASA_MODEL_URLS"]
    settings = RetrainSettings(rasa_url=env["QC_RASA_URL"], rasa_model_urls=env["QC_RASA_MODEL_URLS"])
    assert settings.model_targets() == cluster.rasa_urls
