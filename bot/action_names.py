"""The one table of response actions as people name them: the word typed after `/idops` (also accepted
by the SOAR API next to the action's own value), whether a request for it needs a reason, and the
order its buttons take on an identity card. Every `connectors.Action` has a row (a test checks).

Which actions an identity card offers is the connector's `capabilities`; this table only names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from connectors import Action


@dataclass(frozen=True)
class ActionName:
    action: Action
    word: str  # `/idops <word> <who>`
    #: None, or what a request without a reason is told (the approvers need to know why)
    needs_reason: Optional[str] = None
    danger: bool = False  # a red button


#: in the order buttons appear on a card
TABLE = (
    ActionName(Action.REVOKE_SESSIONS, "revoke"),
    ActionName(Action.FORCE_PASSWORD_RESET, "reset"),
    ActionName(Action.DISABLE, "disable", "Disabling an account needs a reason.", danger=True),
    ActionName(Action.ENABLE, "enable", "Enabling an account needs a reason."),
    ActionName(Action.CONFIRM_COMPROMISED, "confirm"),
    ActionName(Action.DISMISS_RISK, "dismiss"),
)
BY_ACTION = {row.action: row for row in TABLE}
#: word -> action
WORDS = {row.word: row.action for row in TABLE}


def named_action(value: str) -> Optional[Action]:
    """The action a word (`reset`) or an action value (`force_password_reset`) names, any case; else None."""
    text = str(value).strip().lower()
    found = WORDS.get(text)
    if found is None:
        try:
            found = Action(text)
        except ValueError:
            return None
    return found


def needs_reason(action: Action) -> Optional[str]:
    """What a request for `action` without a reason is told, or None when a reason is optional."""
    return BY_ACTION[action].needs_reason
