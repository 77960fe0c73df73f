"""Vendor errors: the one taxonomy both clients' errors belong to, by what the caller should do.

Each vendor keeps its own classes (``constantcontact.errors``, ``salesforce.errors``) and its own
status table, but every class subclasses one kind below, so jobs and views catch the kind, never
a pair of vendor classes:

- ``RetryLater``: transient (5xx, timeouts, throttling, a locked row). The clients retry with
  backoff; when retries run out the job fails and RQ retries it later.
- ``NeedsReauth``: a person must connect the account again (refresh refused or impossible, a
  401 after a refresh, Constant Contact's 403 on the account). Jobs mark the connection
  ``needs_reauth``; retrying cannot help.
- ``RecordRejected``: a 4xx about one record. It becomes a visible, retryable sync error for
  that record; the batch goes on.
- ``QuotaPause``: the daily quota is spent; stop until ``resume_at`` (when the vendor says) and
  checkpoint, never sleep-retry.

Anything else is a plain ``VendorError`` (kind ``FAILED``): a bug or a configuration problem
(a bad query, a missing permission); the run fails and says why.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import ClassVar


class Kind(enum.Enum):
    """What the caller should do about a vendor error."""

    RETRY_LATER = "retry_later"
    NEEDS_REAUTH = "needs_reauth"
    RECORD_REJECTED = "record_rejected"
    QUOTA_PAUSE = "quota_pause"
    FAILED = "failed"


class VendorError(Exception):
    """Base of every error a vendor client raises."""

    kind: ClassVar[Kind] = Kind.FAILED
    #: True when the same call may succeed if made again later.
    retryable: bool = False
    #: True when a person has to act (reconnect); jobs surface these on the connection.
    needs_attention: bool = False


class RetryLater(VendorError):
    """Transient: 5xx, timeouts, broken connections, throttling. The same call may succeed later."""

    kind: ClassVar[Kind] = Kind.RETRY_LATER
    retryable = True


class NeedsReauth(VendorError):
    """The connection's tokens no longer work and refreshing cannot fix that: connect again."""

    kind: ClassVar[Kind] = Kind.NEEDS_REAUTH
    needs_attention = True


class RecordRejected(VendorError):
    """The vendor refused one record (a 4xx about it): a sync error for that record only."""

    kind: ClassVar[Kind] = Kind.RECORD_REJECTED


class QuotaPause(VendorError):
    """The daily quota is exhausted: stop until it resets (``resume_at`` when known)."""

    kind: ClassVar[Kind] = Kind.QUOTA_PAUSE
    resume_at: datetime | None = None


def kind_of(error: BaseException | type[BaseException]) -> Kind:
    """The kind of an error (or error class); anything not from a vendor client is ``FAILED``."""
    cls = error if isinstance(error, type) else type(error)
    return cls.kind if issubclass(cls, VendorError) else Kind.FAILED
