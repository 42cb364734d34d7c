"""Bolt listeners, one module per kind (commands, actions, views, events), each with `register(app, bot)`.

A listener parses what Slack sent, acks, and hands the work to a service of `bot.services.Bot`. It
never imports `bot.app`, `bot.server` or another listener module.
"""
