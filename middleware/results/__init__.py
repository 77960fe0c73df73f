"""Campaign results: Constant Contact's sends, opens, clicks, bounces and opt-outs into Salesforce.

- :mod:`.reports` reads campaigns, activities and tracking reports from Constant Contact within
  a call budget, from a cursor per activity and report;
- :mod:`.campaigns` makes each activity's Salesforce Campaign (statuses, the email attached);
- :mod:`.recipients` finds recipients in Salesforce and writes Campaign Members and Tasks;
- :mod:`.run` runs it all for one setup (the clock, the admin API and the CLI start it).

The rules (what is read, what a recipient becomes) are pure: ``middleware.sync.results``.
"""
