"""The offset-gap guard: holes are read again until they fill or the patience runs out."""

from __future__ import annotations

import logging

import pytest

from durian.gap import GapGuard

TP = ("durian.deliveries", 3)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_records_in_order_are_all_kept() -> None:
    guard = GapGuard(5.0)
    guard.expect(TP, 10)
    assert guard.check(TP, [10, 11, 12]) == 3
    assert guard.next_offset(TP) == 13
    assert guard.check(TP, [13]) == 1


def test_a_record_past_the_expected_one_stops_the_batch_at_the_hole() -> None:
    guard = GapGuard(5.0)
    guard.expect(TP, 10)
    assert guard.check(TP, [10, 11, 13, 14]) == 2
    assert guard.next_offset(TP) == 12  # seek back here
    assert guard.waiting(TP)
    assert guard.stats.rewinds == 1


def test_a_batch_that_starts_past_the_position_keeps_nothing() -> None:
    guard = GapGuard(5.0)
    guard.expect(TP, 4213)
    assert guard.check(TP, [4214, 4215]) == 0
    assert guard.next_offset(TP) == 4213


def test_a_hole_that_fills_is_read_in_order() -> None:
    guard = GapGuard(5.0)
    guard.expect(TP, 0)
    assert guard.check(TP, [0, 2]) == 1
    assert guard.check(TP, [2]) == 0  # fetched again: still missing
    assert guard.check(TP, [1, 2, 3]) == 3
    assert not guard.waiting(TP)
    assert guard.next_offset(TP) == 4
    assert (guard.stats.rewinds, guard.stats.filled, guard.stats.accepted) == (2, 1, 0)


def test_a_hole_that_outlasts_the_patience_is_accepted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    guard = GapGuard(5.0, clock=clock, name="deliver")
    guard.expect(TP, 7)
    assert guard.check(TP, [9]) == 0
    clock.now += 4.9
    assert guard.check(TP, [9]) == 0
    clock.now += 0.2
    with caplog.at_level(logging.WARNING, logger="durian.gap"):
        assert guard.check(TP, [9, 10]) == 2
    assert guard.next_offset(TP) == 11
    assert guard.stats.accepted == 1 and not guard.waiting(TP)
    assert "deliver: durian.deliveries[3]: offsets 7..8 did not appear within 5.0 s" in caplog.text


def test_a_new_hole_gets_its_own_patience() -> None:
    clock = Clock()
    guard = GapGuard(1.0, clock=clock)
    guard.expect(TP, 0)
    assert guard.check(TP, [1]) == 0
    clock.now += 2
    assert guard.check(TP, [1, 3]) == 1  # 0 accepted; the hole at 2 is new: wait for it
    assert guard.next_offset(TP) == 2 and guard.waiting(TP)


def test_an_unknown_position_is_set_by_the_first_record() -> None:
    guard = GapGuard(5.0)
    assert guard.check(TP, [42, 43]) == 2
    assert guard.next_offset(TP) == 44
    guard.expect(TP, -1001)  # librdkafka's "invalid offset": unknown again
    assert guard.next_offset(TP) is None


def test_records_read_again_after_a_seek_back_are_kept() -> None:
    guard = GapGuard(5.0)
    guard.expect(TP, 0)
    assert guard.check(TP, [0, 1, 2, 3]) == 4
    assert guard.check(TP, [1, 2, 3, 4]) == 4
    assert guard.next_offset(TP) == 5


def test_without_patience_nothing_is_held_back_but_positions_are_tracked() -> None:
    guard = GapGuard(0.0)
    guard.expect(TP, 0)
    assert not guard.enabled
    assert guard.check(TP, [0, 5, 9]) == 3
    assert guard.next_offset(TP) == 10
    assert guard.stats.rewinds == 0


def test_forget_drops_positions_and_open_holes() -> None:
    guard = GapGuard(5.0)
    guard.expect(TP, 0)
    guard.check(TP, [2])
    guard.forget([TP])
    assert guard.next_offset(TP) is None and not guard.waiting(TP)
