"""The asset: which identity platform this SOAR asset talks to, its credentials, and the idops bot."""

from soar_sdk.asset import AssetField, BaseAsset


class Asset(BaseAsset):
    """One configured connector; empty settings are left out, so each kind sees only what it accepts."""

    connector_kind: str = AssetField(
        description="Identity platform",
        value_list=["homebase", "sailpoint", "google_workspace", "entra"],
        default="homebase",
    )
    connector_name: str = AssetField(
        required=False,
        default="",
        description="This connector's name in idops.toml ([[connectors]] name), for approvals and containers",
    )
    base_url: str = AssetField(
        description="API base URL, e.g. https://api.hldgroup.org/v1 or https://TENANT.api.identitynow.com"
        " (Google Workspace: https://admin.googleapis.com; Entra ID: https://graph.microsoft.com)"
    )
    api_key: str = AssetField(required=False, sensitive=True, description="HomeBase API key (hld_live_...)")
    client_id: str = AssetField(
        required=False,
        default="",
        description="SailPoint OAuth client id, or Entra ID application (client) id",
    )
    client_secret: str = AssetField(
        required=False, sensitive=True, description="SailPoint OAuth client secret, or Entra ID client secret"
    )
    tenant_id: str = AssetField(
        required=False,
        default="",
        description="HomeBase MSP tenant (X-Tenant-Id), SailPoint tenant name,"
        " or Entra ID directory (tenant) id",
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
    authority_url: str = AssetField(
        required=False,
        default="",
        description="Entra ID: sign-in authority (default https://login.microsoftonline.com)",
    )
    certificate_key: str = AssetField(
        required=False,
        sensitive=True,
        description="Entra ID: PEM private key of the app's certificate (instead of client_secret)",
    )
    certificate_thumbprint: str = AssetField(
        required=False, default="", description="Entra ID: the certificate's SHA-1 thumbprint (40 hex)"
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
