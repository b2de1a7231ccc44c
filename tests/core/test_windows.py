import json

import numpy as np
import pytest

from driftstream.core.windows import CountClock, TimeClock, clock_from_state


def run(clock, batches):
    """Feed batches the way the monitor does; return closed windows as tuples."""
    closed = []
    for ts in batches:
        for seg in clock.plan(ts):
            clock.add(ts[seg.start : seg.stop])
            if seg.closes:
                b = clock.close()
                closed.append((b.start, b.end, b.count, float(ts[seg.trigger])))
    return closed


def splits(ts, rng):
    cuts = np.sort(rng.choice(np.arange(1, len(ts)), size=rng.integers(0, 12), replace=False))
    return np.split(ts, cuts)


@pytest.mark.parametrize("seed", range(5))
def test_count_windows_do_not_depend_on_batching(seed):
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.exponential(size=1000))
    whole = run(CountClock(97), [ts])
    assert len(whole) == 1000 // 97
    assert all(count == 97 for _, _, count, _ in whole)
    assert run(CountClock(97), splits(ts, rng)) == whole


@pytest.mark.parametrize("seed", range(5))
def test_time_windows_do_not_depend_on_batching(seed):
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000 + np.cumsum(rng.exponential(scale=0.5, size=2000))
    ts[rng.choice(2000, 50)] -= 30.0  # late events
    whole = run(TimeClock(60.0), [ts])
    assert run(TimeClock(60.0), splits(ts, rng)) == whole
    assert sum(count for _, _, count, _ in whole) < 2000
    for start, end, _, trigger_ts in whole:
        assert end - start == 60.0 and start % 60.0 == 0
        assert trigger_ts >= end  # the watermark passed the end


def test_time_window_skips_empty_windows_and_counts_late_events():
    clock = TimeClock(10.0)
    closed = run(clock, [np.array([1.0, 2.0, 35.0, 3.0, 36.0, 41.0])])
    assert closed == [(0.0, 10.0, 2, 35.0), (30.0, 40.0, 3, 41.0)]
    assert clock.late == 1


@pytest.mark.parametrize("make", [lambda: CountClock(10), lambda: TimeClock(5.0)])
def test_clock_state_round_trip_continues_identically(make):
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.exponential(size=300))
    first, second = ts[:137], ts[137:]
    uninterrupted = make()
    expected = run(uninterrupted, [first, second])
    clock = make()
    got = run(clock, [first])
    restored = clock_from_state(json.loads(json.dumps(clock.to_state())))
    got += run(restored, [second])
    assert got == expected
    assert restored.to_state() == uninterrupted.to_state()


def test_bad_clock_state_names_the_problem():
    with pytest.raises(ValueError, match="version"):
        CountClock.from_state({"kind": "count", "version": 99})
    with pytest.raises(ValueError, match="size"):
        CountClock(0)
