"""Slack tokens at rest: encrypted with SLACK_TOKEN_ENCRYPTION_KEY, plaintext without it, plaintext rows
from before the key still readable, and a wrong or missing key a clear error that shows no token."""

from typing import Any

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Bot, Installation
from sqlalchemy import Engine, select

from adapters.slack.config import SlackConfigError, slack_config
from adapters.slack.oauth_stores import TOKEN_FIELDS, InstallationStore, TokenTooLong
from adapters.slack.token_crypto import PREFIX, TokenCipher, TokenDecryptionError, TokenKeyError
from bot.runtime.settings import Settings
from store.slack_oauth_tables import slack_bots, slack_installations

CLIENT_ID = "1111.2222"
TOKENS = {
    "bot_token": "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "bot_refresh_token": "xoxe-1-My0xLTEyMzQ1Njc4OTAxMjMtQUJDREVGR0hJSktMTU5PUA",
    "user_token": "xoxp-1234567890123-1234567890123-1234567890123-0123456789abcdef0123456789ab",
    "user_refresh_token": "xoxe-1-My0xLTEyMzQ1Njc4OTAxMjMtVVNFUlJFRlJFU0hUT0tFTg",
}


def _key() -> str:
    return Fernet.generate_key().decode()


def _installation(**tokens: str) -> Installation:
    return Installation(
        app_id="A0002",
        team_id="T0002",
        team_name="Two",
        bot_id="B0002",
        bot_user_id="UBOT0002",
        bot_scopes=["chat:write"],
        user_id="UINSTALLER",
        installed_at=1_790_000_000.0,
        **{**TOKENS, **tokens},  # type: ignore[arg-type]
    )


def _raw(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(select(table)).mappings()]


async def _find(store: InstallationStore) -> tuple[Installation | None, Bot | None]:
    installation = await store.async_find_installation(enterprise_id=None, team_id="T0002")
    bot = await store.async_find_bot(enterprise_id=None, team_id="T0002")
    return installation, bot


def _tokens(record: Installation | Bot | None) -> dict[str, str | None]:
    assert record is not None
    return {name: getattr(record, name) for name in TOKEN_FIELDS if hasattr(record, name)}


# -- the cipher ---------------------------------------------------------------------------------------


def test_sealed_tokens_carry_the_prefix_and_open_to_what_was_sealed() -> None:
    cipher = TokenCipher(_key())
    sealed = cipher.seal(TOKENS["bot_token"])
    assert sealed is not None and sealed.startswith(PREFIX) and "xoxb" not in sealed
    assert cipher.seal(sealed) == sealed  # never sealed twice
    assert cipher.open(sealed) == TOKENS["bot_token"]
    assert cipher.seal(None) is None and cipher.open(None) is None
    assert cipher.open("xoxb-plain") == "xoxb-plain"  # stored before the key was set


def test_without_a_key_tokens_pass_through() -> None:
    cipher = TokenCipher(None)
    assert not cipher.enabled
    assert cipher.seal("xoxb-plain") == "xoxb-plain"
    assert cipher.open("xoxb-plain") == "xoxb-plain"


@pytest.mark.parametrize("key", ["not-a-key", "c2hvcnQ=", "é" * 44, ","])
def test_a_value_that_is_not_a_fernet_key_is_refused_without_repeating_it(key: str) -> None:
    with pytest.raises(TokenKeyError) as refused:
        TokenCipher(key)
    message = str(refused.value)
    assert "SLACK_TOKEN_ENCRYPTION_KEY" in message and "\n" not in message
    assert key not in message


def test_a_wrong_key_is_a_clear_error_that_shows_no_token() -> None:
    sealed = TokenCipher(_key()).seal(TOKENS["bot_token"])
    with pytest.raises(TokenDecryptionError) as refused:
        TokenCipher(_key()).open(sealed)
    message = str(refused.value)
    assert "cannot be decrypted with SLACK_TOKEN_ENCRYPTION_KEY" in message
    assert "xox" not in message and str(sealed)[len(PREFIX) :] not in message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_an_encrypted_token_without_a_key_is_an_error_not_a_token() -> None:
    sealed = TokenCipher(_key()).seal(TOKENS["bot_token"])
    with pytest.raises(TokenDecryptionError, match="SLACK_TOKEN_ENCRYPTION_KEY is not set"):
        TokenCipher(None).open(sealed)


def test_a_damaged_ciphertext_is_a_decryption_error() -> None:
    cipher = TokenCipher(_key())
    for damaged in (PREFIX, PREFIX + "garbage", PREFIX + "ünïcode"):
        with pytest.raises(TokenDecryptionError):
            cipher.open(damaged)


def test_a_replaced_key_listed_after_the_new_one_still_reads_old_tokens() -> None:
    old, new = _key(), _key()
    sealed_old = TokenCipher(old).seal("xoxb-old")
    both = TokenCipher(f"{new}, {old}")
    assert both.open(sealed_old) == "xoxb-old"
    assert TokenCipher(new).open(both.seal("xoxb-new")) == "xoxb-new"  # the first key seals


# -- configuration ------------------------------------------------------------------------------------


def _oauth_settings(**extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        slack_signing_secret="s",
        slack_client_id="1111.2222",
        slack_client_secret="c",
        **extra,
    )


def test_an_invalid_key_is_a_configuration_error_of_one_line() -> None:
    with pytest.raises(SlackConfigError) as refused:
        slack_config(_oauth_settings(slack_token_encryption_key="hunter2-not-a-fernet-key"))
    message = str(refused.value)
    assert message.startswith("slack: SLACK_TOKEN_ENCRYPTION_KEY is not a Fernet key")
    assert "\n" not in message and "hunter2" not in message


def test_a_valid_key_reaches_the_config_and_stays_out_of_its_repr() -> None:
    key = _key()
    config = slack_config(_oauth_settings(slack_token_encryption_key=key))
    assert config is not None and config.token_encryption_key == key
    assert key not in repr(config)
    assert config.describe() == (
        "slack: on (multi-workspace OAuth, HTTP at POST /slack/events, stored tokens encrypted)"
    )
    plain = slack_config(_oauth_settings())
    assert plain is not None and plain.token_encryption_key is None
    assert plain.describe() == "slack: on (multi-workspace OAuth, HTTP at POST /slack/events)"


# -- the installation store on the database -----------------------------------------------------------


async def test_with_a_key_tokens_are_unreadable_in_the_tables_and_round_trip(engine: Engine) -> None:
    store = InstallationStore(CLIENT_ID, engine, _key())
    installation = _installation()
    await store.async_save(installation)
    assert _tokens(installation) == TOKENS  # the object Bolt keeps using is not changed

    [installation_row] = _raw(engine, slack_installations)
    [bot_row] = _raw(engine, slack_bots)
    for row in (installation_row, bot_row):
        for name in TOKEN_FIELDS:
            if name in row:
                assert str(row[name]).startswith(PREFIX), name
        for token in TOKENS.values():
            assert token not in str(row)

    found, bot = await _find(store)
    assert _tokens(found) == TOKENS
    assert _tokens(bot) == {name: TOKENS[name] for name in ("bot_token", "bot_refresh_token")}
    await store.async_check_key()


async def test_saving_a_bot_alone_encrypts_it_too(engine: Engine) -> None:
    store = InstallationStore(CLIENT_ID, engine, _key())
    await store.async_save_bot(_installation().to_bot())
    [row] = _raw(engine, slack_bots)
    assert str(row["bot_token"]).startswith(PREFIX)
    _, bot = await _find(store)
    assert bot is not None and bot.bot_token == TOKENS["bot_token"]


async def test_without_a_key_tokens_are_stored_as_before(engine: Engine) -> None:
    store = InstallationStore(CLIENT_ID, engine)
    await store.async_save(_installation())
    [row] = _raw(engine, slack_installations)
    assert row["bot_token"] == TOKENS["bot_token"]
    found, _ = await _find(store)
    assert _tokens(found) == TOKENS


async def test_plaintext_rows_from_before_the_key_still_load(engine: Engine) -> None:
    await InstallationStore(CLIENT_ID, engine).async_save(_installation())
    store = InstallationStore(CLIENT_ID, engine, _key())
    await store.async_check_key()
    found, bot = await _find(store)
    assert _tokens(found) == TOKENS
    assert bot is not None and bot.bot_token == TOKENS["bot_token"]

    # A reinstall writes a newer row, encrypted; the newest is the one read.
    await store.async_save(_installation(bot_token="xoxb-reinstalled"))
    newest = max(_raw(engine, slack_installations), key=lambda row: row["id"])
    assert str(newest["bot_token"]).startswith(PREFIX)
    found, bot = await _find(store)
    assert found is not None and found.bot_token == "xoxb-reinstalled"
    assert bot is not None and bot.bot_token == "xoxb-reinstalled"


async def test_a_wrong_key_fails_loudly_on_load_and_at_the_start_check(engine: Engine) -> None:
    await InstallationStore(CLIENT_ID, engine, _key()).async_save(_installation())
    wrong = InstallationStore(CLIENT_ID, engine, _key())
    with pytest.raises(TokenDecryptionError) as refused:
        await wrong.async_find_installation(enterprise_id=None, team_id="T0002")
    assert not any(token in str(refused.value) for token in TOKENS.values())
    with pytest.raises(TokenDecryptionError):
        await wrong.async_find_bot(enterprise_id=None, team_id="T0002")
    with pytest.raises(TokenDecryptionError):
        await wrong.async_check_key()
    with pytest.raises(TokenDecryptionError, match="not set"):
        await InstallationStore(CLIENT_ID, engine).async_check_key()


async def test_a_token_too_long_for_its_column_once_encrypted_is_refused(engine: Engine) -> None:
    store = InstallationStore(CLIENT_ID, engine, _key())
    long_token = "xoxe.xoxb-1-" + "A" * 120
    with pytest.raises(TokenTooLong) as refused:
        await store.async_save(_installation(bot_refresh_token=long_token))
    assert "bot_refresh_token" in str(refused.value) and long_token not in str(refused.value)
    assert _raw(engine, slack_installations) == []
