"""gunicorn.conf.py: the web process's settings, read as gunicorn reads them (a module)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for name in ("GUNICORN_THREADS", "GUNICORN_WORKER_CONNECTIONS", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_each_worker_holds_two_connections_per_thread_so_keep_alives_spread(monkeypatch):
    conf = settings(monkeypatch)
    assert (conf["worker_class"], conf["threads"], conf["worker_connections"]) == ("gthread", 5, 10)
    assert settings(monkeypatch, GUNICORN_THREADS="8")["worker_connections"] == 16


def test_the_connection_cap_can_be_set(monkeypatch):
    assert settings(monkeypatch, GUNICORN_WORKER_CONNECTIONS="50")["worker_connections"] == 50


def test_an_exiting_worker_stops_its_apps_embedded_threads(monkeypatch):
    stopped: list[str] = []

    class Thread:
        def __init__(self, name: str) -> None:
            self.name = name

        def stop(self) -> None:
            stopped.append(self.name)

    class App:
        extensions = {"middleware": {"listener": Thread("listener"), "worker": Thread("worker")}}

    class Worker:
        wsgi = App()

    settings(monkeypatch)["worker_exit"](None, Worker())
    assert stopped == ["listener", "worker"]
