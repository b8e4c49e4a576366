"""The cookies a login leaves and which URLs get them (worker/cookies.py), how an
execution's requests carry them, and how secret values are sealed at rest
(backends/secret_cipher.py)."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest

from backends.errors import PermanentError
from backends.secret_cipher import SecretCipher, seal, unseal
from backends.state import Execution, LoginSession, SessionCookie
from worker.context import ExecutionContext
from worker.cookies import Jar, matching
from worker.secrets import redact
from workflows import validate_data

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_jar_keeps_cookies_as_the_responses_set_and_delete_them() -> None:
    jar = Jar(NOW)
    jar.take(
        [
            "sid=abc; Path=/; HttpOnly",
            "pref=dark; Domain=.shop.example; Path=/account",
            "tracker=x; Domain=other.example",  # not this host's to set: ignored
            "old=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT",  # already expired
        ],
        "https://www.shop.example/login",
    )
    assert {(c.name, c.domain, c.path, c.host_only) for c in jar.cookies} == {
        ("sid", "www.shop.example", "/", True),
        ("pref", "shop.example", "/account", False),
    }
    jar.take(["sid=; Max-Age=0; Path=/"], "https://www.shop.example/logout")
    assert [c.name for c in jar.cookies] == ["pref"]


def test_cookies_go_only_where_a_browser_would_send_them() -> None:
    cookies = [
        SessionCookie(name="sid", value="1", domain="www.shop.example"),
        SessionCookie(name="pref", value="2", domain="shop.example", host_only=False),
        SessionCookie(
            name="acct", value="3", domain="shop.example", path="/account", host_only=False
        ),
        SessionCookie(name="sec", value="4", domain="www.shop.example", secure=True),
    ]
    assert matching(cookies, "https://www.shop.example/account/orders") == {
        "sid": "1",
        "pref": "2",
        "acct": "3",
        "sec": "4",
    }
    assert matching(cookies, "http://www.shop.example/accounting") == {"sid": "1", "pref": "2"}
    assert matching(cookies, "https://api.shop.example/") == {"pref": "2"}
    assert matching(cookies, "https://shop.example.evil/") == {}


def context(**fields: object) -> ExecutionContext:
    workflow = validate_data(
        {
            "name": "ctx",
            "start_urls": ["https://www.shop.example/"],
            "phases": [{"name": "page"}],
            "fetch": {
                "headers": {"Authorization": "Bearer ${secret:TOKEN}"},
                "cookies": {"consent": "yes"},
            },
            **fields,
        }
    )
    execution = Execution(id="e1", workflow="ctx", workflow_version=1, created_at=NOW)
    ctx = ExecutionContext.build(execution, workflow)
    ctx.secrets = {"TOKEN": "tok-1"}
    return ctx


def test_an_execution_sends_its_headers_and_cookies_to_urls_in_scope_only() -> None:
    ctx = context()
    ctx.session = LoginSession(
        cookies=[SessionCookie(name="sid", value="s-9", domain="www.shop.example")]
    )
    request = ctx.request("https://www.shop.example/p/1")
    assert request.headers == {"Authorization": "Bearer tok-1"}
    assert request.cookies == {"consent": "yes", "sid": "s-9"}
    assert ctx.request("https://elsewhere.example/").cookies == {}
    assert set(ctx.sensitive_values()) == {"tok-1", "s-9"}


def test_a_secret_gone_from_the_context_fails_the_page_naming_it() -> None:
    ctx = context()
    ctx.secrets = {}
    with pytest.raises(PermanentError, match="secret 'TOKEN' is not set") as failed:
        ctx.request("https://www.shop.example/")
    assert failed.value.error_class == "missing_secret"


def test_redaction_masks_every_form_of_a_value_in_a_message() -> None:
    text = "POST https://x.example/login?p=p%40ss+w0rd failed for p@ss w0rd (p%40ss%20w0rd)"
    assert redact(text, ["p@ss w0rd", ""]) == (
        "POST https://x.example/login?p=REDACTED failed for REDACTED (REDACTED)"
    )


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_a_sealed_value_opens_only_with_its_key_and_in_its_place() -> None:
    cipher = SecretCipher.from_setting(key())
    assert cipher is not None
    stored = seal(cipher, "hunter2", "secret 'PASS' of tenant 'acme'")
    assert stored.startswith("v1:") and "hunter2" not in stored
    assert unseal(cipher, stored, "secret 'PASS' of tenant 'acme'") == "hunter2"
    with pytest.raises(PermanentError, match="cannot be decrypted"):
        unseal(cipher, stored, "secret 'PASS' of tenant 'globex'")  # copied to another row
    with pytest.raises(PermanentError, match="cannot be decrypted"):
        unseal(SecretCipher.from_setting(key()), stored, "secret 'PASS' of tenant 'acme'")
    with pytest.raises(PermanentError, match="TRAWL_SECRETS_KEY is not set"):
        unseal(None, stored, "secret 'PASS' of tenant 'acme'")
    # Stored before a key was set: still readable with one.
    assert unseal(cipher, seal(None, "plain", "x"), "x") == "plain"


def test_a_key_that_is_not_32_bytes_of_base64_is_refused_naming_the_setting() -> None:
    assert SecretCipher.from_setting("  ") is None
    with pytest.raises(ValueError, match="TRAWL_SECRETS_KEY: not base64"):
        SecretCipher.from_setting("not base64!")
    with pytest.raises(ValueError, match="TRAWL_SECRETS_KEY: expected 32 bytes, got 16"):
        SecretCipher.from_setting(base64.b64encode(os.urandom(16)).decode())
