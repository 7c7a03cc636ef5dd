"""docs/organizations.md: its rule example decides as the page says, its PUT body is valid."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from policyd.api.schemas import OrganizationSchema
from policyd.domain import Outcome, Subject, UserType
from policyd.rules import Policy, load_texts
from tests.conftest import ROOT

PAGE = (ROOT / "docs" / "organizations.md").read_text(encoding="utf-8")


def test_the_documented_package_asks_a_guests_sponsors():
    """A guest of an unknown domain needs approval from `sponsors`, escalated to the owners."""
    [block] = re.findall(r"```yaml\n(.*?)```", PAGE, re.DOTALL)
    policy = Policy(load_texts({"merger.yaml": block}))
    raj = Subject("raj", email="raj@northwind.example", type=UserType.GUEST)
    try:
        decision = policy.decide("merger-collaboration", raj, now=datetime(2026, 1, 5, tzinfo=UTC))
    finally:
        policy.close()
    assert (decision.outcome, decision.rule) == (Outcome.REQUIRE_APPROVAL, "other-external-users")
    [stage] = decision.stages
    assert (stage.approvers, stage.escalate_to) == (("sponsors",), ("owners",))


def test_the_documented_put_body_is_what_the_api_takes():
    """The body of the page's PUT loads with the operation's schema."""
    body = re.search(r"PUT /v1/organizations/\S+\n(\{.*?\})\n", PAGE, re.DOTALL).group(1)
    loaded = OrganizationSchema().load(json.loads(body))
    assert (loaded["state"], loaded["internal_sponsors"]) == ("configured", ["olga"])
