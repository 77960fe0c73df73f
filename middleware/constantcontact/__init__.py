"""Constant Contact V3: the API client, OAuth with rotating refresh tokens, and shared rate limits.

Modules: ``client`` (the calls), ``errors`` (what to do when one fails), ``limiter`` (4/s and
10,000/day per application, across all workers), ``oauth`` (consent, tokens, refresh),
``wiring`` (builds them from settings).
"""
