"""When a risk change alerts: a pure function of (stored state, new observation, rules, now)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Optional

from connectors import RiskLevel


class Change(str, enum.Enum):
    """What an observation does to an identity's alert."""

    NONE = "none"  # nothing to tell Slack (the state may still be written)
    OPEN = "open"  # a new alert card
    ESCALATE = "escalate"  # the open card goes up a level, with a fresh notification
    UPDATE = "update"  # the open card changes quietly (down a level, or up while snoozed)
    RESOLVE = "resolve"  # below the alerting levels: the card turns "resolved", buttons gone


@dataclass(frozen=True)
class State:
    """The stored view of one identity (times are epoch seconds)."""

    level: RiskLevel
    score: Optional[int]
    observed_at: float
    alert_id: Optional[str] = None
    resolved_at: Optional[float] = None
    snoozed_until: Optional[float] = None


@dataclass(frozen=True)
class Rules:
    levels: frozenset[RiskLevel]
    cooldown_seconds: float


@dataclass(frozen=True)
class Transition:
    change: Change
    state: State
    previous: Optional[State]

    @property
    def writes(self) -> bool:
        """Whether the stored row must change (an unchanged identity costs no write)."""
        if self.previous is None:
            return True
        return self.change is not Change.NONE or (self.state.level, self.state.score) != (
            self.previous.level,
            self.previous.score,
        )


def transition(
    previous: Optional[State],
    level: Optional[RiskLevel],
    score: Optional[int],
    *,
    rules: Rules,
    now: float,
    observed_at: float,
    baseline: bool,
) -> Optional[Transition]:
    """The change one observation makes, or None when it must not be recorded at all.

    None means: the provider knows no risk for the identity, or the stored row came from a newer
    observation (a webhook re-check that overtook this sweep page).
    """
    if level is None:
        return None
    if previous is not None and previous.observed_at > observed_at:
        return None
    base = previous or State(level=level, score=score, observed_at=observed_at)
    state = replace(base, level=level, score=score, observed_at=observed_at)
    alerting = level in rules.levels
    snoozed = previous is not None and previous.snoozed_until is not None and previous.snoozed_until > now

    if previous is not None and previous.alert_id is not None:
        if not alerting:
            return Transition(Change.RESOLVE, replace(state, alert_id=None, resolved_at=now), previous)
        if level.rank > previous.level.rank:
            return Transition(Change.UPDATE if snoozed else Change.ESCALATE, state, previous)
        if level.rank < previous.level.rank:
            return Transition(Change.UPDATE, state, previous)
        return Transition(Change.NONE, state, previous)

    if not alerting:
        return Transition(Change.NONE, state, previous)
    if previous is None:
        return Transition(Change.NONE if baseline else Change.OPEN, state, previous)
    if previous.level in rules.levels and level.rank <= previous.level.rank:
        # already at an alerting level without a card (baseline, cooldown or snooze): not news
        return Transition(Change.NONE, state, previous)
    if snoozed:
        return Transition(Change.NONE, state, previous)
    cooling = previous.resolved_at is not None and now - previous.resolved_at < rules.cooldown_seconds
    if cooling and level is not RiskLevel.CRITICAL:
        return Transition(Change.NONE, state, previous)
    return Transition(Change.OPEN, state, previous)
