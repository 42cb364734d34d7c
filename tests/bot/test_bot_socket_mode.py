"""`idops serve --socket-mode`: FakeSlack delivers commands, clicks, forms and App Home events as Socket
Mode envelopes over the websocket the bot opened. The HTTP-mode tests imported below run again here,
unchanged, against this module's `h` (the bot connected over Socket Mode)."""

from __future__ import annotations

import pytest
from support.bot import REQUESTER, harness

# collected again in this module, so they run over Socket Mode
from test_bot_approvals import (  # noqa: F401
    test_a_request_posts_an_approval_card_and_tells_the_requester,
    test_blank_reason_in_the_modal_is_refused_there,
    test_concurrent_approvals_run_the_action_exactly_once,
    test_deny_asks_why_in_a_modal_and_closes_the_card,
    test_disable_needs_a_reason_and_asks_for_it_in_a_modal,
    test_nobody_approves_their_own_request,
    test_privileged_targets_need_two_distinct_approvers,
    test_request_buttons_on_the_identity_card,
)
from test_bot_commands import (  # noqa: F401
    test_bad_commands_get_a_problem_and_a_usage_line_in_the_ack,
    test_help_lists_every_subcommand_in_the_ack,
    test_risky_lists_highest_scores_first_and_pages,
    test_whois_by_email_shows_the_identity_card,
)
from test_bot_server import (  # noqa: F401
    test_app_home_shows_counts_riskiest_and_what_waits_on_the_viewer,
    test_show_on_the_home_tab_opens_the_card_in_a_modal,
)

from standins.slack import SOCKET_MODE


@pytest.fixture
async def h(tmp_path):
    async with harness(tmp_path, socket_mode=True) as built:
        assert built.slack.socket_connected and built.events_url == SOCKET_MODE
        yield built


async def test_only_healthz_and_the_api_are_served_over_http(h):
    assert h.slack.socket_connected
    async with h.http.post(h.url + "/slack/events", data=b"{}") as response:
        assert response.status == 404
    async with h.http.get(h.url + "/healthz") as response:
        assert response.status == 200
    async with h.http.get(
        h.url + "/api/v1/approvals/apr_x", headers={"Authorization": "Bearer no"}
    ) as response:
        assert response.status == 401


async def test_the_bot_reconnects_when_slack_drops_the_socket(h):
    first = len(h.slack.calls_to("apps.connections.open"))
    await h.slack.drop_socket()
    await h.slack.wait_for(lambda: h.slack.socket_connected, timeout=20, what="the bot to reconnect")
    assert len(h.slack.calls_to("apps.connections.open")) == first + 1
    await h.command(REQUESTER, "help")
    assert "whois" in h.last_seen(REQUESTER)["text"]
