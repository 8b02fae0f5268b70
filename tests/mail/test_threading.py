"""RFC 5256 §3 threading: REFERENCES and ORDEREDSUBJECT on hand-built message sets."""

from __future__ import annotations

import datetime as dt

from postroom.mail.threading import ThreadInput, ordered_subject, references, render_threads

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def msg(number: int, message_id: str = "", refs: tuple[str, ...] = (), subject: str = "s",
        is_reply: bool = False, minutes: int | None = None) -> ThreadInput:
    sent = BASE + dt.timedelta(minutes=number if minutes is None else minutes)
    return ThreadInput(number, message_id, refs, subject, is_reply, sent)


def refs_render(*messages: ThreadInput) -> str:
    return render_threads(references(list(messages)))


def test_a_reply_chain_is_one_line() -> None:
    assert refs_render(msg(1, "a"), msg(2, "b", ("a",)), msg(3, "c", ("a", "b"))) == "(1 2 3)"


def test_siblings_are_nested_lists() -> None:
    assert refs_render(msg(1, "a"), msg(2, "b", ("a",)), msg(3, "c", ("a",))) == "(1 (2)(3))"


def test_a_missing_parent_with_two_children_stays_as_a_dummy_root() -> None:
    rendered = refs_render(msg(2, "b", ("x",), "p"), msg(3, "c", ("x",), "q"))
    assert rendered == "((2)(3))"


def test_a_missing_parent_with_one_child_is_pruned() -> None:
    assert refs_render(msg(2, "b", ("x",))) == "(2)"


def test_a_missing_parent_inside_a_thread_is_pruned() -> None:
    # 1 → (missing x) → 2: the dummy disappears and 2 becomes 1's child (step 3).
    assert refs_render(msg(1, "a"), msg(2, "b", ("a", "x"))) == "(1 2)"


def test_a_reply_without_references_joins_by_base_subject() -> None:
    rendered = refs_render(msg(1, "a", subject="hello"),
                           msg(2, "b", subject="hello", is_reply=True))
    assert rendered == "(1 2)"


def test_two_originals_with_one_subject_share_a_dummy() -> None:
    rendered = refs_render(msg(1, "a", subject="hello"), msg(2, "b", subject="hello"))
    assert rendered == "((1)(2))"


def test_different_subjects_stay_apart_in_date_order() -> None:
    rendered = refs_render(msg(1, "a", subject="x", minutes=5), msg(2, "b", subject="y",
                                                                     minutes=1))
    assert rendered == "(2)(1)"


def test_reference_loops_do_not_hang_or_lose_messages() -> None:
    rendered = refs_render(msg(1, "a", ("b",), "p"), msg(2, "b", ("a",), "q"))
    numbers = sorted(int(n) for n in rendered.replace("(", " ").replace(")", " ").split())
    assert numbers == [1, 2]


def test_a_duplicate_message_id_keeps_both_messages() -> None:
    rendered = refs_render(msg(1, "a", subject="p"), msg(2, "a", subject="q"))
    assert rendered == "(1)(2)"


def test_messages_without_ids_each_stand_alone() -> None:
    assert refs_render(msg(1, subject="p"), msg(2, subject="q")) == "(1)(2)"


def test_equal_dates_order_by_number() -> None:
    rendered = refs_render(msg(2, "b", subject="p", minutes=0),
                           msg(1, "a", subject="q", minutes=0))
    assert rendered == "(1)(2)"


def test_a_very_deep_chain_needs_no_recursion() -> None:
    depth = 20_000
    chain = [msg(1, "m1")]
    for number in range(2, depth + 1):
        chain.append(msg(number, f"m{number}", (f"m{number - 1}",)))
    rendered = refs_render(*chain)
    assert rendered.startswith("(1 2 3 ") and rendered.endswith(f" {depth})")


def test_ordered_subject_groups_by_base_subject() -> None:
    threads = ordered_subject([
        msg(1, subject="a"), msg(2, subject="b"), msg(3, subject="a"), msg(4, subject="a"),
        msg(5, subject="c"), msg(6, subject="b"),
    ])
    assert render_threads(threads) == "(1 (3)(4))(2 6)(5)"
