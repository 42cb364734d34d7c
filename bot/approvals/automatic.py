"""Auto-containment as stored: one `auto_actions` row per identity's entry into critical risk.

A rule in `[[auto_containment]]` runs one action by itself when an identity *enters* critical. The row
is written with `INSERT ... ON CONFLICT DO NOTHING` on (connector, identity_id, entry), where `entry`
names the stored observation the identity left (so two sweeps, two replicas or a restart that see the
same entry write one row), in the same transaction as the approval request (APPROVED, actor the rule)
that runs the action: the approvals' execution then runs it exactly once.
"""

from __future__ import annotations


def actor(rule: str) -> str:
    """The audit actor of what a rule runs by itself: `auto-containment:<rule name>`."""
    return f"auto-containment:{rule}"
