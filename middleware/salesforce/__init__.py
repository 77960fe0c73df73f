"""The Salesforce side: the API client, OAuth and token refresh, typed errors, change-event hints.

Import from the modules: `client.SalesforceClient`, `oauth.SalesforceOAuth` /
`oauth.RefreshingTokenSource` / `oauth.TokenStore`, `errors.*`, `events.parse_events` /
`events.ChangeHint`, `ids.to_18`.
"""
