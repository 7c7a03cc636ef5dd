"""The API docs page works offline: Swagger UI comes from the service itself."""

from __future__ import annotations

import re


def test_the_docs_page_loads_swagger_ui_from_the_service_only(client):
    """/docs refers to no other host, and every script and style it names is served here
    without a token."""
    with client.get("/docs") as page:
        assert page.status_code == 200
        html = page.get_data(as_text=True)
    assert "://" not in re.sub(r"<!--.*?-->", "", html, flags=re.DOTALL)
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            assert len(response.get_data()) > 1000
