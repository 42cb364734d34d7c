"""Slash commands as Slack sends them again: the payload of a command the Slack stand-in's driver sent,
field for field (the same trigger_id and response_url), signed now and POSTed to any replica, with
Bolt's retry headers when it is a re-send."""

from __future__ import annotations

import urllib.parse

import aiohttp

from standins.slack import BotReply, FakeSlack


def command_form(slack: FakeSlack, reply: BotReply, user: str, text: str, channel: str) -> str:
    """The form the driver sent for the command `reply` answers (`user` typed `text` in `channel`, a
    channel the stand-in knows by id): what Slack sends again when it missed the ack."""
    return urllib.parse.urlencode(
        {
            "token": slack.verification_token,
            "team_id": slack.team_id,
            "team_domain": slack.team_domain,
            "channel_id": channel,
            "channel_name": slack.channels[channel] if slack.channels else channel,
            "user_id": user,
            "user_name": slack.users[user].name,
            "command": "/idops",
            "text": text,
            "api_app_id": slack.app_id,
            "is_enterprise_install": "false",
            "response_url": reply.response_url,
            "trigger_id": reply.trigger_id,
        }
    )


async def deliver(
    http: aiohttp.ClientSession, slack: FakeSlack, events_url: str, form: str, retry: int = 1
) -> int:
    """POST `form`, signed now, to `events_url` (a replica's /slack/events), as a re-send (`retry` > 0:
    `X-Slack-Retry-Num`) or a first delivery; the ack's HTTP status."""
    headers = slack.signed_headers(form, "application/x-www-form-urlencoded")
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    async with http.post(events_url, data=form.encode(), headers=headers) as response:
        await response.read()
        return response.status
