"""``combine_lanes``: one batch takes the chosen lane's work, then fills up from the lanes of
lower priority (never higher), with one ``batch_start`` call per part and one batch end."""

from __future__ import annotations

from tickline.core.processor import EventProcessor


def make(combine: bool) -> tuple[EventProcessor[int], list[int], list[int], list[tuple[int, int]]]:
    seen: list[int] = []
    ends: list[int] = []
    parts: list[tuple[int, int]] = []
    proc: EventProcessor[int] = EventProcessor(
        lanes=2, max_batch=4, starvation_bound=1, combine_lanes=combine, policy="reject",
        batch_end=ends.append,
        batch_start=lambda lane, segs, _t: parts.append((lane, sum(c for c, _ in segs))))
    proc.register(int, seen.append)
    return proc, seen, ends, parts


def test_a_batch_fills_up_from_the_lower_lane() -> None:
    proc, seen, ends, parts = make(True)
    proc.submit_many([10, 11, 12], lane=1)
    proc.submit_many([1, 2], lane=0)
    assert proc.poll() == 4
    assert seen == [1, 2, 10, 11] and ends == [4] and parts == [(0, 2), (1, 2)]
    proc.drain()
    assert seen == [1, 2, 10, 11, 12]
    proc.check()


def test_a_starvation_override_batch_takes_no_higher_lane_work() -> None:
    proc, seen, ends, parts = make(True)
    proc.submit_many([1, 2, 3, 4, 5], lane=0)
    proc.submit(10, lane=1)
    proc.poll()  # lane 0, full batch: lane 1 passed over once
    assert seen == [1, 2, 3, 4]
    proc.poll()  # starvation bound 1: lane 1 now, and lane 0's 5 is not appended after it
    assert seen == [1, 2, 3, 4, 10] and parts[-1] == (1, 1)
    proc.poll()
    assert seen[-1] == 5 and ends == [4, 1, 1]


def test_without_combining_each_lane_is_its_own_batch() -> None:
    proc, seen, ends, _ = make(False)
    proc.submit_many([10, 11], lane=1)
    proc.submit(1, lane=0)
    proc.drain()
    assert seen == [1, 10, 11] and ends == [1, 2]
