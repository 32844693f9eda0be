"""Detection latency: from a change in oda-sim (its ground-truth `at`) to
the event being visible to a read_committed consumer.

Drives oda-sim's mutations itself (updates spread over the given entity
sets at a steady rate, plus a few late commits), reads the producer's
topics with kafka-python, then joins what it read with the simulator's
change log by (entity, id, hash). Prints a histogram and p50/p99/max, for
ordinary changes and late commits apart. Used by scripts/bench-latency.
"""

import argparse
import json
import statistics
import threading
import time
from datetime import datetime

import requests
from kafka import KafkaConsumer


def slug(entity):
    return entity.lower().replace("æ", "ae").replace("ø", "oe").replace("å", "aa")


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


class Reader(threading.Thread):
    """Records when each (entity, id, hash) first became visible."""

    def __init__(self, brokers, topics):
        super().__init__(daemon=True)
        # A group subscription asks the broker about these topics only (a
        # shared stack holds thousands; listing them all is slow here).
        self.consumer = KafkaConsumer(
            bootstrap_servers=brokers,
            group_id=f"bench-latency-{time.time_ns()}",
            isolation_level="read_committed",
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        self.consumer.subscribe(topics)
        for _ in range(300):
            self.consumer.poll(timeout_ms=100)
            if self.consumer.assignment():
                break
        else:
            raise SystemExit(f"no partitions of {topics} were assigned")
        for part in self.consumer.assignment():
            self.consumer.position(part)
        self.seen = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            polled = self.consumer.poll(timeout_ms=100)
            now = time.time()
            for records in polled.values():
                for record in records:
                    headers = {k: v for k, v in record.headers or []}
                    entity = headers.get("oda.entity", b"").decode()
                    digest = headers.get("oda.hash", b"").decode()
                    key = (entity, record.key.decode() if record.key else "", digest)
                    self.seen.setdefault(key, []).append(now)


def key_of(change):
    return (change["entity"], str(change["id"]), change["hash"])


def mutate(sim, body):
    answer = requests.post(f"{sim}/_sim/mutate", json=body, timeout=10)
    answer.raise_for_status()
    return answer.json()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim", required=True)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--entities", default="Sag,Stemme,Dokument")
    parser.add_argument("--rate", type=float, default=100.0, help="updates per second")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--late-every", type=float, default=10.0, help="seconds between late commits")
    parser.add_argument("--late-backdate", default="30s")
    parser.add_argument("--grace", type=float, default=180.0, help="seconds to wait for the last events")
    parser.add_argument("--interval", type=float, default=2.0, help="the producer's poll.interval (for the verdict)")
    args = parser.parse_args()

    entities = args.entities.split(",")
    reader = Reader(args.brokers, [f"{args.prefix}-{slug(e)}" for e in entities])
    reader.start()
    time.sleep(2)

    tick = 0.1
    per_tick = args.rate * tick
    owed = 0.0
    late_ranges = []
    first_seq = None
    last_seq = 0
    started = time.monotonic()
    next_late = started + args.late_every
    turn = 0
    while time.monotonic() - started < args.seconds:
        owed += per_tick
        count = int(owed)
        owed -= count
        # Spread this tick's updates over the sets, a few per request.
        while count > 0:
            entity = entities[turn % len(entities)]
            turn += 1
            n = min(count, max(1, int(per_tick / len(entities)) + 1))
            count -= n
            answer = mutate(args.sim, {"entity": entity, "updates": n})
            first_seq = first_seq or answer["from_seq"]
            last_seq = max(last_seq, answer["to_seq"])
        if time.monotonic() >= next_late:
            next_late += args.late_every
            entity = entities[turn % len(entities)]
            answer = mutate(args.sim, {"entity": entity, "updates": 2, "backdate": args.late_backdate})
            late_ranges.append((answer["from_seq"], answer["to_seq"]))
            last_seq = max(last_seq, answer["to_seq"])
        # Keep to the schedule, not to the requests' pace.
        elapsed = time.monotonic() - started
        time.sleep(max(0.0, tick * (int(elapsed / tick) + 1) - elapsed))
    mutated_for = time.monotonic() - started

    log = requests.get(f"{args.sim}/_sim/changes", params={"after": first_seq - 1}, timeout=60)
    log.raise_for_status()
    changes = [json.loads(line) for line in log.text.splitlines() if line.strip()]
    changes = [c for c in changes if c["seq"] <= last_seq and c["entity"] in entities]

    def at_of(change):
        return datetime.fromisoformat(change["at"].replace("Z", "+00:00")).timestamp()

    def sightings_by_row():
        """(time, hash) of every event seen, per row, in time order."""
        rows = {}
        for (entity, id_, digest), times in list(reader.seen.items()):
            rows.setdefault((entity, id_), []).extend((t, digest) for t in times)
        for events in rows.values():
            events.sort()
        return rows

    def seen_after(change):
        since = at_of(change) - 0.2
        return any(t >= since for t in reader.seen.get(key_of(change), []))

    def undone(change, rows):
        """The change only brought back the state subscribers last got (an
        update undone before a poll saw it): there is nothing to publish."""
        since = at_of(change) - 0.2
        before = [h for t, h in rows.get((change["entity"], str(change["id"])), []) if t < since]
        return bool(before) and before[-1] == change["hash"]

    # Wait for each row's newest state.
    newest = {}
    for c in changes:
        newest[(c["entity"], c["id"])] = c
    wanted = [c for c in newest.values() if c["op"] != "d"]

    def all_seen():
        pending = [c for c in wanted if not seen_after(c)]
        if not pending:
            return True
        rows = sightings_by_row()
        return all(undone(c, rows) for c in pending)

    deadline = time.monotonic() + args.grace
    while time.monotonic() < deadline and not all_seen():
        time.sleep(1)
    reader.stop.set()
    reader.join()

    def is_late(seq):
        return any(a <= seq <= b for a, b in late_ranges)

    # A state replaced before any poll could see it is not published (one
    # event per key between polls): it has no latency, it is counted apart.
    # The same content can come back later (an update undone by another),
    # so a change owns only a sighting of its state made before the next
    # change to the row (plus the time a read in flight takes to commit).
    next_at = {}
    following = {}
    for c in reversed(changes):
        row = (c["entity"], c["id"])
        following[c["seq"]] = next_at.get(row)
        next_at[row] = at_of(c)
    in_flight = 5.0
    rows = sightings_by_row()
    ordinary, late, replaced, back, missing, slowest = [], [], 0, 0, [], []
    for c in changes:
        if c["op"] == "d":
            continue
        at = at_of(c)
        until = following[c["seq"]]
        sightings = reader.seen.get((c["entity"], str(c["id"]), c["hash"]), [])
        seen = next((t for t in sightings if t >= at - 0.2
                     and (until is None or t <= until + in_flight)), None)
        if seen is None:
            if until is not None:
                replaced += 1
            elif undone(c, rows):
                back += 1
            else:
                missing.append(c)
            continue
        latency = max(0.0, seen - at)
        (late if is_late(c["seq"]) else ordinary).append(latency)
        if not is_late(c["seq"]):
            slowest.append((latency, c))

    print(f"mutated for {mutated_for:.0f} s: {len(changes)} changes over {', '.join(entities)} "
          f"({len(changes) / mutated_for:.0f}/s), {len(late)} of them late commits (backdated {args.late_backdate})")
    print(f"states replaced before a poll could see them (not published by design): {replaced}")
    print(f"newest states equal to the state last published (nothing to publish): {back}")
    print(f"newest states never seen within {args.grace:.0f} s of the end: {len(missing)}")
    bounds = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, float("inf")]
    for name, values in (("ordinary changes", ordinary), ("late commits", late)):
        if not values:
            continue
        print()
        print(f"{name}: {len(values)} seen; p50 {percentile(values, 50):.2f} s, "
              f"p90 {percentile(values, 90):.2f} s, p99 {percentile(values, 99):.2f} s, "
              f"max {max(values):.2f} s, mean {statistics.mean(values):.2f} s")
        low = 0.0
        for high in bounds:
            count = sum(1 for v in values if low <= v < high)
            if count:
                label = f"{low:>5.1f}-{high:<5.1f} s" if high != float("inf") else f"{low:>5.1f}+       s"
                print(f"  {label} {count:>7} {'#' * max(1, round(60 * count / len(values)))}")
            low = high
    # The tail names itself: which rows, stamped when, found how late.
    slowest.sort(key=lambda pair: pair[0], reverse=True)
    print()
    print("slowest ordinary changes:")
    for latency, c in slowest[:5]:
        print(f"  {latency:8.2f} s  {c['entity']} id {c['id']} seq {c['seq']} at {c['at']} "
              f"opdateringsdato {c.get('opdateringsdato')}")
    p99 = percentile(ordinary, 99)
    target = args.interval + 0.5
    print()
    print(f"verdict: ordinary p99 {p99:.2f} s against the target {target:.1f} s (poll.interval + 0.5 s): "
          f"{'met' if p99 <= target else 'MISSED'}")
    if missing:
        for c in missing[:5]:
            print("never seen:", c)
        raise SystemExit(1)
    if p99 > target:
        raise SystemExit(3)


if __name__ == "__main__":
    main()
