"""Rule files that would hurt the service are refused by POST /v1/policy-versions with a 422
naming file and line; the active version stays."""

from __future__ import annotations

import pytest

from policyd.rules import load_bundle
from tests.conftest import POLICIES
from tests.rules.test_source import billion_laughs

NEVER_FIRES = """apiVersion: policyd/v1
package:
  id: never
  displayName: Never
  rules:
    - id: everyone
      then:
        decision: auto_approve
        lifetime: {until: {cron: "0 0 31 2 *"}}
"""


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (billion_laughs(), "bad.yaml:6: invalid YAML: aliases repeat more than 10000 values"),
        ("package: " + "[" * 10_000 + "]" * 10_000 + "\n", "bad.yaml:1: invalid YAML: "),
        (
            NEVER_FIRES,
            "bad.yaml:9: package.rules[0].then.lifetime.until.cron: cron '0 0 31 2 *' never fires",
        ),
    ],
    ids=["alias-bomb", "nested-10000-deep", "cron-never-fires"],
)
def test_a_hostile_rule_file_is_a_422_with_its_line_and_changes_nothing(client, admin, text, error):
    """An alias bomb, YAML nested 10,000 levels and a lifetime that never ends are refused
    with file:line errors; decisions go on with the active version."""
    before = client.get("/readyz").json["version"]
    files = {**load_bundle(POLICIES).files, "bad.yaml": text}
    response = client.post("/v1/policy-versions", json={"files": files}, headers=admin)
    assert response.status_code == 422, response.json
    assert response.json["code"] == 422
    (message,) = response.json["errors"]["files"]
    assert message.startswith(error)
    assert client.get("/readyz").json["version"] == before
