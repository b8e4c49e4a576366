"""``fetch.headers``, ``fetch.cookies``, ``login`` and secret references as ``trawl
validate`` judges them: each problem with its path, and the ceilings they are held to."""

from __future__ import annotations

from typing import Any

import pytest

from workflows import WorkflowInvalid, validate_data
from workflows.ceilings import Ceilings, exceeded
from workflows.secret_refs import missing, secret_names, secret_refs

BASE: dict[str, Any] = {
    "name": "sessions",
    "start_urls": ["https://shop.example/"],
    "phases": [{"name": "page"}],
}


def problems(**fields: Any) -> list[str]:
    try:
        validate_data({**BASE, **fields})
    except WorkflowInvalid as error:
        return [str(p) for p in error.problems]
    return []


def test_headers_the_engines_own_are_refused_with_the_reason() -> None:
    found = problems(
        fetch={
            "headers": {
                "Host": "evil.example",
                "content-length": "0",
                "Connection": "close",
                "Proxy-Authorization": "Basic x",
                "Cookie": "a=b",
                "User-Agent": "me",
                "bad name": "v",
                "X-Split": "a\r\nInjected: yes",
                "Authorization": "Bearer ${secret:TOKEN}",
                "Accept-Language": "en",
            }
        }
    )
    assert found == [
        "fetch.headers.Host: Host cannot be set here: set from the URL",
        "fetch.headers.content-length: content-length cannot be set here: set by the engine",
        "fetch.headers.Connection: Connection cannot be set here: managed by the engine",
        "fetch.headers.Proxy-Authorization: Proxy-Authorization cannot be set here: proxy "
        "headers belong to the proxies settings",
        "fetch.headers.Cookie: Cookie cannot be set here: use fetch.cookies (sent to the hosts "
        "in scope only) instead",
        "fetch.headers.User-Agent: User-Agent cannot be set here: use fetch.user_agent "
        "(robots.txt rules are looked up under it) instead",
        "fetch.headers[\"bad name\"]: 'bad name' is not a header name (letters, digits and "
        "!#$%&'*+.^_`|~-)",
        "fetch.headers.X-Split: a header value cannot hold a line break or NUL",
    ]


def test_cookie_values_that_would_split_the_header_are_refused() -> None:
    found = problems(fetch={"cookies": {"ok": "${secret:SID}", "two": "a; b=c", "q": '"x"'}})
    assert found == [
        "fetch.cookies.two: a cookie value cannot hold ';' (no spaces, quotes, , ; or \\)",
        "fetch.cookies.q: a cookie value cannot hold '\"' (no spaces, quotes, , ; or \\)",
    ]


def test_a_login_needs_a_url_and_exactly_one_of_form_and_script() -> None:
    assert problems(login={"url": "/login"}) == [
        "login: give form (a POST) or script (in the browser): exactly one",
        "login.url: must be an absolute http(s) URL, got '/login'",
    ]
    both = problems(
        login={"url": "https://shop.example/login", "form": {"u": "x"}, "script": "() => 1"}
    )
    assert both == ["login: give form (a POST) or script (in the browser): exactly one"]
    assert problems(
        login={"url": "https://shop.example/login", "form": {"u": "x"}, "secrets": ["PASS"]}
    ) == [
        "login.secrets: only a script gets secrets by name; a form names them in its values "
        "as ${secret:NAME}"
    ]
    (bad_selector,) = problems(
        login={"url": "https://shop.example/login", "script": "() => 1", "success_selector": "[["}
    )
    assert bad_selector.startswith("login.success_selector: invalid CSS selector '[['")


def test_a_secret_reference_where_nothing_resolves_it_is_refused() -> None:
    found = problems(start_urls=["https://shop.example/${secret:TOKEN}"])
    assert found == [
        "start_urls[0]: ${secret:TOKEN} is only resolved under fetch.headers, fetch.cookies, "
        "login.form, proxies; here it would be used as written"
    ]


def test_every_secret_is_found_with_its_path_and_missing_ones_are_named() -> None:
    workflow = validate_data(
        {
            **BASE,
            "fetch": {
                "headers": {"Authorization": "Bearer ${secret:TOKEN}"},
                "cookies": {"a": "${secret:A}${secret:TOKEN}"},
            },
            "login": {
                "url": "https://shop.example/login",
                "script": "(s) => s.PASS",
                "secrets": ["PASS"],
            },
        }
    )
    assert secret_refs(workflow) == [
        ("fetch.headers.Authorization", "TOKEN"),
        ("fetch.cookies.a", "A"),
        ("fetch.cookies.a", "TOKEN"),
        ("login.secrets[0]", "PASS"),
    ]
    assert secret_names(workflow) == ["TOKEN", "A", "PASS"]
    assert [str(p) for p in missing(workflow, {"TOKEN": "t"})] == [
        "fetch.cookies.a: secret 'A' is not set",
        "login.secrets[0]: secret 'PASS' is not set",
    ]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        (
            {"login": {"url": "https://shop.example/l", "form": {"u": "x"}, "timeout_s": 500}},
            "login.timeout_s",
        ),
        ({"fetch": {"headers": {f"X-H{i}": "v" for i in range(5)}}}, "fetch.headers"),
        ({"fetch": {"cookies": {f"c{i}": "v" for i in range(5)}}}, "fetch.cookies"),
        (
            {"login": {"url": "https://shop.example/l", "form": {f"f{i}": "v" for i in range(5)}}},
            "login.form",
        ),
    ],
)
def test_a_shared_deployment_bounds_what_a_login_and_the_headers_may_ask(
    fields: dict[str, Any], path: str
) -> None:
    workflow = validate_data({**BASE, **fields})
    over = exceeded(workflow, Ceilings(max_items=4, max_fetch_timeout_s=120))
    assert [p.path for p in over] == [path]
