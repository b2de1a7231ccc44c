"""The SDK and the worker judge every timestamp alike: one contract, one verdict."""

import orjson
import pytest

from driftstream.client import DriftClient
from driftstream.contract import BAD_TIMESTAMP, WRONG_TYPE, TimestampError
from driftstream.runtime.decode import Decoder, ModelColumns, Record

UNREACHABLE = "127.0.0.1:1"
MAY_1 = 1777636800.0  # 2026-05-01T12:00:00Z

# (ts as written in the event, epoch seconds if accepted, else the error class)
CASES = [
    ("2026-05-01T12:00:00Z", MAY_1),
    ("2026-05-01T12:00:00z", MAY_1),
    ("2026-05-01t12:00:00Z", MAY_1),
    ("2026-05-01 12:00:00Z", MAY_1),
    ("2026-05-01T14:00:00+02:00", MAY_1),
    ("2026-05-01T07:30:00-04:30", MAY_1),
    ("2026-05-01T12:00:00.250Z", MAY_1 + 0.25),
    ("2026-05-01T12:00:00.000001+00:00", MAY_1 + 1e-6),
    ("2016-12-31T23:59:60Z", 1483228800.0),  # leap second rolls over
    ("1970-01-01T00:00:00Z", 0.0),
    ("9999-12-31T23:59:59Z", 253402300799.0),
    (MAY_1, MAY_1),
    (1777636800, MAY_1),
    (0, 0.0),
    (253402300799.5, 253402300799.5),
    ("2026-05-01T12:00Z", TimestampError),  # no seconds
    ("20260501T120000Z", TimestampError),  # ISO 8601 basic format
    ("2026-05-01T12:00:00+0200", TimestampError),  # offset without a colon
    ("2026-05-01T12:00:00", TimestampError),  # no offset
    ("2026-05-01", TimestampError),
    ("2026-02-30T12:00:00Z", TimestampError),
    ("2026-05-01T24:00:00Z", TimestampError),
    ("2026-05-01T12:60:00Z", TimestampError),
    ("1969-12-31T23:59:59Z", TimestampError),  # before 1970
    ("1970-01-01T00:00:00+00:01", TimestampError),  # 1969 in UTC
    ("", TimestampError),
    ("yesterday", TimestampError),
    ("1777636800", TimestampError),  # a number in a string
    ("２０２６-05-01T12:00:00Z", TimestampError),  # non-ASCII digits
    (1777636800000, TimestampError),  # milliseconds
    (-1, TimestampError),
    (253402300800, TimestampError),  # year 10000
    (True, TypeError),
    ([MAY_1], TypeError),
    ({"seconds": MAY_1}, TypeError),
]


@pytest.fixture(scope="module")
def sdk():
    client = DriftClient(UNREACHABLE, config={"log_level": 0})
    yield client
    client.close(timeout=1)


def sdk_verdict(client, ts):
    try:
        event = client._inference_event("m", {"x": 1.0}, "e1", "v1", None, ts)
    except (TimestampError, TypeError) as error:
        return type(error)
    return event


def worker_verdict(ts):
    decoder = Decoder({"m": ModelColumns(("x",), (), None, False)}, {"feats": "features"})
    event = {"event_id": "e1", "model_id": "m", "model_version": "v1", "ts": ts, "features": {}}
    out = decoder.decode([Record("feats", 0, 0, b"m", orjson.dumps(event))])
    if out.dead:
        return {BAD_TIMESTAMP: TimestampError, WRONG_TYPE: TypeError}[out.dead[0].reason]
    return float(out.batches[0].batch.ts[0])


@pytest.mark.parametrize(("ts", "expected"), CASES, ids=[repr(case[0]) for case in CASES])
def test_sdk_and_worker_give_one_verdict(sdk, ts, expected):
    from_sdk = sdk_verdict(sdk, ts)
    from_worker = worker_verdict(ts)
    if isinstance(expected, float):
        assert isinstance(from_sdk, dict), f"the SDK refused {ts!r}: {from_sdk}"
        # What the SDK writes is what the worker reads.
        assert worker_verdict(from_sdk["ts"]) == pytest.approx(expected, abs=1e-6)
        assert from_worker == pytest.approx(expected, abs=1e-6)
    else:
        assert from_sdk is expected
        assert from_worker is expected
