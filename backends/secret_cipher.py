"""Secret values at rest: sealed with AES-256-GCM under the deployment's key.

Tenants' secrets and executions' login cookies are credentials. With a key
(``TRAWL_SECRETS_KEY``: 32 random bytes, base64) the Postgres adapter stores them sealed,
so a dump of the database, a replica or a backup does not give them away; only a process
that has the key (the orchestrator and the workers) can read them. Without one they are
stored as they are, marked so, and whoever can read the database can read the secrets
(docs/sessions.md says so to operators).

Each sealed value is bound to where it is stored (``context``: the tenant and the name of a
secret, or the execution of a session), so a value copied into another row does not open.
A value stored before a key was set stays readable; one sealed under a key cannot be read
without it, and says so.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backends.errors import PermanentError

KEY_SETTING = "TRAWL_SECRETS_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
_PLAIN = "plain:"
_SEALED = "v1:"


class SecretCipher:
    """AES-256-GCM under one key; a fresh random nonce per value."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"{KEY_SETTING}: expected {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, text: str) -> SecretCipher | None:
        """The cipher of the key in ``text`` (base64, standard or URL-safe alphabet); None
        when it is empty. ValueError naming the setting when it is not a 32-byte key."""
        text = text.strip()
        if not text:
            return None
        try:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"{KEY_SETTING}: not base64; make one with: python -c 'import os, base64; "
                "print(base64.b64encode(os.urandom(32)).decode())'"
            ) from None
        return cls(key)

    def seal(self, plain: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), context.encode("utf-8"))
        return _SEALED + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, context: str) -> str:
        raw = base64.b64decode(stored[len(_SEALED) :])
        nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        return self._aead.decrypt(nonce, sealed, context.encode("utf-8")).decode("utf-8")


def seal(cipher: SecretCipher | None, plain: str, context: str) -> str:
    """``plain`` as it is stored: sealed under ``cipher``, or marked plain without one."""
    return _PLAIN + plain if cipher is None else cipher.seal(plain, context)


def unseal(cipher: SecretCipher | None, stored: str, context: str) -> str:
    """The value ``seal`` stored for ``context``. PermanentError ``secret_key`` when it was
    sealed and there is no key, or not under this key (or for another row)."""
    if stored.startswith(_PLAIN):
        return stored[len(_PLAIN) :]
    if not stored.startswith(_SEALED):
        raise PermanentError(f"{context}: stored in an unknown form", error_class="secret_key")
    if cipher is None:
        raise PermanentError(
            f"{context}: stored encrypted, and {KEY_SETTING} is not set here",
            error_class="secret_key",
        )
    try:
        return cipher.open(stored, context)
    except (InvalidTag, binascii.Error, ValueError):
        raise PermanentError(
            f"{context}: cannot be decrypted with this {KEY_SETTING} (was it changed?)",
            error_class="secret_key",
        ) from None
