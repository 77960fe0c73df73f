"""Web-side counters: the webhook counter keeps its children, and every call still counts."""

from __future__ import annotations

from prometheus_client import REGISTRY

from middleware import metrics


def _value(outcome: str, reason: str) -> float:
    labels = {"source": "metrics-test", "outcome": outcome, "reason": reason}
    return REGISTRY.get_sample_value("ctct_webhook_events_total", labels) or 0.0


def test_each_webhook_event_counts_under_its_own_labels() -> None:
    before_ok, before_bad = _value("accepted", ""), _value("rejected", "invalid")
    for _ in range(3):
        metrics.webhook_event("metrics-test", "accepted")
    metrics.webhook_event("metrics-test", "rejected", "invalid")
    assert _value("accepted", "") == before_ok + 3
    assert _value("rejected", "invalid") == before_bad + 1
