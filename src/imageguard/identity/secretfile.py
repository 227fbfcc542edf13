"""The secret file: the keys that sign tickets and share links, one per line, newest first.

Keeping secrets in a file of their own, instead of in Apache's configuration, means the
configuration can be read by many while the secrets are readable only by root and
Apache's group, and a key can be rotated by editing one file with no restart: the file
is re-read whenever it changes (one ``stat`` per request otherwise).

Rules, each enforced with a message naming the file:

* blank lines and lines starting with ``#`` are ignored;
* at least one secret, each at least 16 characters (surrounding spaces stripped);
* the file must not be readable by everyone (``chmod 640``, owned by root, group
  ``www-data``), since whoever reads it can sign any login.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from ..errors import ConfigError
from ..files.fileversion import Validator, validator

MIN_SECRET_LENGTH = 16


def check_secrets(secrets: Iterable[bytes], what: str = "signing secrets") -> tuple[bytes, ...]:
    """*secrets* as a tuple, if there is at least one and each has :data:`MIN_SECRET_LENGTH`
    bytes or more; :class:`ConfigError` otherwise.

    Every signer and verifier of tickets and share links calls this, whatever gave it
    its keys: an empty or short key can never sign or accept anything.
    """
    found = secrets if isinstance(secrets, tuple) else tuple(secrets)  # kept: callers compare it
    if not found:
        raise ConfigError(f"no {what}: at least one secret is needed")
    for secret in found:
        if not isinstance(secret, bytes):
            raise ConfigError(f"{what} must be bytes, not {type(secret).__name__}")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{what}: a secret needs at least {MIN_SECRET_LENGTH} bytes, one has {len(secret)}"
            )
    return found


def parse_secrets(text: str, source: str = "secret file") -> tuple[bytes, ...]:
    """The secrets in *text*, newest first; :class:`ConfigError` when unusable."""
    secrets = []
    for number, line in enumerate(text.splitlines(), start=1):
        secret = line.strip()
        if not secret or secret.startswith("#"):
            continue
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{source} line {number}: a secret needs at least {MIN_SECRET_LENGTH} characters"
            )
        secrets.append(secret.encode("utf-8"))
    if not secrets:
        raise ConfigError(f"{source} holds no secret")
    return check_secrets(secrets, source)


class SecretFile:
    """The secrets of one file, re-read when the file changes (thread-safe)."""

    def __init__(self, path: str) -> None:
        if not path:
            raise ConfigError("imageguard.tkt_secret_file is not set: name the secret file")
        self.path = path
        # (the file's validator, its secrets), replaced as one: a thread never pairs
        # one version's validator with another's secrets.
        self._known: tuple[Validator, tuple[bytes, ...]] | None = None

    def secrets(self) -> tuple[bytes, ...]:
        """The current secrets, newest first."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"secret file {self.path}: {exc.strerror}") from None
        current = validator(st)
        known = self._known
        if known is not None and known[0] == current:
            return known[1]
        if st.st_mode & stat.S_IROTH:
            raise ConfigError(
                f"secret file {self.path} is readable by everyone: chmod o-r (e.g. 640)"
            )
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"secret file {self.path}: {exc}") from None
        secrets = parse_secrets(text, f"secret file {self.path}")
        self._known = (current, secrets)
        return secrets
