"""Risk alerts: scheduled sweeps and webhooks detect risk changes; an outbox delivers cards to Slack.

detector (sweeps, transitions, outbox writes) -> store (SQLite) -> sender (Slack, retries, dedupe);
webhooks and listeners feed the detector and the outbox; scheduler runs it all inside `idops serve`.
"""
