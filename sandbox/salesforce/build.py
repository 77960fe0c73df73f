"""Wires the Salesforce sandbox's parts together (the one place that knows them all)."""

from __future__ import annotations

from flask import Flask

from sandbox.common import control_blueprint, install_faults
from sandbox.salesforce import (
    auth,
    bulk,
    control,
    events,
    listviews,
    oauth,
    outbound,
    pubsub_bus,
    rest,
    seed,
    store,
)
from sandbox.salesforce.org import SalesforceSandbox


def assemble(app: Flask, sandbox: SalesforceSandbox) -> None:
    sandbox.store = store.open_store(sandbox)
    sandbox.auth = auth.TokenRegistry(sandbox)
    sandbox.usage = rest.ApiUsage(sandbox)
    sandbox.cursors = rest.QueryCursors(sandbox)
    sandbox.events = events.EventHub(sandbox)
    sandbox.bulk = bulk.BulkJobs(sandbox)
    sandbox.listviews = listviews.ListViews(sandbox)
    sandbox.pubsub = pubsub_bus.PubSubBus(sandbox)
    sandbox.outbound = outbound.OutboundSender(sandbox)
    # One feed of committed changes: CDC events and Outbound Messages both listen to it.
    sandbox.store.subscribe(sandbox.events.on_changes)
    sandbox.store.subscribe(sandbox.outbound.on_changes)
    # Every rendered change event also goes on the Pub/Sub bus (served by pubsub.start_pubsub).
    sandbox.events.add_listener(sandbox.pubsub.on_envelopes)

    install_faults(app, sandbox.faults, rest.fault_response)
    # Size limit, bearer token, daily limit and call counting for every /services/data call;
    # Sforce-Limit-Info on every API response; Salesforce-shaped 404/405 bodies.
    rest.install_hooks(app)

    ctl = control_blueprint(sandbox.clock, sandbox.faults, sandbox.reset, name="sf_control")
    app.register_blueprint(ctl)
    for bp in (
        oauth.bp,
        rest.bp,
        listviews.bp,
        bulk.bp,
        events.bp,
        pubsub_bus.bp,
        outbound.bp,
        seed.bp,
        control.bp,
    ):
        app.register_blueprint(bp)
