"""API keys over the memory adapters: what an admin and a tenant see when keys are listed,
created, revoked and expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.auth import hash_key, issue_key, new_key
from tests.api.memory_app import memory_api

GOOD = """
name: shop
start_urls: ["http://shop.test/"]
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
"""
YAML = {"Content-Type": "application/yaml"}
KEYS = "/v1/admin/keys"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_admin_creates_lists_and_revokes_keys(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        admin_key, _ = await issue_key(api.services.ports.state, "ops", admin=True)
        admin = bearer(admin_key)
        created = await api.client.post(
            KEYS, json={"tenant": "acme", "expires_in_days": 30}, headers=admin
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["key"].startswith("trawl_") and body["tenant"] == "acme"
        assert body["id"] == hash_key(body["key"])[:12] and body["admin"] is False
        expires = datetime.fromisoformat(body["expires_at"])
        assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
        acme = bearer(body["key"])
        assert (await api.client.get("/v1/workflows", headers=acme)).status_code == 200

        listed = await api.client.get(KEYS, headers=admin)
        assert listed.status_code == 200
        rows = listed.json()
        assert [(r["tenant"], r["admin"]) for r in rows] == [("ops", True), ("acme", False)]
        assert set(rows[1]) == {"id", "tenant", "admin", "created_at", "expires_at", "revoked_at"}
        assert body["key"] not in listed.text and hash_key(body["key"]) not in listed.text
        only = await api.client.get(KEYS, params={"tenant": "acme"}, headers=admin)
        assert [r["id"] for r in only.json()] == [body["id"]]

        revoked = await api.client.delete(f"{KEYS}/{body['id']}", headers=admin)
        assert revoked.status_code == 204
        refused = await api.client.get("/v1/workflows", headers=acme)
        assert refused.status_code == 401
        assert refused.json()["detail"] == "API key revoked"
        [row] = (await api.client.get(KEYS, params={"tenant": "acme"}, headers=admin)).json()
        assert row["revoked_at"] is not None
        missing = await api.client.delete(f"{KEYS}/000000000000", headers=admin)
        assert missing.status_code == 404
        assert "no API key '000000000000'" in missing.json()["detail"]


async def test_a_tenant_key_gets_403_on_the_admin_routes(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("acme")
        [own] = await api.services.ports.state.list_api_keys("acme")
        for response in (
            await api.client.get(KEYS, headers=auth),
            await api.client.post(KEYS, json={"tenant": "acme", "admin": True}, headers=auth),
            await api.client.delete(f"{KEYS}/{own.id}", headers=auth),
        ):
            assert response.status_code == 403
            assert "needs an admin API key" in response.json()["detail"]
        # Nothing changed: no key was made, its own key was not revoked.
        assert len(await api.services.ports.state.list_api_keys()) == 1
        assert (await api.client.get("/v1/workflows", headers=auth)).status_code == 200
        no_key = await api.client.get(KEYS)
        assert no_key.status_code == 401


async def test_an_admin_key_acts_for_its_own_tenant_elsewhere(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        admin_key, _ = await issue_key(api.services.ports.state, "ops", admin=True)
        admin, acme = bearer(admin_key), await api.key("acme")
        posted = await api.client.post("/v1/workflows", content=GOOD, headers=acme | YAML)
        assert posted.status_code == 201
        assert (await api.client.get("/v1/workflows", headers=admin)).json() == []
        assert (await api.client.get("/v1/workflows/shop", headers=admin)).status_code == 404


async def test_an_expired_key_is_a_401_that_says_so(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        key = new_key()
        past = datetime.now(UTC) - timedelta(seconds=1)
        await api.services.ports.state.create_api_key(hash_key(key), "acme", expires_at=past)
        refused = await api.client.get("/v1/workflows", headers=bearer(key))
        assert refused.status_code == 401
        assert refused.json()["detail"] == "API key expired"
        unknown = await api.client.get("/v1/workflows", headers=bearer(new_key()))
        assert (unknown.status_code, unknown.json()["detail"]) == (401, "unknown API key")


async def test_bad_key_requests_are_400s_naming_the_field(tmp_path: Path) -> None:
    async with memory_api(tmp_path) as api:
        admin_key, _ = await issue_key(api.services.ports.state, "ops", admin=True)
        admin = bearer(admin_key)
        for body, field in (
            ({"tenant": "acme", "expires_in_days": 0}, "expires_in_days"),
            ({"tenant": ""}, "tenant"),
            ({"tenant": "acme", "owner": "x"}, "owner"),
            ({}, "tenant"),
        ):
            response = await api.client.post(KEYS, json=body, headers=admin)
            assert response.status_code == 400, body
            assert field in response.text, response.text
        assert len(await api.services.ports.state.list_api_keys()) == 1
