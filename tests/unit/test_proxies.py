"""Proxies without a network: validation, rotation, bans and rests, the list and its
provider, and what is shown of a proxy (never its credentials)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from backends.clock import FakeClock
from backends.errors import PermanentError, RetryableError, TrawlError
from nodes.page import Page
from worker.endings import HandBack, ending_of
from worker.fetchers import classify
from worker.proxies import MAX_PROXIES, ProxyPool, proxy_url, response_status
from workflows import WorkflowInvalid, validate_data
from workflows.proxy_urls import parse_listed_proxy, parse_proxy_url, workflow_url_error
from workflows.spec import Proxies, ProxyBan

SECRET = "s3cr3t/p@ss:word"
BASE: dict[str, Any] = {
    "name": "proxied",
    "start_urls": ["http://127.0.0.1:9/"],
    "engine": "http",
    "phases": [{"name": "page"}],
}


def problems(proxies: dict[str, Any]) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        validate_data({**BASE, "proxies": proxies})
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def pool(
    *urls: str,
    clock: FakeClock | None = None,
    secrets: dict[str, str] | None = None,
    provider: Any = None,
    **spec: Any,
) -> ProxyPool:
    ban = spec.pop("ban", {})
    return ProxyPool(
        Proxies(urls=list(urls), ban=ProxyBan(**ban), **spec),
        secrets or {},
        clock=clock or FakeClock(),
        provider=provider,
        rng=random.Random(7),
    )


def page(html: str = "<h1>ok</h1>") -> Page:
    return Page(url="http://site/", html=html, status=200, headers={})


# -- validation


def test_a_workflow_proxy_names_its_password_as_a_secret() -> None:
    valid = {"urls": ["http://crawler:${secret:PROXY_PASSWORD}@10.0.0.1:3128", "http://h:8080"]}
    workflow = validate_data({**BASE, "proxies": valid})
    assert workflow.proxies is not None
    assert workflow.proxies.rotation == "round_robin"
    assert workflow.proxies.ban.statuses == [403, 407, 429]


def test_validation_names_every_bad_proxy_setting_without_echoing_a_password() -> None:
    found = problems(
        {
            "urls": [
                "http://crawler:hunter2@10.0.0.1:3128",
                "socks5://10.0.0.1:1080",
                "http://10.0.0.1:3128/path",
                "http://u:p/w@h:1",
            ],
            "ban": {"statuses": [200, 503], "selector": "div[", "cooldown_s": 7200},
        }
    )
    selector = found.pop(5)  # the parser's own words follow
    assert selector.startswith("proxies.ban.selector: invalid CSS selector 'div['")
    assert found == [
        "proxies.urls[0]: the password is written in plain text; name a secret instead, e.g. "
        "http://user:${secret:PROXY_PASSWORD}@10.0.0.1:3128",
        "proxies.urls[1]: must be http://[user:password@]host:port (plain HTTP proxies "
        "only: the one kind both engines speak), got 'socks5://10.0.0.1:1080'",
        "proxies.urls[2]: must be http://[user:password@]host:port, without a path or "
        "query, got 'http://10.0.0.1:3128/path'",
        "proxies.urls[3]: must be http://[user:password@]host:port, got 'http://REDACTED@h:1'",
        "proxies.ban.statuses[0]: 200 is not an error status (400-599); a page that answers "
        "200 with a block page is what ban.selector is for",
        "proxies.ban.cooldown_s: is 7200; at most 3600 seconds",
    ]
    assert not any("hunter2" in p or "p/w" in p for p in found)


def test_proxies_need_a_list_or_a_provider() -> None:
    assert problems({}) == ["proxies: give urls, provider_url or both (no proxy to use)"]
    assert problems({"provider_url": "ftp://lists.example/p"}) == [
        "proxies.provider_url: must be an absolute http(s) URL, got 'ftp://lists.example/p'"
    ]


def test_proxy_urls_parse_to_host_port_names() -> None:
    address = parse_proxy_url("http://user:p%40ss@Proxy.Example:3128")
    assert (address.name, address.username, address.password) == (
        "proxy.example:3128",
        "user",
        "p@ss",
    )
    assert "p@ss" not in repr(address) and str(address) == "proxy.example:3128"
    assert parse_proxy_url("http://[::1]:8080").name == "[::1]:8080"
    assert parse_proxy_url("http://h").port == 80
    assert parse_listed_proxy("10.1.2.3:8000").name == "10.1.2.3:8000"
    assert workflow_url_error("http://${secret:U}:${secret:P}@h:1") is None
    assert workflow_url_error("http://h:0") is not None


# -- rotation


async def test_round_robin_takes_the_proxies_in_turn() -> None:
    p = pool("http://a:1", "http://b:2", "http://c:3")
    names = [(await p.choose("http://site/x")).name for _ in range(6)]
    assert names == ["a:1", "b:2", "c:3", "a:1", "b:2", "c:3"]


async def test_random_rotation_uses_every_proxy() -> None:
    p = pool("http://a:1", "http://b:2", "http://c:3", rotation="random")
    names = {(await p.choose("http://site/x")).name for _ in range(50)}
    assert names == {"a:1", "b:2", "c:3"}


async def test_per_host_keeps_a_host_on_its_proxy_until_it_is_banned() -> None:
    clock = FakeClock()
    p = pool("http://a:1", "http://b:2", rotation="per_host", clock=clock, ban={"cooldown_s": 5})
    first = await p.choose("http://one.example/1")
    other = await p.choose("http://two.example/1")
    assert first.name != other.name
    for path in ("/2", "/3", "/4"):
        assert (await p.choose(f"http://one.example{path}")) is first
    with pytest.raises(RetryableError) as banned:
        p.judge_error(first, "http://one.example/5", classify_status(403))
    assert banned.value.error_class == "proxy_banned"
    assert (await p.choose("http://one.example/6")) is other  # moved on, and stays
    clock.advance(10)
    assert (await p.choose("http://one.example/7")) is other


# -- bans, rests and health


def classify_status(status: int) -> TrawlError:
    error = classify.status_error(status, "http://site/x")
    assert error is not None
    return error


def test_the_status_of_a_fetch_error_is_read_back_for_every_class() -> None:
    assert response_status(classify_status(403)) == 403
    assert response_status(classify_status(429)) == 429
    assert response_status(classify_status(503)) == 503  # http_5xx: from the message
    assert response_status(RetryableError("x", error_class="timeout")) is None


async def test_a_banned_proxy_rests_and_the_task_waits_when_all_rest() -> None:
    clock = FakeClock()
    p = pool(
        "http://a:1", "http://b:2", clock=clock, ban={"statuses": [403, 503], "cooldown_s": 30}
    )
    a = await p.choose("http://site/1")
    with pytest.raises(RetryableError) as banned:
        p.judge_error(a, "http://site/1", classify_status(503))
    assert banned.value.error_class == "proxy_banned"
    assert str(banned.value) == (
        "http://site/1: proxy a:1 is banned (HTTP 503); the page is tried again through "
        "another proxy"
    )
    ending = ending_of(banned.value)
    assert (ending.kind, ending.error_class) == ("retry", "proxy_banned")
    b = await p.choose("http://site/2")
    assert b.name == "b:2"
    assert (await p.choose("http://site/3")).name == "b:2"  # a rests
    clock.advance(10)
    page_ = page('<div class="captcha">no</div>')
    p.judge_page(b, "http://site/3", page_)  # no selector configured: fine
    with pytest.raises(RetryableError):
        p.judge_error(b, "http://site/4", classify_status(403))
    with pytest.raises(HandBack) as waiting:
        await p.choose("http://site/5")
    assert waiting.value.delay_s == pytest.approx(20)  # a is back first, 30 s after its ban
    assert ending_of(waiting.value).kind == "hand_back"
    clock.advance(20)
    assert (await p.choose("http://site/5")).name == "a:1"
    health = {h["proxy"]: h for h in p.health()}
    assert health["a:1"]["banned"] == 1 and health["a:1"]["resting"] is False
    assert health["b:2"] == {
        "proxy": "b:2",
        "ok": 1,
        "failed": 0,
        "banned": 1,
        "last_ban": health["b:2"]["last_ban"],
        "resting": True,
    }


async def test_a_page_matching_the_ban_selector_bans_its_proxy() -> None:
    p = pool("http://a:1", "http://b:2", ban={"selector": "#captcha"})
    a = await p.choose("http://site/1")
    p.judge_page(a, "http://site/1", page())
    with pytest.raises(RetryableError) as banned:
        p.judge_page(a, "http://site/2", page('<div id="captcha">prove it</div>'))
    assert banned.value.error_class == "proxy_banned"
    assert "matches ban.selector '#captcha'" in str(banned.value)
    assert [(h["proxy"], h["ok"], h["banned"]) for h in p.health()] == [
        ("a:1", 1, 1),
        ("b:2", 0, 0),
    ]


async def test_failures_are_counted_and_an_unreachable_proxy_rests() -> None:
    clock = FakeClock()
    p = pool("http://a:1", "http://b:2", clock=clock)
    a = await p.choose("http://site/1")
    p.judge_error(a, "http://site/1", RetryableError("reset", error_class="connection"))
    p.judge_error(a, "http://site/1", classify_status(404))  # the site's answer: ok
    assert [h["failed"] for h in p.health()] == [1, 0]
    assert not any(h["resting"] for h in p.health())
    p.judge_error(a, "http://site/1", RetryableError("down", error_class="proxy_connection"))
    assert [h["resting"] for h in p.health()] == [True, False]
    assert [h["failed"] for h in p.health()] == [2, 0]


# -- the list: secrets, provider


async def test_secrets_are_resolved_and_never_shown() -> None:
    p = pool("http://crawler:${secret:PW}@10.0.0.1:3128", secrets={"PW": SECRET})
    chosen = await p.choose("http://site/")
    assert chosen.name == "10.0.0.1:3128"
    assert chosen.url == "http://crawler:s3cr3t%2Fp%40ss%3Aword@10.0.0.1:3128"
    assert parse_proxy_url(chosen.url).password == SECRET
    shown = f"{chosen!r} {p.proxies!r} {p.health()!r}"
    assert "s3cr3t" not in shown


async def test_a_missing_secret_fails_every_page_naming_it() -> None:
    p = pool("http://crawler:${secret:PW}@10.0.0.1:3128")
    for _ in range(2):
        with pytest.raises(PermanentError) as missing:
            await p.choose("http://site/")
        assert missing.value.error_class == "proxy_config"
        assert str(missing.value) == "proxies.urls[0]: secret 'PW' is not set"


async def test_a_provider_list_is_read_once_and_again_after_its_ttl() -> None:
    clock = FakeClock()
    answers: list[bytes | TrawlError] = [
        b"# our proxies\n10.0.0.1:8000\n\nhttp://u:pw@10.0.0.2:8000\n",
        b"10.0.0.3:1\n",
        RetryableError("down", error_class="timeout"),
        b"10.0.0.4:1\n",
    ]
    asked: list[tuple[str, str]] = []

    async def provider(url: str, user_agent: str) -> bytes:
        asked.append((url, user_agent))
        answer = answers[len(asked) - 1]
        if isinstance(answer, TrawlError):
            raise answer
        return answer

    p = pool(
        "http://static:1",
        clock=clock,
        provider=provider,
        secrets={"KEY": "k3y"},
        provider_url="https://lists.example/p?key=${secret:KEY}",
    )
    names = [(await p.choose("http://site/")).name for _ in range(3)]
    assert names == ["static:1", "10.0.0.1:8000", "10.0.0.2:8000"]
    assert asked == [("https://lists.example/p?key=k3y", "trawl")]
    clock.advance(601)
    await p.choose("http://site/")
    assert [x.name for x in p.proxies] == ["static:1", "10.0.0.3:1"]
    assert len(asked) == 2
    clock.advance(601)  # the provider fails: the list stays, asked again a minute later
    await p.choose("http://site/")
    assert [x.name for x in p.proxies] == ["static:1", "10.0.0.3:1"]
    clock.advance(30)
    await p.choose("http://site/")
    assert len(asked) == 3
    clock.advance(31)
    await p.choose("http://site/")
    assert [x.name for x in p.proxies] == ["static:1", "10.0.0.4:1"]


async def test_a_failing_provider_is_a_clear_error_without_its_secret() -> None:
    async def provider(url: str, user_agent: str) -> bytes:
        raise PermanentError(f"HTTP 401 from {url}", error_class="http_401")

    p = pool(
        provider=provider,
        secrets={"KEY": "k3y"},
        provider_url="https://lists.example/p?key=${secret:KEY}",
    )
    with pytest.raises(RetryableError) as failed:
        await p.choose("http://site/")
    assert failed.value.error_class == "proxy_provider"
    assert str(failed.value) == (
        "proxies.provider_url https://lists.example/p?key=REDACTED: answered HTTP 401"
    )


async def test_a_bad_provider_line_is_named_by_its_number_only() -> None:
    async def provider(url: str, user_agent: str) -> bytes:
        return b"10.0.0.1:8000\nsocks5://user:hunter2@10.0.0.2:1080\n"

    p = pool(provider=provider, provider_url="https://lists.example/p")
    with pytest.raises(PermanentError) as bad:
        await p.choose("http://site/")
    assert str(bad.value) == (
        "proxies.provider_url https://lists.example/p: line 2 is not a proxy "
        "(http://[user:password@]host:port, or host:port)"
    )


async def test_a_provider_list_is_bounded() -> None:
    async def provider(url: str, user_agent: str) -> bytes:
        return "\n".join(f"10.0.{i // 250}.{i % 250 + 1}:8000" for i in range(1500)).encode()

    p = pool(provider=provider, provider_url="https://lists.example/p")
    await p.choose("http://site/")
    assert len(p.proxies) == MAX_PROXIES


def test_the_url_given_to_the_fetchers_is_percent_encoded() -> None:
    address = parse_proxy_url("http://us%3Aer:p%40ss@h:1")
    assert proxy_url(address) == "http://us%3Aer:p%40ss@h:1"
    assert proxy_url(parse_proxy_url("http://h:1")) == "http://h:1"
