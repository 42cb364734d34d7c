"""`idops sim slack`: the demo workspace and its page on loopback, for a bot run separately."""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Sequence
from typing import Optional

from .. import print_env, run_until_stopped
from .page import PEOPLE, SlackUI, demo_workspace
from .records import SOCKET_MODE


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`idops sim slack`: the demo workspace and its page, for a bot run separately with `idops serve`.

    The bot token and signing secret come from SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or are
    made up for this run and printed (they are the stand-in's own, good for nothing else). With
    `--socket-mode` the page talks to a bot run with `idops serve --socket-mode` over its websocket,
    and SLACK_APP_TOKEN is read or made up the same way.
    """
    parser = argparse.ArgumentParser(prog="idops sim slack", description="Serve the local Slack stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port (default 3000)")
    parser.add_argument(
        "--bot-url",
        default="http://127.0.0.1:8080/slack/events",
        help="where the page sends commands and clicks (default: idops serve's default address)",
    )
    parser.add_argument(
        "--socket-mode",
        action="store_true",
        help="for a bot run with `idops serve --socket-mode`: commands and clicks go over its websocket",
    )
    args = parser.parse_args(argv)
    token = os.environ.get("SLACK_BOT_TOKEN") or ""
    secret = os.environ.get("SLACK_SIGNING_SECRET") or ""
    app_token = os.environ.get("SLACK_APP_TOKEN") or ""
    made_up = not (token and secret and (app_token or not args.socket_mode))
    if made_up:
        token, secret = "xoxb-sim-" + secrets.token_hex(8), secrets.token_hex(16)
        app_token = "xapp-sim-" + secrets.token_hex(8)
    slack = demo_workspace(
        bot_token=token,
        signing_secret=secret,
        app_token=app_token or "xapp-sim-unused",
        on_event=lambda line: print(line, flush=True),
    )
    bot_url = SOCKET_MODE if args.socket_mode else args.bot_url
    SlackUI(slack, bot_url, PEOPLE).attach()

    def announce(url: str) -> None:
        where = "the bot's Socket Mode connection" if args.socket_mode else args.bot_url
        variables = {"SLACK_API_URL": slack.api_url}
        if made_up:
            # printed on purpose: made up for this run so the bot can be started against it
            variables.update(SLACK_BOT_TOKEN=token, SLACK_SIGNING_SECRET=secret)
            if args.socket_mode:
                variables["SLACK_APP_TOKEN"] = app_token
        print_env(f"Slack stand-in: the page is at {url}/\nCommands and clicks go to {where}", variables)

    return run_until_stopped(
        slack.app,
        args.host,
        args.port,
        prog="idops sim slack",
        announce=announce,
        serve=lambda: slack.serve(args.host, args.port),
    )
