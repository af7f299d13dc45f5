"""Replies as Teams messages: Adaptive Cards (schema 1.5 at most) for what has structure, text for the
rest, and every message within Teams' size limit however long the reply."""

from adapters.teams import render
from bot.core.messages import Attachment, Button, Reply, ReplyField


def _texts(card: dict) -> list[str]:
    return [block.get("text", "") for block in card["body"] if block["type"] == "TextBlock"]


def test_plain_text_is_a_text_message_shown_as_typed() -> None:
    activity = render.activity(Reply(text="Update #3 recorded.\nSay `/cda help` <b>now</b> & then"))
    assert activity["textFormat"] == "xml" and "attachments" not in activity
    assert activity["text"] == (
        "Update #3 recorded.<br>Say <code>/cda help</code> &lt;b&gt;now&lt;/b&gt; &amp; then"
    )


def test_a_reply_with_fields_is_a_card_with_a_fact_set_and_a_fallback() -> None:
    reply = Reply(
        text="Status — Alpha\nPhase: LL2",
        title="Status — Alpha",
        fields=[ReplyField(label="Phase", value="LL2"), ReplyField(label="Open blockers", value="2")],
    )
    activity = render.activity(reply)
    [attachment] = activity["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["body"][0] == {
        "type": "TextBlock",
        "text": "Status — Alpha",
        "wrap": True,
        "weight": "Bolder",
        "size": "Medium",
    }
    assert card["body"][1]["facts"] == [
        {"title": "Phase", "value": "LL2"},
        {"title": "Open blockers", "value": "2"},
    ]
    assert card["fallbackText"] == reply.text
    assert activity["summary"] == "Status — Alpha"


def test_a_button_is_an_action_submit_whose_data_comes_back_as_the_value() -> None:
    reply = Reply(
        text="New blocker #7",
        title="New blocker #7 — Alpha",
        buttons=[Button(label="Resolve", action="resolve_blocker", value="7", command="/cda resolve 7")],
    )
    card = render.activity(reply)["attachments"][0]["content"]
    assert card["actions"] == [
        {"type": "Action.Submit", "title": "Resolve", "data": {"cdaAction": "resolve_blocker", "value": "7"}}
    ]


def test_a_long_list_is_cut_to_fit_and_says_how_much_is_left_out() -> None:
    items = [f"#{n} blocker text that goes on for a while " + "x" * 200 for n in range(2000)]
    reply = Reply(text="Blockers\n" + "\n".join(items), title="Blockers", items=items)
    activity = render.activity(reply)
    assert render.size(activity) <= render.MAX_ACTIVITY_BYTES
    texts = _texts(activity["attachments"][0]["content"])
    kept = len(texts) - 2  # the title and the note
    assert 50 < kept < 2000
    assert texts[-1] == f"… (+{2000 - kept})"


def test_a_long_text_is_cut_never_refused() -> None:
    activity = render.activity(Reply(text="é" * 200_000))
    assert render.size(activity) <= render.MAX_ACTIVITY_BYTES
    assert activity["text"].endswith("…") and len(activity["text"]) > 30_000


def test_a_large_csv_keeps_the_rows_that_fit() -> None:
    content = "id,city,text\n" + "\n".join(f"{n},alpha,{'y' * 80}" for n in range(5000))
    reply = Reply(
        text="Export: 5000 updates",
        attachment=Attachment(filename="updates.csv", media_type="text/csv", content=content),
    )
    activity = render.activity(reply)
    assert render.size(activity) <= render.MAX_ACTIVITY_BYTES
    texts = _texts(activity["attachments"][0]["content"])
    assert "updates.csv" in texts and texts[-1].startswith("… (+")
    small = render.activity(
        reply.model_copy(
            update={"attachment": Attachment(filename="u.csv", media_type="text/csv", content="a,b\n1,2\n")}
        )
    )
    assert "1,2" in str(small) and "(+" not in str(small)
