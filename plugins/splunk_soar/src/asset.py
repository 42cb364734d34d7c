"""The asset: which identity platform this SOAR asset talks to, its credentials, and the idops bot."""

from soar_sdk.asset import AssetField, BaseAsset


class Asset(BaseAsset):
    """One configured connector; empty settings are left out, so each kind sees only what it accepts."""

    connector_kind: str = AssetField(
        description="Identity platform",
        value_list=["homebase", "sailpoint", "google_workspace", "entra", "okta"],
        default="homebase",
    )
    connector_name: str = AssetField(
        required=False,
        default="",
        description="This connector's name in idops.toml ([[connectors]] name), for approvals and containers",
    )
    base_url: str = AssetField(
        description="API base URL, e.g. https://api.hldgroup.org/v1 or https://TENANT.api.identitynow.com"
        " (Google Workspace: https://admin.googleapis.com; Entra ID: https://graph.microsoft.com;"
        " Okta: https://ORG.okta.com)"
    )
    api_key: str = AssetField(required=False, sensitive=True, description="HomeBase API key (hld_live_...)")
    client_id: str = AssetField(
        required=False,
        default="",
        description="SailPoint OAuth client id, Entra ID application (client) id,"
        " or the Okta service app's client id",
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
    api_token: str = AssetField(required=False, sensitive=True, description="Okta: API token (SSWS)")
    private_key: str = AssetField(
        required=False,
        sensitive=True,
        description="Okta service app (instead of api_token): the PEM RSA private key, base64-encoded",
    )
    key_id: str = AssetField(
        required=False, default="", description="Okta service app: the key's kid, if any"
    )
    scopes: str = AssetField(
        required=False,
        default="",
        description="Okta service app: scopes to ask for, space-separated (default: the six idops needs)",
    )
    password_action: str = AssetField(
        required=False,
        default="",
        description="Okta: expire_password (default: a new password at next sign-in) or reset_password"
        " (Okta emails a reset link)",
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
