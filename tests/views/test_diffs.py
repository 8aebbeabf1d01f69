"""Word-level diffs of instructions and their escaped HTML rendering."""

from __future__ import annotations

import re

from core.views.diffs import (
    DiffOp,
    diff_html,
    diff_stats,
    inserted_text,
    new_text,
    old_text,
    tokenize,
    word_diff,
)


def test_tokenize_keeps_every_character():
    text = "Answer  Pass if\tthe reply,\nfollows {{ inputs }}."
    assert "".join(tokenize(text)) == text
    assert "  " in tokenize(text)


def test_identical_texts_are_one_equal_op():
    assert word_diff("a b c", "a b c") == [DiffOp("equal", "a b c")]
    stats = diff_stats(word_diff("a b c", "a b c"))
    assert not stats.changed
    assert stats.similarity == 1.0


def test_insertion_is_word_level():
    ops = word_diff("Answer Pass or Fail.", "Answer Pass or Fail carefully.")
    assert [op.kind for op in ops] == ["equal", "insert", "equal"]
    assert ops[1].text == " carefully"
    assert diff_stats(ops).words_added == 1


def test_deletion_and_replacement():
    ops = word_diff("the quick brown fox", "the slow brown fox")
    kinds = [op.kind for op in ops]
    assert kinds == ["equal", "delete", "insert", "equal"]
    assert ops[1].text == "quick" and ops[2].text == "slow"
    stats = diff_stats(ops)
    assert (stats.words_added, stats.words_removed, stats.words_unchanged) == (1, 1, 3)
    only_delete = word_diff("keep this and that", "keep that")
    assert {op.kind for op in only_delete} == {"equal", "delete"}


def test_ops_rebuild_both_texts_including_whitespace():
    old = "Rules:\n- one\n\n- two  words\n"
    new = "Rules:\n- one\n- three words\n\t- four\n"
    ops = word_diff(old, new)
    assert old_text(ops) == old
    assert new_text(ops) == new


def test_empty_sides():
    assert word_diff("", "new words") == [DiffOp("insert", "new words")]
    assert word_diff("old", "") == [DiffOp("delete", "old")]
    assert word_diff("", "") == []
    assert diff_stats([]).similarity == 1.0


def test_inserted_text_summary_is_cut():
    ops = word_diff("a", 'a - If the response contains "refund", the verdict is fail.')
    assert inserted_text(ops).startswith("- If the response")
    assert len(inserted_text(ops, limit=10)) == 10


def test_html_escapes_every_text():
    old = "Judge <b>this</b> & that"
    new = "Judge <script>alert('x')</script> & that \"quoted\""
    out = diff_html(word_diff(old, new))
    assert "<script" not in out and "<b>" not in out
    assert "&lt;" in out and "&gt;" in out and "&amp;" in out and "&quot;quoted&quot;" in out
    assert "&#x27;x&#x27;" in out
    assert "<ins " in out and "<del " in out
    # The only tags are ours.
    tags = set(re.findall(r"</?([a-z]+)", out))
    assert tags <= {"div", "ins", "del"}
