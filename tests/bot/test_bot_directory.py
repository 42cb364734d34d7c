"""SlackDirectory against FakeSlack: user groups and email lookups, cached briefly, unknowns as empty."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.directory import SlackDirectory
from standins.slack import FakeSlack, SlackUser


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_groups_and_emails_come_from_slack_and_are_cached_for_the_ttl():
    slack = FakeSlack(
        users=[SlackUser(id="U0ANN", name="ann", email="Ann@Example.com"), SlackUser(id="U0BEN", name="ben")],
        usergroups={"S0LEADS": ["U0ANN", "U0BEN"]},
    )
    ticks = Ticks()
    async with slack.serve():
        directory = SlackDirectory(
            AsyncWebClient(token=slack.bot_token, base_url=slack.api_url), ttl=60, clock=ticks
        )
        assert await directory.group_members("S0LEADS") == frozenset({"U0ANN", "U0BEN"})
        assert await directory.user_id_for_email("ann@example.com") == "U0ANN"
        assert await directory.user_id_for_email("nobody@example.com") is None
        # a burst of policy checks costs one Slack call each, not one per check
        for _ in range(5):
            await directory.group_members("S0LEADS")
            await directory.user_id_for_email("ANN@example.com")
        assert len(slack.calls_to("usergroups.users.list")) == 1
        assert len(slack.calls_to("users.lookupByEmail")) == 2
        # a change in Slack shows once the entry is older than the TTL
        slack.usergroups["S0LEADS"] = ["U0BEN"]
        ticks.now = 59
        assert "U0ANN" in await directory.group_members("S0LEADS")
        ticks.now = 61
        assert await directory.group_members("S0LEADS") == frozenset({"U0BEN"})


async def test_an_unknown_group_has_no_members():
    slack = FakeSlack()
    async with slack.serve():
        directory = SlackDirectory(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url))
        assert await directory.group_members("S0NOSUCH") == frozenset()
