"""The asset: which identity platform this SOAR asset talks to, its credentials, and the idops bot.

The class body is the table of the asset form, in its order, one row a field as the SDK reads them
(typed pydantic fields of `BaseAsset`, `to_json_schema`): after the platform, its name and address, the
connectors' settings, each optional text (`optional`; a `secret` one is sensitive, so SOAR keeps it
encrypted and hidden, and has no default), then the idops bot's. Empty settings are left out of what the
connector is built from (`build_from_form`), so each kind sees only what it accepts."""

from typing import Any

from soar_sdk.asset import AssetField, BaseAsset


def optional(description: str) -> Any:
    """An optional text field, empty unless filled in."""
    return AssetField(required=False, default="", description=description)


def secret(description: str) -> Any:
    """An optional sensitive text field (a password on the form, encrypted by SOAR)."""
    return AssetField(required=False, sensitive=True, description=description)


class Asset(BaseAsset):
    """One configured connector, and the idops bot that asks for approvals in Slack."""

    connector_kind: str = AssetField(
        description="Identity platform",
        value_list=["homebase", "sailpoint", "google_workspace", "entra", "okta"],
        default="homebase",
    )
    connector_name: str = optional(
        "This connector's name in idops.toml ([[connectors]] name), for approvals and containers"
    )
    base_url: str = AssetField(
        description="API base URL, e.g. https://api.hldgroup.org/v1 or https://TENANT.api.identitynow.com"
        " (Google Workspace: https://admin.googleapis.com; Entra ID: https://graph.microsoft.com;"
        " Okta: https://ORG.okta.com)"
    )
    api_key: str = secret("HomeBase API key (hld_live_...)")
    client_id: str = optional(
        "SailPoint OAuth client id, Entra ID application (client) id, or the Okta service app's client id"
    )
    client_secret: str = secret("SailPoint OAuth client secret, or Entra ID client secret")
    tenant_id: str = optional(
        "HomeBase MSP tenant (X-Tenant-Id), SailPoint tenant name, or Entra ID directory (tenant) id"
    )
    risk_attribute: str = optional(
        "SailPoint: identity attribute that holds a risk score, e.g. attributes.riskScore"
    )
    service_account_json: str = secret(
        "Google Workspace: the service account key file's JSON, base64-encoded"
    )
    admin_email: str = optional("Google Workspace: the admin the service account acts as")
    customer: str = optional("Google Workspace: my_customer (default) or a customer id")
    alert_center_url: str = optional(
        "Google Workspace: Alert Center API root (default https://alertcenter.googleapis.com)"
    )
    authority_url: str = optional("Entra ID: sign-in authority (default https://login.microsoftonline.com)")
    certificate_key: str = secret(
        "Entra ID: PEM private key of the app's certificate (instead of client_secret)"
    )
    certificate_thumbprint: str = optional("Entra ID: the certificate's SHA-1 thumbprint (40 hex)")
    api_token: str = secret("Okta: API token (SSWS)")
    private_key: str = secret(
        "Okta service app (instead of api_token): the PEM RSA private key, base64-encoded"
    )
    key_id: str = optional("Okta service app: the key's kid, if any")
    scopes: str = optional(
        "Okta service app: scopes to ask for, space-separated (default: the six idops needs)"
    )
    password_action: str = optional(
        "Okta: expire_password (default: a new password at next sign-in) or reset_password"
        " (Okta emails a reset link)"
    )
    idops_url: str = optional("idops bot URL for Slack approvals, e.g. https://idops.example.com")
    idops_api_token: str = secret("idops API token (IDOPS_API_TOKEN on the bot)")
    idops_requested_by: str = optional(
        "Slack user id approval requests are made in the name of, unless the action names one"
    )
