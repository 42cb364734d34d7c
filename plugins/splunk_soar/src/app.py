"""The idops Splunk SOAR app: identity lookups and response actions over the idops connector core
(HomeBase, SailPoint), risky identities ingested on poll, and approvals asked in Slack through the bot."""

from collections.abc import AsyncIterator
from typing import Union

from soar_sdk.abstract import SOARClient
from soar_sdk.app import App
from soar_sdk.exceptions import ActionFailure
from soar_sdk.logging import getLogger
from soar_sdk.models.artifact import Artifact
from soar_sdk.models.container import Container
from soar_sdk.params import OnPollParams

from connectors import Connector

from .actions import (
    confirm_compromised,
    disable_account,
    dismiss_risk,
    force_password_reset,
    get_approval_status,
    get_identity,
    list_identities,
    lookup_identity,
    on_poll,
    request_slack_approval,
    revoke_sessions,
)
from .asset import Asset
from .common import with_connector

logger = getLogger()

app = App(
    name="idops",
    app_type="identity management",
    logo="logo.svg",
    logo_dark="logo_dark.svg",
    product_vendor="idops",
    product_name="idops identity response",
    publisher="idops",
    appid="5b0e6f4c-3f5e-4c1b-9d0a-6a3e2f1d7c42",
    asset_cls=Asset,
)


@app.test_connectivity()
async def test_connectivity(asset: Asset) -> None:
    """Reach the identity platform with the asset's credentials."""

    async def check(connector: Connector) -> None:
        # one page first: it raises the typed error (refused credentials = misconfigured asset)
        # where check() only reports a message
        pages = connector.iter_pages()
        try:
            await pages.__anext__()
        except StopAsyncIteration:
            pass
        finally:
            await pages.aclose()  # type: ignore[attr-defined]
        result = await connector.check()
        if not result.ok:
            raise ActionFailure(result.message)
        logger.info(result.message)

    await with_connector(asset, check)


@app.on_poll()
async def ingest_risky_identities(
    params: OnPollParams, soar: SOARClient, asset: Asset
) -> AsyncIterator[Union[Container, Artifact]]:
    """Ingest identities at high or critical risk: one container per identity and risk episode."""
    limit = params.container_count or None
    for item in await on_poll.ingest(asset, app.actions_manager.ingestion_state, limit):
        yield item


app.register_action(
    list_identities.list_identities, action_type="investigate", verbose="Filters are the provider's."
)
app.register_action(get_identity.get_identity, action_type="investigate")
app.register_action(lookup_identity.lookup_identity, action_type="investigate")
app.register_action(force_password_reset.force_password_reset, action_type="contain", read_only=False)
app.register_action(revoke_sessions.revoke_sessions, action_type="contain", read_only=False)
app.register_action(disable_account.disable_account, action_type="contain", read_only=False)
app.register_action(confirm_compromised.confirm_compromised, action_type="correct", read_only=False)
app.register_action(dismiss_risk.dismiss_risk, action_type="correct", read_only=False)
app.register_action(
    request_slack_approval.request_slack_approval,
    action_type="generic",
    read_only=False,
    verbose="The bot posts an approval card in Slack and runs the action once approved.",
)
app.register_action(get_approval_status.get_approval_status, action_type="investigate")


if __name__ == "__main__":
    app.cli()
