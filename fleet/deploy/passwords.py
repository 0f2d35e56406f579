"""Random client passwords and mosquitto's password file, written in pure Python.

mosquitto 2.0 stores ``username:$7$<iterations>$<base64 salt>$<base64 hash>`` per line, where
the hash is PBKDF2-HMAC-SHA512 of the password with a 12-byte salt (what ``mosquitto_passwd``
writes; 101 iterations is its default). The passwords generated here carry 192 random bits, so
the iteration count is not what protects them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

ITERATIONS = 101
"""PBKDF2 iterations, mosquitto_passwd's default."""
SALT_BYTES = 12


def new_password() -> str:
    """A random password of 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The ``$7$`` hash of ``password`` as mosquitto 2.0 stores it in a password file."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as mosquitto checks it)."""
    _, kind, iterations, salt, _ = stored.split("$")
    if kind != "7":
        raise ValueError(f"not a mosquitto $7$ hash: {stored[:8]}...")
    return secrets.compare_digest(hash_password(password, base64.b64decode(salt), int(iterations)), stored)


def password_file(passwords: dict[str, str]) -> str:
    """The text of a mosquitto password file for ``{username: password}``."""
    return "".join(f"{user}:{hash_password(pw)}\n" for user, pw in passwords.items())
