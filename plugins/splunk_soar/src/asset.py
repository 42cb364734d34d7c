"""The asset: which identity platform this SOAR asset talks to, its credentials, and the idops bot."""

from soar_sdk.asset import AssetField, BaseAsset


class Asset(BaseAsset):
    """One configured connector; empty settings are left out, so each kind sees only what it accepts."""

    connector_kind: str = AssetField(
        description="Identity platform",
        value_list=["homebase", "sailpoint", "google_workspace"],
        default="homebase",
    )
    connector_name: str = AssetField(
        required=False,
        default="",
        description="This connector's name in idops.toml ([[connectors]] name), for approvals and containers",
    )
    base_url: str = AssetField(
        description="API base URL, e.g. https://api.hldgroup.org/v1 or https://TENANT.api.identitynow.com"
        " (Google Workspace: https://admin.googleapis.com)"
    )
    api_key: str = AssetField(required=False, sensitive=True, description="HomeBase API key (hld_live_...)")
    client_id: str = AssetField(required=False, default="", description="SailPoint OAuth client id")
    client_secret: str = AssetField(
        required=False, sensitive=True, description="SailPoint OAuth client secret"
    )
    tenant_id: str = AssetField(
        required=False, default="", description="HomeBase MSP tenant (X-Tenant-Id) or SailPoint tenant name"
    )
    risk_attribute: str = AssetField(
        required=False,
        default="",
        description="SailPoint: identity attribute that holds a risk score, e.g. attributes.riskScore",
    )
    service_account_json: str = AssetField(
        required=False,
        sensitive=True,
        description="Google Workspace: the service account key file's JSON, base64-encoded",
    )
    admin_email: str = AssetField(
        required=False, default="", description="Google Workspace: the admin the service account acts as"
    )
    customer: str = AssetField(
        required=False, default="", description="Google Workspace: my_customer (default) or a customer id"
    )
    alert_center_url: str = AssetField(
        required=False,
        default="",
        description="Google Workspace: Alert Center API root (default https://alertcenter.googleapis.com)",
    )
    idops_url: str = AssetField(
        required=False,
        default="",
        description="idops bot URL for Slack approvals, e.g. https://idops.example.com",
    )
    idops_api_token: str = AssetField(
        required=False, sensitive=True, description="idops API token (IDOPS_API_TOKEN on the bot)"
    )
    idops_requested_by: str = AssetField(
        required=False,
        default="",
        description="Slack user id approval requests are made in the name of, unless the action names one",
    )
