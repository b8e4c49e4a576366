"""KeyStore contract: keys by hash, public ids, revocation, expiry."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from backends.errors import InvalidInputError
from backends.state import StateStore
from tests.contract.conftest import Env

# -- API keys


async def test_api_keys_map_hashes_to_tenants(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.put_api_key("h1", "acme")
    await store.put_api_key("h2", "globex")
    assert await store.tenant_for_key("h1") == "acme"
    assert await store.tenant_for_key("h2") == "globex"
    assert await store.tenant_for_key("nope") is None
    with pytest.raises(InvalidInputError, match="exists"):
        await store.put_api_key("h1", "globex")
    assert await store.tenant_for_key("h1") == "acme"


async def test_api_keys_are_listed_by_public_id_never_by_hash(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    h1, h2, h3 = "a1" * 32, "b2" * 32, "c3" * 32
    first = await store.create_api_key(h1, "acme")
    await state_env.advance(1)
    until = state_env.clock.wall() + timedelta(days=30)
    admin = await store.create_api_key(h2, "ops", admin=True, expires_at=until)
    await state_env.advance(1)
    await store.put_api_key(h3, "acme")  # the old way still works: no expiry, not admin
    assert (first.id, first.tenant, first.admin, first.expires_at) == (h1[:12], "acme", False, None)
    assert (admin.id, admin.admin, admin.expires_at) == (h2[:12], True, until)
    listed = await store.list_api_keys()
    assert [k.id for k in listed] == [h1[:12], h2[:12], h3[:12]]  # oldest first
    assert listed[1] == admin and listed[0] == first
    assert [k.id for k in await store.list_api_keys("acme")] == [h1[:12], h3[:12]]
    assert await store.list_api_keys("nobody") == []
    assert not any(h1 in msgspec.json.encode(k).decode() for k in listed)
    check = await store.check_api_key(h2)
    assert check.key == admin and check.refused is None


async def test_a_revoked_key_is_refused_at_once_and_says_so(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    key = await store.create_api_key("d4" * 32, "acme")
    await state_env.advance(5)
    revoked = await store.revoke_api_key(key.id)
    assert revoked is not None and revoked.revoked_at == state_env.clock.wall()
    check = await store.check_api_key("d4" * 32)
    assert (check.key, check.refused) == (None, "revoked")
    assert await store.tenant_for_key("d4" * 32) is None
    await state_env.advance(5)
    again = await store.revoke_api_key(key.id)
    assert again is not None and again.revoked_at == revoked.revoked_at  # first time stays
    assert await store.revoke_api_key("nosuchkeyid0") is None
    [listed] = await store.list_api_keys("acme")
    assert listed.revoked_at == revoked.revoked_at
    assert (await store.check_api_key("unknown")).refused == "unknown"


async def test_a_key_expires_at_its_time(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    until = state_env.clock.wall() + timedelta(seconds=10)
    await store.create_api_key("e5" * 32, "acme", expires_at=until)
    assert await store.tenant_for_key("e5" * 32) == "acme"
    await state_env.advance(9)
    assert (await store.check_api_key("e5" * 32)).refused is None
    await state_env.advance(1)
    check = await store.check_api_key("e5" * 32)
    assert (check.key, check.refused) == (None, "expired")
    assert await store.tenant_for_key("e5" * 32) is None


async def test_a_key_id_is_unique(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_api_key("f6" * 32, "acme")
    with pytest.raises(InvalidInputError, match="exists"):  # same first 12 digits
        await store.create_api_key("f6" * 6 + "00" * 26, "globex")
    assert [k.tenant for k in await store.list_api_keys()] == ["acme"]
