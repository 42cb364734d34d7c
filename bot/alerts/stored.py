"""What the sweeps stored, read back: the riskiest identities of a scope, and the App Home's counts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from connectors import RiskLevel

from ..identities import StoredRisk
from . import cards
from .base import AlertsBase
from .scope import Scope


class StoredViews(AlertsBase):
    def summary_scope_rows(self, scope: Scope, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """How many stored identities of `scope` are at alerting levels, and the riskiest `limit`."""
        where = "connector = ? AND level IN ({})".format(",".join("?" * len(self.rules.levels)))
        params: list[Any] = [scope.connector, *(level.value for level in self.rules.levels)]
        if scope.tenant_id is not None:
            where += " AND tenant_id = ?"
            params.append(scope.tenant_id)
        total = self.db.execute(f"SELECT count(*) FROM alert_identities WHERE {where}", params).fetchone()[0]  # noqa: S608 - placeholders only
        ranked = "CASE level WHEN 'critical' THEN 3 WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END"
        rows = list(
            self.db.query(
                f"SELECT * FROM alert_identities WHERE {where}"  # noqa: S608
                f" ORDER BY {ranked} DESC, score DESC NULLS LAST LIMIT ?",
                [*params, limit],
            )
        )
        return total, rows

    def stored_risk(self, connector_name: str, riskiest: int = 10) -> Optional[StoredRisk]:
        """The connector's identities per level as last stored, once every one of its sweep scopes has
        finished a sweep (None before: the caller scans the provider instead)."""
        scopes = self._scopes_of(connector_name)
        rows = {
            row["scope"]: row
            for row in self.db.query("SELECT * FROM alert_sweeps WHERE connector = ?", [connector_name])
        }
        if not all(scope.key in rows and rows[scope.key]["last_success_at"] for scope in scopes):
            return None
        where, params = "connector = ?", [connector_name]
        tenants = [scope.tenant_id for scope in scopes if scope.tenant_id is not None]
        if tenants:
            # webhook re-checks may have stored identities of tenants that are not swept
            where += " AND tenant_id IN ({})".format(",".join("?" * len(tenants)))
            params += tenants
        counts = dict.fromkeys(RiskLevel, 0)
        for level, count in self.db.execute(
            f"SELECT level, count(*) FROM alert_identities WHERE {where} GROUP BY level",  # noqa: S608 - placeholders only
            params,
        ):
            counts[RiskLevel(level)] = count
        top = self.db.query(
            f"SELECT * FROM alert_identities WHERE {where} AND level IN ('critical', 'high')"  # noqa: S608
            " ORDER BY score DESC NULLS LAST, identity_id LIMIT ?",
            [*params, riskiest],
        )
        swept = min(rows[scope.key]["last_success_at"] for scope in scopes)
        connector = self.connectors[connector_name]
        faults = [
            f"the risk sweep of {self.source(connector, scope.tenant_id)} is failing: {row['last_error']}"
            for scope in scopes
            if (row := rows[scope.key])["failing"]
        ]
        return StoredRisk(
            counts=counts,
            riskiest=[cards.stored_identity(row) for row in top],
            swept_at=datetime.fromtimestamp(swept, timezone.utc),
            faults=faults,
        )
