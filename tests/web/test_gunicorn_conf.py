"""gunicorn.conf.py's access logging: gunicorn's own access line is built only when
GUNICORN_ACCESSLOG asks for it (the shop logs every request itself)."""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from gunicorn import glogging
from gunicorn.config import Config

ROOT = Path(__file__).resolve().parents[2]


def gunicorn_logger(monkeypatch, tmp_path, accesslog: str | None, logfile: str | None = None):
    """The logger gunicorn makes from gunicorn.conf.py in production (`logfile`: what
    --access-logfile gives on the command line)."""
    monkeypatch.setenv("SHOP_ENV", "production")
    monkeypatch.setenv("SHOP_BASE_URL", "https://shop.example.com")
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    if accesslog is None:
        monkeypatch.delenv("GUNICORN_ACCESSLOG", raising=False)
    else:
        monkeypatch.setenv("GUNICORN_ACCESSLOG", accesslog)
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    cfg = Config()
    for name in ("accesslog", "logconfig_dict", "logger_class", "loglevel"):
        if settings.get(name) is not None:
            cfg.set(name, settings[name])
    if logfile is not None:
        cfg.set("accesslog", logfile)
    # The logging configuration is gunicorn's to apply in its own process, not in this one.
    monkeypatch.setattr(glogging, "dictConfig", lambda config: None)
    return cfg.logger_class(cfg)


@pytest.mark.parametrize("accesslog, logfile, lines", [(None, None, 0), ("-", None, 1),
                                                       (None, "access.log", 1)])
def test_access_fields_are_built_only_for_an_access_log(monkeypatch, tmp_path, accesslog,
                                                        logfile, lines):
    built = []

    def atoms(self, resp, req, environ, request_time):
        built.append(environ)
        return {}

    monkeypatch.setattr(glogging.Logger, "atoms", atoms)
    logger = gunicorn_logger(monkeypatch, tmp_path, accesslog,
                             logfile and str(tmp_path / logfile))
    # With logconfig_dict set, gunicorn on its own counts the access log as enabled.
    assert logger.cfg.logconfig_dict
    logger.access(object(), object(), {"REQUEST_METHOD": "GET"}, timedelta(milliseconds=3))
    assert len(built) == lines


@pytest.mark.slow
@pytest.mark.parametrize("accesslog", ["file", "-"])
def test_gunicorn_accesslog_goes_where_it_says_as_json_in_production(tmp_path, accesslog):
    """GUNICORN_ACCESSLOG is gunicorn's own access log: a file path writes that file ("-":
    stdout), one JSON object a line like every production line."""
    from .test_metrics_workers import Gunicorn, migrated_sqlite

    target = str(tmp_path / "access.log") if accesslog == "file" else "-"
    server = Gunicorn(tmp_path, {"SHOP_ENV": "production", "SECRET_KEY": "s" * 32,
                                 "SHOP_BASE_URL": "https://shop.example.com",
                                 "WEB_CONCURRENCY": "1", "GUNICORN_ACCESSLOG": target,
                                 "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
                                 "DATABASE_URL": migrated_sqlite(tmp_path)})
    try:
        assert server.get("/healthz?access-log-probe")[0] == 200
    finally:
        server.stop()
    written = (tmp_path / "access.log").read_text() if accesslog == "file" else ""
    output = server.log.read_text()  # gunicorn's stdout and stderr
    access = [json.loads(line) for line in (written if accesslog == "file" else output)
              .splitlines() if '"gunicorn.access"' in line]
    assert access, (written, output)
    assert {line["logger"] for line in access} == {"gunicorn.access"}
    assert any("GET /healthz?access-log-probe HTTP/1.1" in line["message"] for line in access)
    if accesslog == "file":
        assert '"gunicorn.access"' not in output


@pytest.mark.parametrize("env,message", [
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY must be a whole number of at least 1, not '0'"),
    ({"GUNICORN_TIMEOUT": "abc"}, "GUNICORN_TIMEOUT must be a whole number of at least 1"),
    ({"GUNICORN_MAX_REQUESTS": "-5"}, "GUNICORN_MAX_REQUESTS must be a whole number of at least 0"),
    ({"GUNICORN_TIMEOUT": "20"},
     "DATABASE_RETRY_BUDGET (25 s) must be below GUNICORN_TIMEOUT (20 s)"),
    ({"GUNICORN_TIMEOUT": "60", "DATABASE_RETRY_BUDGET": "90"}, "must be below GUNICORN_TIMEOUT"),
    # In production gunicorn said only "Unable to configure logger 'gunicorn.error'"; elsewhere
    # it took any word as info.
    ({"GUNICORN_LOGLEVEL": "verbose"},
     "GUNICORN_LOGLEVEL must be one of debug, info, warning, error, critical, not 'verbose'"),
    ({"GUNICORN_LOGLEVEL": "verbose", "SHOP_ENV": "production", "SECRET_KEY": "k" * 32,
      "SHOP_BASE_URL": "https://shop.example.com"}, "GUNICORN_LOGLEVEL must be one of"),
    # The shop's own settings: one line from the master, not a traceback from every worker.
    ({"SHOP_RATELIMIT_API": "banana"}, "SHOP_RATELIMIT_API must be a rate limit such as"),
    ({"SHOP_TAX_RATE": "8"}, "SHOP_TAX_RATE must be a number from 0 to below 1"),
    # No driver named: SQLAlchemy looked for MySQLdb, and every command was "No such command".
    ({"DATABASE_URL": "mysql://shop@db/shop"}, "DATABASE_URL must name the driver"),
    ({"DATABASE_REPLICA_URL": "mariadb://shop@replica/shop"},
     "DATABASE_REPLICA_URL must name the driver"),
    ({"DATABASE_URL": "postgresql://shop@db/shop"}, "DATABASE_URL must be a MySQL"),
    ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL must start with redis://"),
    # What create_app refuses, checked in the master too: with several workers, each wrote
    # the line and gunicorn's master ended on a HaltServer traceback.
    ({"SHOP_ENV": "production"}, "SECRET_KEY must be set (not empty) when SHOP_ENV=production"),
    ({"SHOP_ENV": "production", "SECRET_KEY": "short"}, "SECRET_KEY must be at least 32"),
    ({"SHOP_ENV": "production", "SECRET_KEY": "k" * 32},
     "SHOP_BASE_URL must be set when SHOP_ENV=production"),
    ({"SHOP_BASE_URL": "ftp://shop.example.com"}, "SHOP_BASE_URL must be the shop's public"),
    ({"SHOP_CURRENCY": "usd"}, "SHOP_CURRENCY must be an ISO 4217 code in capitals"),
    ({"SHOP_ENV": "staging"}, "SHOP_ENV must be one of development, testing, production"),
])
def test_a_setting_gunicorn_cannot_use_stops_the_start_naming_it(monkeypatch, tmp_path, env,
                                                                  message):
    """WEB_CONCURRENCY=abc was a traceback; a retry budget past the worker timeout let gunicorn
    kill a worker mid-checkout (the proxy's bare 502) before the shop could answer its 503."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name in ("WEB_CONCURRENCY", "GUNICORN_TIMEOUT", "GUNICORN_MAX_REQUESTS",
                 "DATABASE_RETRY_BUDGET", "SHOP_ENV", "SECRET_KEY", "SHOP_BASE_URL",
                 "SHOP_CURRENCY", "GUNICORN_LOGLEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert message in str(stopped.value)


def test_the_default_settings_and_a_larger_timeout_start(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name in ("WEB_CONCURRENCY", "GUNICORN_TIMEOUT", "DATABASE_RETRY_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["timeout"] == 30
    monkeypatch.setenv("GUNICORN_TIMEOUT", "90")
    monkeypatch.setenv("DATABASE_RETRY_BUDGET", "80")
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (settings["timeout"], settings["workers"] >= 1) == (90, True)


def test_cors_origins_written_with_spaces_after_the_commas_are_each_allowed(monkeypatch):
    """"https://a.example, https://b.example" allowed only a: b's preflight got no
    Access-Control-Allow-Origin, and nothing said why."""
    monkeypatch.setenv("SHOP_CORS_ORIGINS", " https://a.example,  https://b.example ,,")
    settings = runpy.run_path(str(ROOT / "config.py"))
    assert settings["Config"].CORS_ORIGINS == ["https://a.example", "https://b.example"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "3"])
def test_workers_that_fail_to_boot_together_stop_gunicorn_without_a_traceback_of_its_own(
        tmp_path, workers):
    """A failure the master cannot check for (here: the app module does not load): gunicorn
    stops on "Worker failed to boot." with exit status 3. With several workers, its master
    (27.0.1) met the second worker's exit while stopping for the first, and ended on a
    HaltServer traceback of its own, exit status 1, under the workers' real reason."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHOP_", "SECRET_KEY", "DATABASE_", "REDIS_", "GUNICORN_",
                                "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"))}
    env.update({"WEB_CONCURRENCY": workers, "GUNICORN_BIND": "127.0.0.1:0",
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")})
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
         "tests.web.failing_boot_app:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 3, result.stderr
    assert "this app cannot be loaded" in result.stderr
    assert "HaltServer" not in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith("Reason: Worker failed to boot."), result.stderr
