"""Slack tokens encrypted at rest with Fernet, when SLACK_TOKEN_ENCRYPTION_KEY is set.

An encrypted value carries a prefix, so a token stored in plaintext before the key was configured still
reads as what it is: turning encryption on needs no migration, and a workspace's row is encrypted the
next time it is saved (a reinstall). The setting may list several keys, comma-separated: the first
encrypts, any of them decrypts, so a key can be replaced without making stored tokens unreadable."""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "enc:v1:"
MAKE_A_KEY = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


class TokenKeyError(ValueError):
    """The configured key is not a Fernet key. The message never contains the key."""


class TokenDecryptionError(RuntimeError):
    """A stored token cannot be read with the configured key. The message never contains the token."""


class TokenCipher:
    """Seals tokens before they are stored and opens them after they are read; without a key both are
    the identity, except that an encrypted value is never handed out as if it were a token."""

    def __init__(self, key: str | None) -> None:
        self._fernet = _fernet(key) if key is not None and key.strip() else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, token: str | None) -> str | None:
        if token is None or self._fernet is None or token.startswith(PREFIX):
            return token  # sealing twice would store a token whose plaintext is another ciphertext
        return PREFIX + self._fernet.encrypt(token.encode("utf-8")).decode("ascii")

    def open(self, stored: str | None) -> str | None:
        if stored is None or not stored.startswith(PREFIX):
            return stored
        if self._fernet is None:
            # Sending the ciphertext to Slack as a token would only fail later, and further from the cause.
            raise TokenDecryptionError(
                "slack: stored Slack tokens are encrypted but SLACK_TOKEN_ENCRYPTION_KEY is not set"
            )
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise TokenDecryptionError(
                "slack: a stored Slack token cannot be decrypted with SLACK_TOKEN_ENCRYPTION_KEY "
                "(was the key replaced? list the old key after the new one, comma-separated)"
            ) from None


def _fernet(setting: str) -> MultiFernet:
    keys = [key.strip() for key in setting.split(",") if key.strip()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        # `from None`: the underlying error may quote what it was given, and that is the key.
        raise TokenKeyError(
            f"slack: SLACK_TOKEN_ENCRYPTION_KEY is not a Fernet key (32 url-safe base64-encoded bytes; "
            f"make one with {MAKE_A_KEY})"
        ) from None


def check_key(setting: str) -> None:
    """Raises TokenKeyError unless every comma-separated part of `setting` is a Fernet key."""
    _fernet(setting)
