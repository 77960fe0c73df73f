"""The Pub/Sub listener: Salesforce Change Data Capture events in, through the one intake.

A long-running process (`flask --app app listen`, the Procfile's `listener`) beside the web and
the workers. For every Salesforce connection that has setups whose `salesforce_changes` name
`pubsub`, one listener in the whole deployment (a Redis lease per connection) subscribes to the
Pub/Sub API's CDC channels of the objects those setups sync, decodes each event
(`middleware.salesforce.pubsub`), records the hints for each setup exactly as the webhook does
(`services.changes.record`: relevance, echoes, dedupe, the flush) and only then stores the
stream's replay id, so a crash, a restart or a Redis outage replays events rather than losing
them.

- `plan`: which connections, setups and channels; where each channel's stream stands.
- `lease`: one consumer per connection across processes.
- `stream`: one channel's Subscribe loop, flow control and failure handling.
- `run`: the supervisor, `serve` for the command.
"""
