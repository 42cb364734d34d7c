"""The transition rules as a pure function: every kind of change, baseline, cooldown, snooze, staleness."""

from __future__ import annotations

from typing import Optional

import pytest

from bot.alerts.transitions import Change, Rules, State, transition
from connectors import RiskLevel

LOW, MEDIUM, HIGH, CRITICAL = RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL
RULES = Rules(frozenset({HIGH, CRITICAL}), cooldown_seconds=3600)
NOW = 10_000.0


def step(previous: Optional[State], level: Optional[RiskLevel], score: Optional[int] = None, **kw):  # type: ignore[no-untyped-def]
    return transition(
        previous,
        level,
        score,
        rules=kw.pop("rules", RULES),
        now=kw.pop("now", NOW),
        observed_at=kw.pop("observed_at", NOW),
        baseline=kw.pop("baseline", False),
    )


def seen(level: RiskLevel, score: int = 10, **kw) -> State:  # type: ignore[no-untyped-def]
    return State(level=level, score=score, observed_at=kw.pop("observed_at", NOW - 300), **kw)


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        (LOW, HIGH, Change.OPEN),
        (MEDIUM, CRITICAL, Change.OPEN),
        (LOW, MEDIUM, Change.NONE),
        (MEDIUM, LOW, Change.NONE),
        (HIGH, CRITICAL, Change.OPEN),  # at an alerting level without a card (e.g. baseline), rising
        (HIGH, HIGH, Change.NONE),
        (CRITICAL, HIGH, Change.NONE),
    ],
)
def test_without_an_open_alert(before: RiskLevel, after: RiskLevel, change: Change) -> None:
    result = step(seen(before), after, 50)
    assert result is not None and result.change is change


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        (HIGH, CRITICAL, Change.ESCALATE),
        (CRITICAL, HIGH, Change.UPDATE),
        (HIGH, HIGH, Change.NONE),
        (HIGH, MEDIUM, Change.RESOLVE),
        (CRITICAL, LOW, Change.RESOLVE),
    ],
)
def test_with_an_open_alert(before: RiskLevel, after: RiskLevel, change: Change) -> None:
    result = step(seen(before, alert_id="a1"), after, 50)
    assert result is not None and result.change is change
    if change is Change.RESOLVE:
        assert result.state.alert_id is None and result.state.resolved_at == NOW
    else:
        assert result.state.alert_id == "a1"


def test_first_sight_alerts_except_in_the_baseline_sweep() -> None:
    first = step(None, CRITICAL, 90)
    assert first is not None and first.change is Change.OPEN
    during_baseline = step(None, CRITICAL, 90, baseline=True)
    assert during_baseline is not None and during_baseline.change is Change.NONE and during_baseline.writes
    assert step(None, LOW, 5).change is Change.NONE  # type: ignore[union-attr]


def test_cooldown_after_resolve_holds_high_but_not_critical() -> None:
    resolved = seen(LOW, resolved_at=NOW - 600)
    assert step(resolved, HIGH, 60).change is Change.NONE  # type: ignore[union-attr]
    assert step(resolved, CRITICAL, 90).change is Change.OPEN  # type: ignore[union-attr]
    long_ago = seen(LOW, resolved_at=NOW - 3601)
    assert step(long_ago, HIGH, 60).change is Change.OPEN  # type: ignore[union-attr]
    # held back at high during the cooldown, then reaching critical: it alerts
    held = step(resolved, HIGH, 60)
    assert held is not None
    assert step(held.state, CRITICAL, 95, observed_at=NOW + 1).change is Change.OPEN  # type: ignore[union-attr]


def test_snooze_silences_new_alerts_and_escalations() -> None:
    snoozed = seen(LOW, snoozed_until=NOW + 60)
    assert step(snoozed, CRITICAL, 99).change is Change.NONE  # type: ignore[union-attr]
    open_snoozed = seen(HIGH, alert_id="a1", snoozed_until=NOW + 60)
    assert step(open_snoozed, CRITICAL, 99).change is Change.UPDATE  # type: ignore[union-attr]
    expired = seen(LOW, snoozed_until=NOW - 1)
    assert step(expired, HIGH, 60).change is Change.OPEN  # type: ignore[union-attr]


def test_unknown_risk_and_older_observations_are_not_recorded() -> None:
    assert step(seen(LOW), None) is None
    newer = seen(LOW, observed_at=NOW + 5)  # written by a webhook re-check after this page was asked for
    assert step(newer, CRITICAL, 99) is None


def test_unchanged_identities_cost_no_write() -> None:
    same = step(seen(MEDIUM, 40), MEDIUM, 40)
    assert same is not None and not same.writes
    moved = step(seen(MEDIUM, 40), MEDIUM, 44)
    assert moved is not None and moved.writes and moved.change is Change.NONE


def test_custom_levels() -> None:
    rules = Rules(frozenset({CRITICAL}), cooldown_seconds=0)
    assert step(seen(LOW), HIGH, 60, rules=rules).change is Change.NONE  # type: ignore[union-attr]
    assert step(seen(HIGH), CRITICAL, 80, rules=rules).change is Change.OPEN  # type: ignore[union-attr]
