"""The Constant Contact V3 sandbox: one account behind the real API's routes, shapes and quirks.

    from sandbox.constantcontact.app import create_app
    app = create_app({"RATE_PER_SECOND": 0})      # config keys: see account.DEFAULTS

Routes (all `/v3` routes need `Authorization: Bearer <token>`):
- OAuth2: `GET /oauth2/default/v1/authorize` (auto-approves; loopback redirect URIs),
  `POST /oauth2/default/v1/token` (authorization_code, refresh_token; rotating refresh tokens).
- `/v3/contacts` (GET with filters and cursors, POST), `/v3/contacts/{id}` (GET, PUT, DELETE),
  `/v3/contacts/sign_up_form`; `/v3/contact_lists[/{id}]`; `/v3/contact_custom_fields[/{id}]`;
  `/v3/activities/{contacts_json_import, add_list_memberships, remove_list_memberships,
  contact_delete, contact_exports}`, `/v3/activities[/{id}]`, `/v3/contact_exports/{id}`.
- Control, no token: `/_sandbox/clock|faults|reset` (shared), `/_sandbox/seed`,
  `/_sandbox/contacts?email=`, `/_sandbox/unsubscribe`, `/_sandbox/snapshot`, `/_sandbox/state`,
  `/_sandbox/tokens`, `/_sandbox/tokens/expire`, `/_sandbox/partner_webhook`.

Not imitated (400 with a clear message): segments, tags, SMS channels and SMS-only contacts,
file (CSV) imports, email campaigns and reports.
"""
