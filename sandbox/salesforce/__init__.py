"""The Salesforce sandbox: OAuth, REST (query, sObjects, collections), Bulk 2.0, change events."""

from sandbox.salesforce.app import create_app

__all__ = ["create_app"]
