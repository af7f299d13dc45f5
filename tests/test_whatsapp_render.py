"""WhatsApp text: *bold* titles, fields and short lists, and long replies cut into ordered parts of
at most 1,600 characters at line, then sentence, then word boundaries."""

from hypothesis import given
from hypothesis import strategies as st

from adapters.whatsapp.render import MAX_CSV, MAX_PART, parts, render
from bot.core.messages import Attachment, Button, Reply, ReplyField


def test_a_status_reads_as_whatsapp_text() -> None:
    reply = Reply(
        text="Status — Alpha\nPhase: LL2",
        title="Status — Alpha",
        fields=[
            ReplyField(label="Phase", value="Learning Loop 2"),
            ReplyField(label="Open blockers", value="1"),
        ],
    )
    assert render(reply) == "*Status — Alpha*\n*Phase*: Learning Loop 2\n*Open blockers*: 1"


def test_items_are_a_bulleted_list_and_buttons_the_command_to_type() -> None:
    reply = Reply(
        text="Open blockers",
        title="Open blockers",
        items=["#3 waiting on the 311 export"],
        buttons=[Button(label="Resolve #3", action="resolve", value="3", command="/cda resolve 3")],
    )
    assert (
        render(reply)
        == "*Open blockers*\n• #3 waiting on the 311 export\n→ Resolve #3: reply `/cda resolve 3`"
    )


def test_plain_text_stays_as_it_is_and_markdown_bold_becomes_whatsapp_bold() -> None:
    assert render(Reply(text="Update #4 recorded for **Alpha**.")) == "Update #4 recorded for *Alpha*."


def test_an_attachment_is_shown_as_a_monospace_block() -> None:
    reply = Reply(
        text="Export", attachment=Attachment(filename="u.csv", media_type="text/csv", content="a,b\n")
    )
    assert render(reply).endswith("*u.csv*\n```\na,b\n```")


def test_a_short_text_is_one_part() -> None:
    assert parts("hello") == ["hello"]


def test_3500_characters_of_lines_are_three_parts_cut_between_lines() -> None:
    lines = [f"line {n:03d} " + "x" * 60 for n in range(50)]  # 50 × 69 = 3,450 + newlines
    text = "\n".join(lines)
    found = parts(text)
    assert len(found) == 3
    assert all(len(p) <= MAX_PART for p in found)
    assert "\n".join(found) == text  # nothing lost, nothing reordered
    assert all(p.startswith("line ") for p in found)


def test_one_long_paragraph_is_cut_between_sentences() -> None:
    text = " ".join(f"Sentence {n} says something useful about the intake form." for n in range(80))
    found = parts(text)
    assert len(found) >= 3
    assert all(len(p) <= MAX_PART and p.endswith(".") for p in found)
    assert " ".join(found) == text


def test_a_word_longer_than_a_part_is_cut() -> None:
    found = parts("y" * 4000)
    assert [len(p) for p in found] == [1600, 1600, 800]


@given(st.text(alphabet=st.sampled_from("ab .\n!?"), min_size=0, max_size=5000))
def test_no_part_is_empty_or_too_long_and_the_words_keep_their_order(text: str) -> None:
    found = parts(text, limit=200)
    assert found and all(0 < len(p) <= 200 for p in found)
    assert "".join("".join(found).split()) == "".join(text.split()) or not text.strip()


def test_a_monospace_block_cut_between_parts_is_closed_and_opened_again_in_each() -> None:
    rows = "".join(f"{n},alpha,mapped the bus stops and checked the intake form\n" for n in range(100))
    reply = Reply(text="Export", attachment=Attachment(filename="u.csv", media_type="text/csv", content=rows))
    found = parts(render(reply))
    assert len(found) >= 3 and all(len(p) <= MAX_PART for p in found)
    # WhatsApp shows a ``` left open in a message as it is, and the rows after it in the usual font.
    assert all(p.count("```") == 2 for p in found), [p.count("```") for p in found]
    assert all(p.endswith("\n```") for p in found)
    assert all(p.startswith("```\n") for p in found[1:])
    lines = [line for p in found for line in p.splitlines() if line != "```"]
    assert lines == [line for line in render(reply).splitlines() if line != "```"]  # all, in order


def test_a_monospace_block_that_starts_at_the_end_of_a_part_starts_in_the_next() -> None:
    rows = "\n".join(f"{n},alpha,checked the intake form" for n in range(60))
    found = parts("a" * 1570 + "\n```\n" + rows + "\n```")
    assert found[0] == "a" * 1570
    assert all(p.startswith("```\n") and p.endswith("\n```") for p in found[1:])


def test_a_large_export_shows_the_rows_that_fit_in_a_few_messages_and_counts_the_rest() -> None:
    """300 updates are 60 messages inline, 100,000 a thousand: the first rows, then how many more."""
    rows = [
        f"{n},alpha,2026-11-30T12:00:00+00:00,ana,whatsapp,mapped the stops on route {n}" for n in range(300)
    ]
    csv = "\n".join(rows) + "\n"
    reply = Reply(text="Export", attachment=Attachment(filename="u.csv", media_type="text/csv", content=csv))
    found = parts(render(reply))
    assert len(found) <= MAX_CSV // MAX_PART + 2
    lines = [line for p in found for line in p.splitlines() if line not in ("```", "*u.csv*", "Export")]
    kept = lines[:-1]
    assert kept == rows[: len(kept)] and 0 < len(kept) < 300  # whole rows, in order, from the first
    assert lines[-1] == f"… (+{300 - len(kept)})"
