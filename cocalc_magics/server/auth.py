"""API keys: their format, their hashes and the ``Authorization`` header.

A current CoCalc key is ``sk-`` followed by 16 random letters and digits and 6
base-62 characters that encode the key's database id, so the server finds the row
without scanning. Only a SHA-256 hash of the whole key is stored. A slow password
hash is not needed here because the 16 random characters already carry about 95 bits
of entropy, far beyond what guessing against a hash could search.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from cocalc_magics.server.errors import MethodError
from cocalc_magics.server.store import ApiKeyRow, Store, now_ms

BASE62 = string.digits + string.ascii_letters
RANDOM_LENGTH = 16
ID_LENGTH = 6

NO_KEY = "You must provide authentication via an API key."
HUB_INVALID_KEY = (
    "must be signed in and MUST provide an api key (cookies are not allowed)"
)
PROJECT_INVALID_KEY = "must sign in as project or account"


@dataclass(frozen=True)
class Caller:
    """The owner of a valid key; ``project_id`` is set for project keys only."""

    account_id: str
    project_id: str | None
    key_id: int


def encode_id(number: int) -> str:
    """Encode a database id in exactly six base-62 characters."""
    digits = []
    for _ in range(ID_LENGTH):
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    if number:
        raise ValueError("API key id does not fit in six base-62 characters")
    return "".join(reversed(digits))


def decode_id(text: str) -> int | None:
    """Decode the id at the end of a key, or return None if it is not base-62."""
    number = 0
    for char in text:
        position = BASE62.find(char)
        if position < 0:
            return None
        number = number * 62 + position
    return number


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def truncate_key(key: str) -> str:
    """Return the displayable form of a key: its start and its last six characters."""
    return f"{key[:3]}...{key[-ID_LENGTH:]}"


def create_api_key(
    store: Store,
    account_id: str,
    *,
    project_id: str | None = None,
    name: str = "",
    expire_ms: int | None = None,
) -> tuple[int, str]:
    """Create a key in the store and return its id and its secret text."""
    key_id = store.insert_api_key(account_id, project_id, name, expire_ms)
    random_part = "".join(
        secrets.choice(string.ascii_letters + string.digits)
        for _ in range(RANDOM_LENGTH)
    )
    key = f"sk-{random_part}{encode_id(key_id)}"
    store.set_api_key_secret(key_id, hash_key(key), truncate_key(key))
    return key_id, key


def parse_authorization(header: str | None) -> str:
    """Extract the key from an ``Authorization`` header value.

    Raises
    ------
    MethodError
        With CoCalc's exact text when the header is missing or its scheme unknown.
    """
    if header is None:
        raise MethodError(NO_KEY)
    words = header.split()
    if not words:
        raise MethodError(NO_KEY)

    # CoCalc compares the scheme word exactly, so "bearer" is an unknown scheme.
    scheme = words[0]
    credential = words[1] if len(words) > 1 else ""
    if scheme == "Bearer":
        return credential
    if scheme == "Basic":
        try:
            decoded = base64.b64decode(credential, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.split(":", 1)[0]
    raise MethodError(f"Unknown authorization type '{scheme}'")


def lookup_key(store: Store, key: str) -> Caller | None:
    """Return the caller a key belongs to, or None for an unknown or dead key.

    An expired key, or a project key whose creator is no longer a collaborator, is
    deleted on sight, as CoCalc does.
    """
    if not key.startswith("sk-") or len(key) != 3 + RANDOM_LENGTH + ID_LENGTH:
        return None
    key_id = decode_id(key[-ID_LENGTH:])
    if key_id is None:
        return None
    row = store.get_api_key(key_id)
    if row is None or not row.secret_hash:
        return None
    if not hmac.compare_digest(row.secret_hash, hash_key(key)):
        return None
    if not key_is_alive(store, row):
        store.delete_api_key(row.id)
        return None
    return Caller(account_id=row.account_id, project_id=row.project_id, key_id=row.id)


def key_is_alive(store: Store, row: ApiKeyRow) -> bool:
    if row.expire_ms is not None and row.expire_ms <= now_ms():
        return False
    if store.get_account(row.account_id) is None:
        return False
    if row.project_id is not None:
        return store.is_collaborator(row.project_id, row.account_id)
    return True
