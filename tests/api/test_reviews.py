"""The access-review endpoints: reviewers list and decide items; auditors export campaigns."""

from __future__ import annotations

import csv
import io

import pytest

from policyd.api.context import components
from policyd.rules import load_bundle
from policyd.services.reviews import ReviewService
from tests.conftest import POLICIES
from tests.review_support import reviewed_package


@pytest.fixture
def campaign(app, client, admin, clock):
    """crm (reviewed by managers) published beside the examples; pat holds it, max is pat's
    manager; the quarterly campaign is open. Returns pat's item id."""
    files = {**load_bundle(POLICIES).files, "crm.yaml": reviewed_package()}
    published = client.post("/v1/policy-versions", json={"files": files}, headers=admin)
    assert published.status_code == 201
    for user, body in {"max": {}, "olivia": {}, "pat": {"manager_id": "max"}}.items():
        assert client.put(f"/v1/users/{user}", json=body, headers=admin).status_code == 200
    filed = client.post(
        "/v1/requests", json={"package": "crm", "subject": {"id": "pat"}}, headers=admin
    )
    assert filed.status_code == 201
    with components(app).database.session() as session:
        service = ReviewService(session, components(app).runtime)
        assert service.open_due(now=clock()) == 1
    items = client.get("/v1/reviews/items", headers=admin).json
    assert [item["subject_id"] for item in items] == ["pat"]
    return items[0]["id"]


def test_a_reviewer_lists_and_decides_their_items(client, token, campaign):
    """max sees pat's item, keeps it with a justification; it leaves his pending list."""
    manager = token("max")
    assert [i["id"] for i in client.get("/v1/reviews/items", headers=manager).json] == [campaign]
    body = {"decision": "keep", "justification": "works on CRM daily"}
    decided = client.post(f"/v1/reviews/items/{campaign}/decision", json=body, headers=manager)
    assert decided.status_code == 200
    assert (decided.json["decision"], decided.json["decided_by"]) == ("keep", "max")
    assert client.get("/v1/reviews/items", headers=manager).json == []
    later = client.get("/v1/reviews/items?state=decided", headers=manager).json
    assert [i["id"] for i in later] == [campaign]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "maybe", "justification": "x"}, "decision"),
        ({"decision": "keep"}, "justification"),
        ({"decision": "keep", "justification": "   "}, "justification"),
    ],
)
def test_a_bad_decision_is_a_422_naming_the_field(client, token, campaign, body, field):
    response = client.post(
        f"/v1/reviews/items/{campaign}/decision", json=body, headers=token("max")
    )
    assert response.status_code == 422
    assert field in str(response.json)


def test_someone_who_does_not_review_the_item_gets_a_404(client, token, campaign):
    body = {"decision": "remove", "justification": "not theirs to decide"}
    response = client.post(
        f"/v1/reviews/items/{campaign}/decision", json=body, headers=token("olivia")
    )
    assert response.status_code == 404


def test_the_holder_cannot_review_their_own_access(client, token, campaign):
    """pat sees the review of pat's access but may not decide it: 403."""
    assert client.get(f"/v1/reviews/items/{campaign}", headers=token("pat")).status_code == 200
    body = {"decision": "keep", "justification": "I need it"}
    response = client.post(
        f"/v1/reviews/items/{campaign}/decision", json=body, headers=token("pat")
    )
    assert response.status_code == 403


def test_an_auditor_exports_a_campaign_as_csv(client, token, campaign):
    auditor = token("aud", "auditor")
    campaigns = client.get("/v1/reviews/campaigns", headers=auditor).json
    assert [(c["package"], c["review"], c["state"]) for c in campaigns] == [
        ("crm", "quarterly", "open")
    ]
    response = client.get(f"/v1/reviews/campaigns/{campaigns[0]['id']}/export", headers=auditor)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["item_id"], r["subject_id"], r["reviewers"]) for r in rows] == [
        (campaign, "pat", "max")
    ]


def test_an_unknown_campaign_is_a_404(client, admin):
    assert client.get("/v1/reviews/campaigns/nope/export", headers=admin).status_code == 404
