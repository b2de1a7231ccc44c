"""Decoding throughput: a bare ``orjson.loads`` loop against ``Decoder.decode``.

Usage: python bench/bench_decode.py [--n 200000] [--batch 5000] [--repeat 5]

The reference event has 10 numeric and 2 categorical features plus a score
(about 400 bytes). Two models share four partitions. Records arrive in runs
of 500 per partition, the way librdkafka hands out one fetch at a time, and
the two models interleave at random within a partition. The floor parses
every value and nothing else; the decoder also validates each event and
builds the columns, in consumer-sized batches. Runs of the two alternate and
each figure is the best of ``--repeat``.

Prints a table, then one JSON line:
{"orjson_events_per_s": ..., "decode_events_per_s": ..., "ratio": ...}
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import orjson

from driftstream.runtime.decode import Decoder, ModelColumns, Record

NUMERIC = (
    "amount_usd",
    "account_age_days",
    "txn_count_24h",
    "txn_count_7d",
    "avg_amount_30d",
    "distance_from_home_km",
    "merchant_risk",
    "velocity_1h",
    "failed_logins_7d",
    "basket_items",
)
CATEGORICAL = ("country", "device")
PARTITIONS = 4
RUN = 500
MODELS = ("fraud", "churn")
TOPIC = "driftstream.predictions"


def make_records(n: int) -> list[Record]:
    rng = np.random.default_rng(7)
    numbers = rng.normal(100.0, 30.0, size=(n, len(NUMERIC))).round(3).tolist()
    countries = rng.choice(["DE", "FR", "US", "BR", "JP"], size=n).tolist()
    devices = rng.choice(["ios", "android", "web"], size=n).tolist()
    scores = rng.random(n).round(4).tolist()
    models = rng.choice(len(MODELS), size=n).tolist()
    records = []
    for i in range(n):
        model = MODELS[models[i]]
        features = dict(zip(NUMERIC, numbers[i], strict=True))
        features.update(country=countries[i], device=devices[i])
        event = {
            "event_id": f"7f3c9a2e-{i:012d}",
            "model_id": model,
            "model_version": "2026.11.1",
            "ts": 1795323600.0 + i * 0.001,
            "features": features,
            "prediction": "fraud" if scores[i] > 0.9 else "ok",
            "score": scores[i],
        }
        run, position = divmod(i, RUN)
        partition = run % PARTITIONS
        offset = (run // PARTITIONS) * RUN + position
        records.append(Record(TOPIC, partition, offset, model.encode(), orjson.dumps(event)))
    return records


def best_times(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    # Alternating the runs spreads a noisy neighbour over both figures.
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    records = make_records(args.n)
    values = [record.value for record in records]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    columns = ModelColumns(NUMERIC, CATEGORICAL, "categorical", True)
    decoder = Decoder(dict.fromkeys(MODELS, columns), {TOPIC: "predictions"})

    def floor() -> None:
        loads = orjson.loads
        for value in values:
            loads(value)

    def decode() -> None:
        for batch in batches:
            decoder.decode(batch)

    mean_bytes = sum(map(len, values)) / len(values)
    best = best_times({"floor": floor, "decode": decode}, args.repeat)
    # Checked after timing: thousands of results kept alive at once would
    # fragment the heap the timed runs allocate from.
    rows = 0
    for batch in batches:
        out = decoder.decode(batch)
        if out.dead:
            raise SystemExit(f"decoder refused a reference event: {out.dead[0]}")
        rows += sum(len(b.offsets) for b in out.batches)
    if rows != args.n:
        raise SystemExit(f"decoder lost events: {rows} rows of {args.n}")
    floor_rate = args.n / best["floor"]
    decode_rate = args.n / best["decode"]
    print(f"{args.n} events of {mean_bytes:.0f} bytes, batches of {args.batch}")
    print(f"{'orjson.loads loop':<20} {floor_rate:>12,.0f} events/s")
    print(f"{'Decoder.decode':<20} {decode_rate:>12,.0f} events/s")
    print(f"{'ratio':<20} {decode_rate / floor_rate:>12.2f}")
    result = {
        "orjson_events_per_s": round(floor_rate),
        "decode_events_per_s": round(decode_rate),
        "ratio": round(decode_rate / floor_rate, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
