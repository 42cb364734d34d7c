"""The filter parser SailPoint's (and Okta's) simulator and the Entra simulator share, in each dialect."""

from __future__ import annotations

import pytest

from standins import entra_odata, sailpoint
from standins.entra_odata import Moment, Node
from standins.filters import FilterError
from standins.sailpoint import BoolOp, Comparison

GRAPH_FIELDS = {"mail": "eq in startswith", "id": "in", "at": "gt"}
SAILPOINT_FIELDS = {"email": frozenset({"eq", "in", "sw"}), "id": frozenset({"in"})}


def test_one_grammar_two_dialects() -> None:
    graph = entra_odata.parse_filter(
        "(mail eq 'a''b' or startswith(mail,'x')) and id in ('1','2')", GRAPH_FIELDS
    )
    assert graph == Node(
        "and",
        parts=(
            Node("or", parts=(Node("eq", "mail", ("a'b",)), Node("startswith", "mail", ("x",)))),
            Node("in", "id", ("1", "2")),
        ),
    )
    ours = sailpoint.parse_filter(r'(email eq "a\"b" or email sw "x") and id in ("1","2")', SAILPOINT_FIELDS)
    assert ours == BoolOp(
        "and",
        (
            BoolOp("or", (Comparison("email", "eq", ('a"b',)), Comparison("email", "sw", ("x",)))),
            Comparison("id", "in", ("1", "2")),
        ),
    )
    moment = entra_odata.parse_filter("at gt 2026-12-01T10:00:00Z", GRAPH_FIELDS)
    assert isinstance(moment.values[0], Moment) and moment.values[0].value.hour == 10


@pytest.mark.parametrize(
    ("dialect", "text", "message", "code"),
    [
        # Graph's `not`, functions and DateTimeOffset literals are no SailPoint syntax
        ("sailpoint", 'not email eq "x"', "filtering on 'not' is not supported", "BadRequest"),
        ("sailpoint", 'startswith(email,"x")', "filtering on 'startswith' is not supported", "BadRequest"),
        ("sailpoint", "email eq 'x'", 'unexpected character "\'"', "BadRequest"),
        ("graph", 'mail eq "x"', "syntax error at character '\"'", "BadRequest"),
        ("graph", "mail eq 'x", "unterminated string literal", "BadRequest"),
        ("graph", "at gt 2026-13-45T99:00Z", "bad DateTimeOffset", "BadRequest"),
        ("graph", "mail gt 'x'", "Unsupported query operator 'gt'", "Request_UnsupportedQuery"),
        ("graph", "mail in (" + ",".join(["'a'"] * 16) + ")", "15 at most", "Request_UnsupportedQuery"),
    ],
)
def test_each_dialect_refuses_in_its_own_words(dialect: str, text: str, message: str, code: str) -> None:
    with pytest.raises(FilterError) as refused:
        if dialect == "graph":
            entra_odata.parse_filter(text, GRAPH_FIELDS)
        else:
            sailpoint.parse_filter(text, SAILPOINT_FIELDS)
    assert message in str(refused.value) and refused.value.code == code


def test_sailpoint_takes_any_number_of_values_in_an_in() -> None:
    node = sailpoint.parse_filter("id in (" + ",".join(f'"{n}"' for n in range(40)) + ")", SAILPOINT_FIELDS)
    assert isinstance(node, Comparison) and len(node.values) == 40
