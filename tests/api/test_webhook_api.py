"""Webhooks through the API over the memory adapters: the tenant's secret, a start naming a
webhook (its own or its workflow's, checked), and an execution's call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.errors import PermanentError
from tests.api.memory_app import Api, memory_api
from trawl.webhooks import tenant_secret

SECRET = "deployment-secret-for-tests"
HOOK = "https://hooks.example/trawl"
WORKFLOW = """
name: shop
start_urls: ["http://shop.test/"]
phases:
  - name: page
    nodes: [{type: extract, fields: {title: h1}}]
"""
YAML = {"Content-Type": "application/yaml"}


class RefuseInternal:
    """The SSRF guard, as far as these tests need it: hosts under .internal are refused."""

    async def check_url(self, url: str) -> None:
        if ".internal" in url:
            raise PermanentError(
                f"refused {url}: hooks.internal resolves to 10.0.0.5, a private address",
                error_class="blocked_address",
            )


async def post_workflow(api: Api, auth: dict[str, str], webhook: str | None = None) -> None:
    text = WORKFLOW + (f"webhook: {{url: '{webhook}'}}\n" if webhook else "")
    created = await api.client.post("/v1/workflows", content=text, headers=auth | YAML)
    assert created.status_code == 201, created.text


async def start(api: Api, auth: dict[str, str], body: dict[str, object]) -> tuple[int, Any]:
    response = await api.client.post("/v1/workflows/shop/executions", json=body, headers=auth)
    return response.status_code, response.json()


async def test_a_tenant_reads_its_own_secret(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        acme = await api.key("acme")
        disabled = await api.client.get("/v1/webhook-secret", headers=acme)
        assert disabled.status_code == 404
        assert "TRAWL_WEBHOOK_SECRET is not set" in disabled.json()["detail"]
        api.services.webhook_secret = SECRET
        got = await api.client.get("/v1/webhook-secret", headers=acme)
        assert got.status_code == 200
        assert got.json() == {
            "tenant": "acme",
            "secret": tenant_secret(SECRET, "acme"),
            "header": "Trawl-Signature",
        }
        other = await api.client.get("/v1/webhook-secret", headers=await api.key("globex"))
        assert other.json()["secret"] == tenant_secret(SECRET, "globex") != got.json()["secret"]
        assert (await api.client.get("/v1/webhook-secret")).status_code == 401


async def test_a_start_names_its_own_webhook_or_gets_the_workflows(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        api.services.webhook_secret = SECRET
        auth = await api.key("acme")
        await post_workflow(api, auth, webhook="https://workflow.example/hook")
        status, own = await start(api, auth, {"webhook": HOOK})
        assert status == 202, own
        status, plain = await start(api, auth, {})
        assert status == 202, plain
        state = api.services.ports.state
        own_execution = await state.get_execution(own["id"])
        plain_execution = await state.get_execution(plain["id"])
        assert own_execution is not None and own_execution.params["webhook"] == HOOK
        assert plain_execution is not None and "webhook" not in plain_execution.params
        # Nothing is owed before it ends.
        for execution_id in (own["id"], plain["id"]):
            missing = await api.client.get(f"/v1/executions/{execution_id}/webhook", headers=auth)
            assert missing.status_code == 404


async def test_a_webhook_that_cannot_be_called_is_a_422(tmp_path: Path) -> None:
    async with memory_api(tmp_path, guard=RefuseInternal()) as api:
        auth = await api.key("acme")
        await post_workflow(api, auth)
        # No deployment secret: refused, naming the setting.
        status, body = await start(api, auth, {"webhook": HOOK})
        assert status == 422
        assert "TRAWL_WEBHOOK_SECRET" in body["detail"]
        api.services.webhook_secret = SECRET
        for url, message in [
            ("ftp://hooks.example/", "must be an absolute http(s) URL"),
            ("", "must be an absolute http(s) URL"),
            ("https://hooks.internal/x", "a private address"),
        ]:
            status, body = await start(api, auth, {"webhook": url})
            assert status == 422, body
            (problem,) = body["extra"]["problems"]
            assert problem["path"] == "webhook"
            assert message in problem["message"]
        assert api.queue.pending() == 0  # nothing started


async def test_the_workflows_webhook_is_checked_at_start_too(tmp_path: Path) -> None:
    async with memory_api(tmp_path, guard=RefuseInternal()) as api:
        api.services.webhook_secret = SECRET
        auth = await api.key("acme")
        await post_workflow(api, auth, webhook="https://hooks.internal/x")
        status, body = await start(api, auth, {})
        assert status == 422
        assert body["extra"]["problems"][0]["path"] == "webhook.url"
        # The start's own URL wins, so the workflow's is not called, nor checked.
        status, body = await start(api, auth, {"webhook": HOOK})
        assert status == 202, body


async def test_an_ended_execution_shows_its_call(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        api.services.webhook_secret = SECRET
        auth = await api.key("acme")
        await post_workflow(api, auth)
        status, started = await start(api, auth, {"webhook": HOOK})
        assert status == 202
        cancelled = await api.client.post(f"/v1/executions/{started['id']}/cancel", headers=auth)
        assert cancelled.status_code == 202
        got = await api.client.get(f"/v1/executions/{started['id']}/webhook", headers=auth)
        assert got.status_code == 200, got.text
        call = got.json()
        assert (call["url"], call["status"], call["attempts"]) == (HOOK, "pending", 0)
        assert call["next_at"] is not None and call["last_error"] is None
        other = await api.key("globex")
        hidden = await api.client.get(f"/v1/executions/{started['id']}/webhook", headers=other)
        assert hidden.status_code == 404
