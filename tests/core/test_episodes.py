import json

import pytest

from driftstream.core.episodes import DetectorEpisodes, WindowEpisodes
from driftstream.core.settings import EpisodeSettings
from driftstream.core.stats import beyond


def test_one_shift_gives_one_drift_and_one_resolved():
    tracker = WindowEpisodes(EpisodeSettings(resolve_windows=3, resolve_ratio=0.8))
    values = [0.01, 0.3, 0.4, 0.05, 0.35, 0.02, 0.01, 0.01, 0.2]
    changes = [tracker.observe("k", v, 0.1, True) for v in values]
    assert changes == [None, "drift", None, None, None, None, None, "resolved", "drift"]


def test_p_values_drift_when_below_threshold():
    tracker = WindowEpisodes(EpisodeSettings(resolve_windows=1, resolve_ratio=0.5))
    changes = [tracker.observe("k", p, 0.001, False) for p in [0.5, 1e-9, 0.0015, 0.01]]
    assert changes == [None, "drift", None, "resolved"]


def test_nan_neither_opens_nor_resolves():
    tracker = WindowEpisodes(EpisodeSettings(resolve_windows=1))
    assert tracker.observe("k", float("nan"), 0.1, True) is None
    assert tracker.observe("k", 1.0, 0.1, True) == "drift"
    assert tracker.observe("k", float("nan"), 0.1, True) is None
    assert tracker.is_open("k")
    assert not beyond(float("nan"), 0.1, True)


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_detector_episodes_do_not_depend_on_batching(cut):
    detections = [5, 20, 300, 310, 900]
    ends = [100, 305, 600, 1200]
    whole = DetectorEpisodes(EpisodeSettings(detector_quiet_events=100))
    expected = whole.advance("k", detections, 1200)
    assert expected == [
        ("drift", 5),
        ("resolved", 120),
        ("drift", 300),
        ("resolved", 410),
        ("drift", 900),
        ("resolved", 1000),
    ]
    tracker = DetectorEpisodes(EpisodeSettings(detector_quiet_events=100))
    got, start = [], 0
    for i, end in enumerate(ends):
        if i == cut:  # save and restore somewhere in the middle
            state = json.loads(json.dumps(tracker.to_state()))
            tracker = DetectorEpisodes.from_state(tracker.settings, state)
        got += tracker.advance("k", [d for d in detections if start <= d < end], end)
        start = end
    assert got == expected


def test_window_episode_state_round_trip():
    settings = EpisodeSettings(resolve_windows=2)
    tracker = WindowEpisodes(settings)
    tracker.observe("a", 1.0, 0.1, True)
    tracker.observe("a", 0.0, 0.1, True)
    restored = WindowEpisodes.from_state(settings, json.loads(json.dumps(tracker.to_state())))
    assert restored.observe("a", 0.0, 0.1, True) == tracker.observe("a", 0.0, 0.1, True)
    with pytest.raises(ValueError, match="version"):
        WindowEpisodes.from_state(settings, {"kind": "window_episodes", "version": 2, "open": {}})
