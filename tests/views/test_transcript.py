"""Trace inputs/outputs become chat, text and JSON blocks, with long texts cut short."""

from __future__ import annotations

from core.views.transcript import blocks_for, make_text, normalize_role, trace_view


def test_messages_under_a_key_become_a_chat_and_strings_become_text():
    view = trace_view(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"response": "the answer"},
    )
    (chat,) = view.inputs
    assert chat.kind == "chat" and chat.title == "messages"
    assert [(t.role, t.text.full) for t in chat.turns] == [("user", "hi"), ("assistant", "yo")]
    (reply,) = view.outputs
    assert reply.kind == "text" and reply.title == "response" and reply.text.full == "the answer"


def test_a_bare_list_of_messages_and_openai_choices_are_chats():
    (chat,) = blocks_for([{"role": "human", "content": [{"type": "text", "text": "part"}]}])
    assert (
        chat.kind == "chat" and chat.turns[0].role == "user" and chat.turns[0].text.full == "part"
    )
    (resp,) = blocks_for({"choices": [{"message": {"role": "assistant", "content": "ok"}}]})
    assert resp.kind == "chat" and resp.turns[0].text.full == "ok"


def test_nested_values_are_json_and_scalars_are_grouped():
    blocks = blocks_for({"context": {"docs": [1, 2]}, "temperature": 0.2, "k": 3})
    assert [(b.kind, b.title) for b in blocks] == [("json", "context"), ("json", "other fields")]
    assert blocks[0].data == {"docs": [1, 2]}
    assert blocks[1].data == {"temperature": 0.2, "k": 3}


def test_plain_string_outputs_and_none():
    assert blocks_for(None) == []
    (b,) = blocks_for("just text", "outputs")
    assert b.kind == "text" and b.text.full == "just text" and not b.text.truncated


def test_long_text_is_truncated_with_the_full_text_kept():
    long = "word " * 1000
    t = make_text(long, limit=100)
    assert t.truncated and len(t.preview) <= 100 and t.full == long
    assert t.hidden_chars == len(long) - len(t.preview)
    (b,) = blocks_for({"response": long}, limit=100)
    assert b.text.truncated and b.text.full == long


def test_unknown_roles_and_unsafe_titles_are_flagged_for_text_only_display():
    (chat,) = blocks_for([{"role": "<b>boss</b>", "content": "x"}])
    assert chat.turns[0].role == "other" and chat.turns[0].original_role == "<b>boss</b>"
    assert normalize_role("AI") == "assistant" and normalize_role("function") == "tool"
    (b,) = blocks_for({"<img src=x onerror=alert(1)>": "v"})
    assert not b.title_is_safe
    (ok,) = blocks_for({"user_question": "v"})
    assert ok.title_is_safe


def test_non_text_message_content_is_shown_as_json_text():
    (chat,) = blocks_for([{"role": "tool", "content": {"result": 42}}])
    assert chat.turns[0].role == "tool" and chat.turns[0].text.full == '{"result": 42}'
