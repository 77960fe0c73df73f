"""REST API: versions, query/queryAll, sObjects, describe, collections, limits. OWNER: REST helper."""

from flask import Blueprint, Flask, Response, jsonify

from sandbox.common import Fault

bp = Blueprint("sf_rest", __name__)


def fault_response(fault: Fault) -> Response:
    resp = jsonify([{"message": "injected fault", "errorCode": "SERVER_UNAVAILABLE"}])
    resp.status_code = fault.status or 500
    return resp


def install_hooks(app: Flask) -> None:
    pass
