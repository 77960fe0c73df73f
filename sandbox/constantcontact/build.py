"""Wires the Constant Contact sandbox's parts together (the one place that knows them all)."""

from __future__ import annotations

from flask import Flask

from sandbox.common import control_blueprint, install_faults
from sandbox.constantcontact import (
    activities,
    contacts,
    control,
    emails,
    errors,
    gate,
    lists,
    oauth,
    summary,
)
from sandbox.constantcontact.account import ConstantContactSandbox
from sandbox.constantcontact.store import Store


def assemble(app: Flask, sandbox: ConstantContactSandbox) -> None:
    sandbox.store = Store(sandbox.clock, sandbox.config.get("SNAPSHOT"))
    sandbox.auth = oauth.TokenRegistry(sandbox)
    sandbox.gate = gate.Gate(sandbox)
    sandbox.activities = activities.Activities(sandbox)
    sandbox.emails = emails.Emails(sandbox.store)

    @app.before_request
    def _let_time_pass() -> None:
        sandbox.activities.settle()

    gate.install_counter(app)
    install_faults(app, sandbox.faults, errors.fault_response)  # before auth, like a flaky edge
    gate.install(app)

    ctl = control_blueprint(sandbox.clock, sandbox.faults, sandbox.reset, name="cc_control")
    control.add_routes(ctl)
    app.register_blueprint(ctl)
    for bp in (oauth.bp, contacts.bp, lists.bp, activities.bp, emails.bp, summary.bp):
        app.register_blueprint(bp)
