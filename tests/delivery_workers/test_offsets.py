"""Which offsets the delivery worker commits, through rebalances (no broker needed)."""

from __future__ import annotations

from delivery_workers.offsets import OffsetTracker

TP = ("durian.deliveries", 0)
OTHER = ("durian.deliveries", 1)


def test_offsets_commit_only_below_the_lowest_job_in_flight() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epochs = {offset: tracker.add(TP, offset) for offset in range(5)}
    assert None not in epochs.values()
    tracker.done(TP, 1, epochs[1] or 0)
    tracker.done(TP, 2, epochs[2] or 0)
    assert tracker.committable() == {TP: 0}
    tracker.done(TP, 0, epochs[0] or 0)
    assert tracker.committable() == {TP: 3}
    tracker.mark_committed({TP: 3})
    assert tracker.committable() == {}
    tracker.done(TP, 4, epochs[4] or 0)
    tracker.done(TP, 3, epochs[3] or 0)
    assert tracker.committable() == {TP: 5}
    tracker.forget([TP])
    assert tracker.committable() == {} and tracker.in_flight() == 0


def test_records_of_a_partition_not_assigned_are_not_tracked() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    assert tracker.add(OTHER, 7) is None
    tracker.add(TP, 0)
    tracker.forget([TP])
    # A record of the revoked partition read in the same batch: not this worker's.
    assert tracker.add(TP, 1) is None
    assert tracker.committable() == {} and tracker.in_flight() == 0


def test_commits_cover_only_assigned_partitions() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP, OTHER])
    tracker.add(TP, 0)
    tracker.add(OTHER, 0)
    tracker.forget([OTHER])
    assert tracker.committable() == {TP: 0}
    assert tracker.committable([OTHER]) == {}


def test_a_job_from_before_a_revocation_cannot_finish_the_new_copy() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    old = tracker.add(TP, 10)
    assert old is not None
    tracker.forget([TP])
    tracker.assign([TP])  # the partition comes back: offset 10 is read again
    new = tracker.add(TP, 10)
    assert new is not None and new != old
    tracker.done(TP, 10, old)  # the first copy finishes late
    assert tracker.committable() == {TP: 10}, "the new copy is still in flight"
    tracker.done(TP, 10, new)
    assert tracker.committable() == {TP: 11}


def test_the_commit_at_revocation_is_sent_even_if_it_was_sent_before() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epoch = tracker.add(TP, 0)
    tracker.done(TP, 0, epoch or 0)
    tracker.mark_committed({TP: 1})
    assert tracker.committable([TP]) == {}
    # Another member may have moved the group's offset since: say it again.
    assert tracker.committable([TP], force=True) == {TP: 1}


def test_a_new_assignment_forgets_what_was_committed_before() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    epoch = tracker.add(TP, 4)
    tracker.done(TP, 4, epoch or 0)
    tracker.mark_committed({TP: 5})
    tracker.assign([TP])  # assigned again without a revocation seen (a lost partition)
    epoch = tracker.add(TP, 4)
    tracker.done(TP, 4, epoch or 0)
    assert tracker.committable() == {TP: 5}
