"""Block Kit rendering inside Slack's limits, payload parsing, and the Slack configuration rules."""

from datetime import UTC, datetime, timedelta

import pytest

from adapters.slack import parse
from adapters.slack.config import SlackConfigError, slack_config
from adapters.slack.render import fallback_text, render_blocks
from bot.core.messages import Attachment, Button, Reply, ReplyField
from bot.runtime.settings import Settings

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_long_lists_stay_within_block_kit_limits() -> None:
    items = [f"#{n} " + "x" * 2500 for n in range(120)]
    reply = Reply(
        text="t" * 50_000,
        title="T" * 300,
        items=items,
        buttons=[Button(label="Resolve", action="resolve_blocker", value="1", command="/cda resolve 1")],
    )
    blocks = render_blocks(reply)
    assert len(blocks) <= 50
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section" and "text" in b)
    assert blocks[-1]["type"] == "actions"
    assert blocks[-2]["text"]["text"].startswith("… (+")
    assert len(fallback_text(reply)) <= 4000


def test_what_a_long_list_leaves_out_is_counted_in_no_language() -> None:
    # A Spanish list too long for Block Kit: the note on what is left out is read by Spanish and
    # Portuguese teams too, so it is a count, as Teams and WhatsApp write it, not English words.
    items = [f"#{n} " + "x" * 2500 for n in range(120)]  # one section each
    blocks = render_blocks(Reply(text="", title="Estado — 120 ciudades", items=items, language="es"))
    assert len(blocks) == 50  # the header, 48 items and the note: 72 lines left out
    assert blocks[-1]["text"]["text"] == "… (+72)"


def test_fields_are_split_ten_a_section_and_user_text_is_escaped() -> None:
    fields = [ReplyField(label=f"L{n}", value="<b> & <!channel>") for n in range(12)]
    blocks = render_blocks(Reply(text="status", title="Status", fields=fields))
    assert [len(b["fields"]) for b in blocks if "fields" in b] == [10, 2]
    assert blocks[1]["fields"][0]["text"] == "*L0*\n&lt;b&gt; &amp; &lt;!channel&gt;"


def test_the_notification_text_and_an_inline_csv_are_escaped_too() -> None:
    reply = Reply(
        text="<!here> & <@U1>",
        attachment=Attachment(filename="u.csv", media_type="text/csv", content="id,text\n1,<!channel>\n"),
    )
    assert fallback_text(reply) == "&lt;!here&gt; &amp; &lt;@U1&gt;"
    assert "```id,text\n1,&lt;!channel&gt;```" in render_blocks(reply)[-1]["text"]["text"]
    # Cut short, never in the middle of an entity.
    long = fallback_text(Reply(text="x" * 3893 + "&&"))
    assert long.endswith("x&amp;…") and len(long) <= 3900


def test_plain_reply_and_small_csv() -> None:
    blocks = render_blocks(Reply(text="Update #3 recorded for Alpha."))
    assert blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Update #3 recorded for Alpha."}}
    ]
    csv = Reply(
        text="2 updates", attachment=Attachment(filename="u.csv", media_type="text/csv", content="a,b\n")
    )
    assert "```a,b```" in render_blocks(csv)[-1]["text"]["text"]


def test_event_parsing_strips_the_mention_and_unescapes() -> None:
    body = {
        "team_id": "T1",
        "event_id": "Ev1",
        "event": {
            "type": "app_mention",
            "user": "U1",
            "channel": "C1",
            "text": "<@UB> update: A &amp; B &lt;3",
            "ts": "1.0",
        },
    }
    incoming = parse.from_event(body, "UB", NOW)
    assert incoming is not None
    assert incoming.text == "update: A & B <3"
    assert incoming.sender == "slack:T1:U1" and incoming.conversation == "slack:T1:C1"
    assert incoming.message_id == "Ev1" and incoming.reply_context["thread_ts"] == "1.0"
    assert incoming.reference == {"channel": "C1", "team_id": "T1"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),
        (
            {"slack_signing_secret": "s", "slack_bot_token": "xoxb-1"},
            "slack: on (single workspace, HTTP at POST /slack/events)",
        ),
        (
            {"slack_bot_token": "xoxb-1", "slack_app_token": "xapp-1"},
            "slack: on (single workspace, Socket Mode)",
        ),
        (
            {"slack_signing_secret": "s", "slack_client_id": "1", "slack_client_secret": "c"},
            "slack: on (multi-workspace OAuth, HTTP at POST /slack/events)",
        ),
    ],
)
def test_slack_modes(values: dict[str, str], expected: str | None) -> None:
    config = slack_config(Settings(_env_file=None, **values))  # type: ignore[call-arg]
    assert (config.describe() if config else None) == expected


def test_half_configured_slack_is_an_error() -> None:
    with pytest.raises(SlackConfigError, match="SLACK_CLIENT_SECRET"):
        slack_config(Settings(_env_file=None, slack_signing_secret="s", slack_client_id="1"))  # type: ignore[call-arg]


def test_the_manifest_asks_for_what_the_adapter_uses() -> None:
    from pathlib import Path

    import yaml

    from adapters.slack.adapter import BOT_SCOPES, SLASH_COMMAND

    manifest = yaml.safe_load((Path(__file__).resolve().parent.parent / "manifest.yml").read_text())
    assert manifest["oauth_config"]["scopes"]["bot"] == BOT_SCOPES
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == SLASH_COMMAND and command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert manifest["settings"]["event_subscriptions"]["request_url"].endswith("/slack/events")
    assert manifest["oauth_config"]["redirect_urls"][0].endswith("/slack/oauth_redirect")
    assert {"app_mention", "message.channels", "message.im", "app_uninstalled", "tokens_revoked"} <= set(
        manifest["settings"]["event_subscriptions"]["bot_events"]
    )


def test_a_slash_command_is_private_and_its_answer_expires_with_the_response_url() -> None:
    body = {
        "team_id": "T1",
        "user_id": "U1",
        "channel_id": "C1",
        "text": "status",
        "trigger_id": "tr1",
        "response_url": "https://hooks.slack.invalid/commands/1",
    }
    message = parse.from_command(body, NOW)
    assert message.private and not message.direct and not message.seen_by_others
    assert message.reply_context == {"channel": "C1", "user": "U1", "response_url": body["response_url"]}
    assert message.reply_expires_at == NOW + timedelta(minutes=30)
