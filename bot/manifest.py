"""`idops manifest --url https://HOST`: print the Slack app manifest (JSON) to create the idops app from.

The scopes are the ones the bot's Web API calls need (`METHOD_SCOPES`); the tests check every method
the bot calls against this table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, Optional
from urllib.parse import urlsplit

from .config import ConfigError, load_config

EVENTS_PATH = "/slack/events"

# Web API method -> bot scopes it needs (views.* and chat.getPermalink need none)
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "auth.test": (),
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "chat.getPermalink": (),
    "users.lookupByEmail": ("users:read", "users:read.email"),
    "users.info": ("users:read",),
    "usergroups.users.list": ("usergroups:read",),
    # the alert sender finds what it already posted by message metadata (public and private channels)
    "conversations.history": ("channels:history", "groups:history"),
    "conversations.replies": ("channels:history", "groups:history"),
    "views.open": (),
    "views.push": (),
    "views.update": (),
    "views.publish": (),
    # Socket Mode: called with the app-level token (connections:write), which no manifest declares
    "apps.connections.open": (),
}
# the slash command itself
COMMAND_SCOPES = ("commands",)


def bot_scopes() -> list[str]:
    scopes = set(COMMAND_SCOPES)
    for needed in METHOD_SCOPES.values():
        scopes.update(needed)
    return sorted(scopes)


def manifest(url: str, *, name: str = "idops", command: str = "/idops", socket_mode: bool = False) -> dict:
    """The manifest of an app whose events, interactivity and command all go to `url` + /slack/events."""
    request_url = url.rstrip("/") + EVENTS_PATH
    slash: dict[str, Any] = {
        "command": command,
        "description": "Look up risky identities and request response actions",
        "usage_hint": "help | whois <who> | risky [level] [tenant] | revoke|reset|disable <who> [reason]",
        # Slack then sends emails and mentions as <mailto:…|…> and <@U…>, which idops unwraps
        "should_escape": True,
    }
    settings: dict[str, Any] = {
        "event_subscriptions": {"bot_events": ["app_home_opened"]},
        "interactivity": {"is_enabled": True},
        "org_deploy_enabled": False,
        "socket_mode_enabled": socket_mode,
        "token_rotation_enabled": False,
    }
    if not socket_mode:
        slash["url"] = request_url
        settings["event_subscriptions"]["request_url"] = request_url
        settings["interactivity"]["request_url"] = request_url
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "Respond to risky identities: lookups, alerts and approval-gated actions.",
            "background_color": "#1d3557",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": False,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [slash],
        },
        "oauth_config": {"scopes": {"bot": bot_scopes()}},
        "settings": settings,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idops manifest", description="Print a Slack app manifest (JSON).")
    parser.add_argument("--url", help="public base URL of `idops serve`, e.g. https://idops.example.com")
    parser.add_argument("--socket-mode", action="store_true", help="for `idops serve --socket-mode` (no URL)")
    parser.add_argument("--config", help="take the slash command name from this config file")
    parser.add_argument("--name", default="idops", help="app and bot name (default idops)")
    return parser


def check_url(url: str) -> str:
    """The base URL, or ValueError saying what Slack would reject."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"--url must be an https:// URL with a host (Slack only calls HTTPS), got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"--url must not have a query or fragment, got {url!r}")
    return url.rstrip("/")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.socket_mode:
            url = ""
        elif not args.url:
            raise ValueError("--url is required (or --socket-mode)")
        else:
            url = check_url(args.url)
        command = load_config(args.config).slack.command if args.config else "/idops"
    except (ValueError, ConfigError) as exc:
        print(f"idops manifest: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest(url, name=args.name, command=command, socket_mode=args.socket_mode), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
