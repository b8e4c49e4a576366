"""SecretStore contract: tenants' secrets (names listed, values only by name, a cap per
tenant) and executions' login sessions (the first write of a generation wins)."""

from __future__ import annotations

import asyncio

import msgspec

from backends.state import LoginSession, SessionCookie, StateStore
from tests.contract.conftest import Env


async def test_secrets_are_set_listed_by_name_and_read_per_tenant(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    first = await store.put_secret("acme", "API_TOKEN", "tok-1")
    assert first is not None and first.name == "API_TOKEN"
    assert first.updated_at == state_env.clock.wall()
    await state_env.advance(5)
    await store.put_secret("acme", "PASSWORD", "hunter2 ünïcode")
    await store.put_secret("globex", "API_TOKEN", "other tenant's")

    listed = await store.list_secrets("acme")
    assert [s.name for s in listed] == ["API_TOKEN", "PASSWORD"]
    assert "tok-1" not in msgspec.json.encode(listed).decode()  # names and times only
    assert await store.get_secrets("acme", ["API_TOKEN", "PASSWORD", "MISSING"]) == {
        "API_TOKEN": "tok-1",
        "PASSWORD": "hunter2 ünïcode",
    }
    assert await store.get_secrets("globex", ["API_TOKEN", "PASSWORD"]) == {
        "API_TOKEN": "other tenant's"
    }
    assert await store.get_secrets("acme", []) == {}
    assert await store.list_secrets("nobody") == []


async def test_setting_a_secret_again_replaces_its_value_and_time(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.put_secret("acme", "TOKEN", "old")
    await state_env.advance(60)
    again = await store.put_secret("acme", "TOKEN", "new")
    assert again is not None and again.updated_at == state_env.clock.wall()
    assert await store.get_secrets("acme", ["TOKEN"]) == {"TOKEN": "new"}
    assert [(s.name, s.updated_at) for s in await store.list_secrets("acme")] == [
        ("TOKEN", again.updated_at)
    ]


async def test_a_deleted_secret_is_gone_and_deleting_it_again_says_so(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    await store.put_secret("acme", "TOKEN", "v")
    assert await store.delete_secret("acme", "TOKEN") is True
    assert await store.delete_secret("acme", "TOKEN") is False
    assert await store.delete_secret("globex", "NEVER") is False
    assert await store.get_secrets("acme", ["TOKEN"]) == {}
    assert await store.list_secrets("acme") == []


async def test_the_cap_refuses_a_new_name_but_not_a_replacement(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    assert await store.put_secret("acme", "A", "1", max_secrets=2) is not None
    assert await store.put_secret("acme", "B", "2", max_secrets=2) is not None
    assert await store.put_secret("acme", "C", "3", max_secrets=2) is None
    assert await store.put_secret("acme", "A", "1b", max_secrets=2) is not None
    assert await store.put_secret("globex", "C", "3", max_secrets=2) is not None  # per tenant
    assert [s.name for s in await store.list_secrets("acme")] == ["A", "B"]
    assert await store.get_secrets("acme", ["A", "C"]) == {"A": "1b"}


async def test_concurrent_new_names_cannot_overshoot_the_cap(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    results = await asyncio.gather(
        *(store.put_secret("race", f"S{i}", "v", max_secrets=3) for i in range(8))
    )
    assert sum(r is not None for r in results) == 3
    assert len(await store.list_secrets("race")) == 3


def session(generation: int, value: str = "abc", error: str | None = None) -> LoginSession:
    cookie = SessionCookie(
        name="sid", value=value, domain="shop.example", path="/", host_only=True, secure=True
    )
    return LoginSession(cookies=[cookie], error=error, generation=generation)


async def test_a_session_is_stored_per_execution_and_read_back_whole(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    assert await store.get_session("e1") is None
    assert await store.put_session("e1", session(1)) is True
    assert await store.get_session("e1") == session(1)
    assert await store.get_session("e2") is None  # never shared across executions
    failed = LoginSession(error="the login page answered 403", generation=1)
    assert await store.put_session("e2", failed) is True
    assert await store.get_session("e2") == failed


async def test_of_two_logins_of_one_generation_the_first_wins_and_a_later_one_replaces_it(
    state_env: Env[StateStore],
) -> None:
    store = state_env.adapter
    assert await store.put_session("e1", session(1, "first")) is True
    assert await store.put_session("e1", session(1, "second")) is False
    assert (await store.get_session("e1")) == session(1, "first")
    assert await store.put_session("e1", session(2, "relogin")) is True
    assert await store.put_session("e1", session(1, "late")) is False
    assert await store.get_session("e1") == session(2, "relogin")
