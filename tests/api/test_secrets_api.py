"""``/v1/secrets`` over the memory adapters: a tenant sets, lists and deletes its secrets,
never reads a value back, stays within the deployment's bounds, and a start whose workflow
names a secret it lacks is a 400 naming the key and the secret."""

from __future__ import annotations

from pathlib import Path

from orchestrator.services import Limits
from tests.api.memory_app import memory_api

WORKFLOW = """
name: private
start_urls: ["http://shop.test/private/0"]
engine: http
fetch:
  headers: {Authorization: "Bearer ${secret:API_TOKEN}"}
login:
  url: "http://shop.test/login"
  form: {user: alice, password: "${secret:PASS}"}
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
"""
YAML = {"Content-Type": "application/yaml"}


async def test_a_tenant_sets_lists_and_deletes_secrets_and_never_reads_a_value(
    tmp_path: Path,
) -> None:
    async with memory_api(tmp_path) as api:
        acme, globex = await api.key("acme"), await api.key("globex")
        put = await api.client.put(
            "/v1/secrets/API_TOKEN", json={"value": "tok-a1b2c3"}, headers=acme
        )
        assert put.status_code == 200, put.text
        assert set(put.json()) == {"name", "updated_at"}
        assert put.json()["name"] == "API_TOKEN"
        await api.client.put("/v1/secrets/PASS", json={"value": "pw-d4e5f6"}, headers=acme)

        listed = await api.client.get("/v1/secrets", headers=acme)
        assert listed.status_code == 200
        assert [s["name"] for s in listed.json()] == ["API_TOKEN", "PASS"]
        assert "tok-a1b2c3" not in listed.text and "pw-d4e5f6" not in listed.text
        assert (await api.client.get("/v1/secrets", headers=globex)).json() == []

        gone = await api.client.delete("/v1/secrets/PASS", headers=acme)
        assert gone.status_code == 204
        again = await api.client.delete("/v1/secrets/PASS", headers=acme)
        assert again.status_code == 404
        assert again.json()["detail"] == "no secret 'PASS'"
        not_theirs = await api.client.delete("/v1/secrets/API_TOKEN", headers=globex)
        assert not_theirs.status_code == 404
        values = await api.services.ports.state.get_secrets("acme", ["API_TOKEN", "PASS"])
        assert values == {"API_TOKEN": "tok-a1b2c3"}


async def test_bad_names_are_400s_bad_bodies_and_sizes_422s_and_the_count_is_capped(
    tmp_path: Path,
) -> None:
    async with memory_api(tmp_path, limits=Limits(max_secrets=2, max_secret_bytes=16)) as api:
        acme = await api.key("acme")

        async def put(name: str, body: object) -> tuple[int, str]:
            answer = await api.client.put(f"/v1/secrets/{name}", json=body, headers=acme)
            return answer.status_code, answer.json().get("detail", "")

        status, detail = await put("9LIVES", {"value": "x"})
        assert (status, detail) == (
            400,
            "'9LIVES' is not a secret name: 1-128 letters, digits and _, not starting with a digit",
        )
        status, detail = await put("A", {"secret": "x"})
        assert status == 422 and detail.startswith("invalid secret: ")
        assert await put("A", {"value": ""}) == (422, "secret A: the value is empty")
        assert await put("A", {"value": "x" * 17}) == (
            422,
            "secret A: the value has 17 bytes; this deployment allows at most 16 "
            "(TRAWL_SECRETS_MAX_VALUE_BYTES)",
        )
        assert (await put("A", {"value": "1"}))[0] == 200
        assert (await put("B", {"value": "2"}))[0] == 200
        assert await put("C", {"value": "3"}) == (
            422,
            "this tenant has 2 secrets, the most this deployment allows "
            "(TRAWL_SECRETS_MAX_COUNT); delete one first",
        )
        assert (await put("A", {"value": "replaced"}))[0] == 200  # replacing is no new name


async def test_a_start_naming_secrets_the_tenant_lacks_is_a_400_naming_each(
    tmp_path: Path,
) -> None:
    async with memory_api(tmp_path) as api:
        acme = await api.key("acme")
        stored = await api.client.post("/v1/workflows", content=WORKFLOW, headers={**acme, **YAML})
        assert stored.status_code == 201, stored.text
        await api.client.put("/v1/secrets/PASS", json={"value": "pw"}, headers=acme)

        refused = await api.client.post("/v1/workflows/private/executions", headers=acme)

        assert refused.status_code == 400, refused.text
        body = refused.json()
        assert body["detail"] == "fetch.headers.Authorization: secret 'API_TOKEN' is not set"
        assert body["extra"] == {
            "error_class": "missing_secret",
            "problems": [
                {
                    "path": "fetch.headers.Authorization",
                    "message": "secret 'API_TOKEN' is not set",
                }
            ],
        }
        assert await api.services.ports.state.list_executions("acme") == []  # none created

        await api.client.put("/v1/secrets/API_TOKEN", json={"value": "tok"}, headers=acme)
        started = await api.client.post("/v1/workflows/private/executions", headers=acme)
        assert started.status_code == 202, started.text
