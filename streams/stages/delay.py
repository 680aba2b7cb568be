"""pending.<tier>.<feed> → tier.<tier>.<feed> for one tier whose policy delays some feeds.

The clean stage has already applied the policy and the tier's throttle; this stage only waits. The
pending records (in envelopes, see ``streams.logic.envelope``) stay in Kafka, not in memory: a partition is read
in offset order, the envelopes whose timestamp plus the tier's delay has passed are unpacked and their
records forwarded as they are (key, value, timestamp, headers), and at the first envelope that is not
due yet the consumer seeks back to it and pauses the partition until it is due. Offsets are committed
only up to what was forwarded, so after a crash the restarted worker resumes from there: nothing is
released early and nothing is lost. The offsets forwarded so far are written to Redis with the tier
snapshot in one transaction, so a batch forwarded but not yet committed when a worker died is skipped,
not sent twice. A forwarded removal marker deletes its entity from the snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from kafka_admin.partitioning import partition_for
from schemas import AGGREGATE_FEEDS, DeadLetter, encode_dead_letter, now_ms
from streams.config import StreamConfig
from streams.io import metrics
from streams.io.batch_producer import BatchProducer
from streams.io.stage import Batch, BatchStage, StageOutput
from streams.io.state_store import Snapshot, StateStore
from streams.logic import envelope
from streams.logic.cleaning import ENDING_FEEDS
from streams.logic.fanout import TierFanout, TierPolicy, decode_value, removed_keys
from streams.logic.windows import Release, WindowGate

log = logging.getLogger(__name__)


def due_prefix(timestamps: list[int], delay_ms: int, now: int) -> int:
    """How many leading records (in offset order) are due for release at ``now``.

    Stops at the first record not yet due even if later ones are: a partition is released in order, so
    one entity's updates never overtake each other.
    """
    for i, ts in enumerate(timestamps):
        if ts + delay_ms > now:
            return i
    return len(timestamps)


Headers = tuple[tuple[str, bytes], ...]
# released rows per feed, offsets to commit, offsets decided per (tier, feed)
WindowsTaken = tuple[dict[str, Release], dict[TopicPartition, int], dict[tuple[str, str], dict[int, int]]]
_REHASH = -1  # rows computed here, not forwarded from a pending partition: partition them by key
# Feeds whose tier records can be removal markers (ended entities, emptied aggregate groups): only theirs are
# scanned for keys to delete from the snapshot.
REMOVING_FEEDS = ENDING_FEEDS | frozenset(AGGREGATE_FEEDS)


class DelayStage(BatchStage):
    # A delay stage reads every pending partition of its tier (~44 at four partitions a topic), each only up
    # to its first envelope not yet due; the rest of a fetch waits to be dropped. At 2 MiB a fetch, the
    # worker's peak in a soak held 363 MiB of fetched batches (docs/benchmarks-soak.md).
    fetch_bytes_per_partition = 256 * 1024

    def __init__(
        self,
        config: StreamConfig,
        engine: TierPolicy,
        producer: BatchProducer,
        store: StateStore,
        tier: str,
        feeds: list[str],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.name = f"delay-{tier}"
        self.tier = tier
        self.feed_of_topic = {config.naming.pending_topic(tier, f): f for f in feeds}
        super().__init__(config, list(self.feed_of_topic))
        self.producer = producer
        self.store = store
        self.clock = clock
        self.engine = engine
        self.delays = {f: engine.delay_ms(f, tier) for f in feeds}
        # Feeds whose view at this tier needs whole windows: the pending topic holds clean records, released
        # per complete window through the policy (streams/logic/windows.py).
        self.windows = {f: w for f in feeds if (w := engine.window(f, tier)) is not None}
        self.gates = {f: WindowGate(self.delays[f]) for f in self.windows}
        self.window_fanouts = {f: TierFanout(engine, f, tier, config.tier_crs[tier]) for f in self.windows}
        self.paused_until: dict[TopicPartition, int] = {}
        # Next pending offset not yet forwarded, per partition, as recorded in Redis: replays below it are
        # skipped.
        self.forwarded: dict[TopicPartition, int] = {}

    def poll_timeout_ms(self) -> int:
        if not self.paused_until:
            return self.config.poll_timeout_ms
        wait = min(self.paused_until.values()) - self.clock()
        return max(5, min(self.config.poll_timeout_ms, wait))

    def before_poll(self) -> None:
        if not self.paused_until or self.consumer is None:
            return
        now = self.clock()
        ready = [tp for tp, due in self.paused_until.items() if due <= now]
        for tp in ready:
            del self.paused_until[tp]
        ready = [tp for tp in ready if tp in self.assigned]
        if ready:
            self.consumer.resume(*ready)

    def split_due(
        self, batch: Batch, now: int
    ) -> tuple[
        dict[str, list[ConsumerRecord[bytes, bytes]]], dict[TopicPartition, int], dict[TopicPartition, tuple[int, int]]
    ]:
        """(feed → records to forward, offsets to commit, partition → (first held offset, its due time))."""
        forward: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
        commit: dict[TopicPartition, int] = {}
        held: dict[TopicPartition, tuple[int, int]] = {}
        for tp, recs in batch.items():
            feed = self.feed_of_topic[tp.topic]
            if feed in self.gates:
                continue  # see split_windowed
            delay = self.delays[feed]
            n = due_prefix([r.timestamp for r in recs], delay, now)
            if n < len(recs):
                held[tp] = (recs[n].offset, recs[n].timestamp + delay)
            if n:
                commit[tp] = recs[n - 1].offset + 1
                done = self.forwarded.get(tp, 0)
                due = recs[:n] if done <= recs[0].offset else [r for r in recs[:n] if r.offset >= done]
                if due:
                    forward.setdefault(feed, []).extend(due)
        return forward, commit, held

    def split_windowed(self, batch: Batch, now: int) -> WindowsTaken:
        """Every envelope of a windowed feed goes to its gate (these partitions are never paused: records of
        two windows interleave around a window's end); what the gates release (see ``_take_windows``)."""
        for tp, recs in batch.items():
            gate = self.gates.get(self.feed_of_topic[tp.topic])
            if gate is None:
                continue
            for rec in recs:
                try:
                    rows = envelope.unpack(rec.value) if rec.value is not None else []
                except envelope.EnvelopeError as err:
                    log.error("%s: skipping %s:%d:%d: %s", self.name, rec.topic, rec.partition, rec.offset, err)
                    rows = []
                gate.add(tp, rec.offset, rows, now)
        return self._take_windows(now)

    def _take_windows(self, now: int) -> WindowsTaken:
        """What the gates release now: per feed the rows and late rows, the offsets to commit, and per (tier,
        feed) the offsets decided, to persist with the delivery."""
        released: dict[str, Release] = {}
        commit: dict[TopicPartition, int] = {}
        decided: dict[tuple[str, str], dict[int, int]] = {}
        for feed, gate in self.gates.items():
            for tp in list(gate.end):
                if not isinstance(tp, TopicPartition) or tp not in self.assigned:
                    continue
                highwater = self.consumer.highwater(tp) if self.consumer is not None else None
                caught_up = highwater is None or gate.end[tp] >= highwater
                out = gate.take(tp, now, caught_up)
                if out.commit is not None:
                    commit[tp] = out.commit
                if out.rows or out.late:
                    released.setdefault(feed, Release()).extend(out)
                if out.decided is not None:
                    decided.setdefault((self.tier, feed), {})[tp.partition] = out.decided
        return released, commit, decided

    def _late_letter(self, feed: str, row: envelope.Row, now: int) -> envelope.Row:
        """A dead letter for a record whose group's window was already released: kept, not merged into a
        second, partial aggregate of that window."""
        key, value, end = row
        group = key.decode(errors="replace")
        reason = f"late for tier {self.tier}: the window of {group} ending {end} was already released"
        letter = DeadLetter(source="streams", feed=feed, reason=reason, received_at=now, original=value)
        return b"streams", encode_dead_letter(letter), now

    def windowed_records(self, feed: str, rows: list[envelope.Row]) -> list[envelope.Row]:
        """The tier's records for complete windows of clean records: the policy over all of them at once."""
        records = [decode_value(value) for _, value, _ in rows]
        fanout = self.window_fanouts[feed]
        views = self.engine.apply(feed, self.tier, records, crs=fanout.crs)
        return [fanout.to_record(view, view) for view in views]

    async def process(self, batch: Batch) -> StageOutput:
        now = self.clock()
        forward, commit, held = self.split_due(batch, now)
        windowed, window_commit, decided = self.split_windowed(batch, now) if self.gates else ({}, {}, {})
        commit.update(window_commit)
        assert self.consumer is not None
        for tp, (offset, due_at) in held.items():
            self.consumer.seek(tp, offset)
            self.consumer.pause(tp)
            self.paused_until[tp] = due_at
            self.positions[tp] = offset
        return self._output(forward, commit, windowed, decided, now)

    async def periodic(self) -> StageOutput | None:
        """Windows fall due with time, not only when records arrive."""
        if not self.gates:
            return None
        now = self.clock()
        windowed, commit, decided = self._take_windows(now)
        if not commit and not windowed:
            return None
        return self._output({}, commit, windowed, decided, now)

    def _output(
        self,
        forward: dict[str, list[ConsumerRecord[bytes, bytes]]],
        commit: dict[TopicPartition, int],
        windowed: dict[str, Release],
        decided: dict[tuple[str, str], dict[int, int]],
        now: int,
    ) -> StageOutput:
        marks: dict[tuple[str, str], dict[int, int]] = {}
        for tp, end in commit.items():
            self.forwarded[tp] = max(self.forwarded.get(tp, 0), end)
            marks.setdefault((self.tier, self.feed_of_topic[tp.topic]), {})[tp.partition] = end

        # feed → headers → pending partition (or _REHASH) → records, in offset order
        rows: dict[str, dict[Headers, dict[int, list[envelope.Row]]]] = {}
        late: dict[str, list[envelope.Row]] = {}
        window_marks: dict[tuple[str, str], dict[bytes, bytes]] = {}
        for feed, envelopes in forward.items():
            groups = rows.setdefault(feed, {})
            for env in envelopes:
                if env.value is None:
                    continue
                try:
                    group = groups.setdefault(tuple(env.headers or ()), {})
                    group.setdefault(env.partition, []).extend(envelope.unpack(env.value))
                except envelope.EnvelopeError as err:
                    # Only the clean stage writes here; a foreign message must not stop the tier.
                    log.error("%s: skipping %s:%d:%d: %s", self.name, env.topic, env.partition, env.offset, err)

        for feed, got in windowed.items():
            fanout = self.window_fanouts[feed]
            headers = (("policy_version", self.engine.policy_version.encode()), ("crs", fanout.crs.encode()))
            out = self.windowed_records(feed, got.rows)
            if out:
                # Keyed by the tier's own ids (station-hours), so they are partitioned anew when sent.
                rows.setdefault(feed, {})[headers] = {_REHASH: out}
            if got.late:
                # One line per batch: a replayed backlog can hold thousands of late records.
                metrics.RECORDS.labels(self.name, feed, "late").inc(len(got.late))
                late_groups = sorted({key.decode(errors="replace") for key, _, _ in got.late})
                log.warning("%s: %d late %s record(s) of %s: their windows were already released; sent to the "
                            "dead letters", self.name, len(got.late), feed, ", ".join(late_groups[:5]) +
                            (f" and {len(late_groups) - 5} more" if len(late_groups) > 5 else ""))  # fmt: skip
                late.setdefault(feed, []).extend(self._late_letter(feed, row, now) for row in got.late)
            window_marks[(self.tier, feed)] = self.gates[feed].marks(got.rows)

        sent: list[list[Any]] = []  # the produce's result, once: a retry after Redis failed does not repeat it

        async def deliver() -> None:
            feeds = list(rows)
            if not sent:
                dead = [self.producer.deliver(self.config.naming.dlq_topic(f), letters) for f, letters in late.items()]
                produced, _ = await asyncio.gather(
                    asyncio.gather(*(self._send(feed, rows[feed]) for feed in feeds)), asyncio.gather(*dead)
                )
                sent.append(produced)
            ends = sent[0]
            # Snapshot keyed by the Kafka key (entity id bytes); the last value per entity wins (rows in offset
            # order per partition, and an entity keeps to one partition).
            values: dict[tuple[str, str], Snapshot] = {
                (self.tier, f): [row for g in rows[f].values() for part in g.values() for row in part] for f in feeds
            }
            offsets = {(self.tier, f): e for f, e in zip(feeds, ends, strict=True)}
            removed = {
                key: gone
                for key, rows_of in values.items()
                if key[1] in REMOVING_FEEDS and (gone := removed_keys(rows_of))
            }
            await self.store.write(
                values, offsets, {}, forwarded=marks, windows=window_marks, decided=decided, removed=removed
            )
            for feed in feeds:
                n = sum(len(part) for g in rows[feed].values() for part in g.values())
                metrics.TIER_RECORDS.labels(self.name, feed, self.tier, "released").inc(n)

        return StageOutput(deliveries=[deliver] if commit else [], commit=commit)

    async def _send(self, feed: str, groups: dict[Headers, dict[int, list[envelope.Row]]]) -> dict[int, int]:
        """Forward records as they are, one produce round per headers group (policy version and CRS).

        Pending and tier topics are keyed and partitioned alike, so with equal partition counts a pending
        partition's records go to the same tier partition as they are, without hashing every key again."""
        topic = self.config.naming.tier_topic(self.tier, feed)
        source = self.config.naming.pending_topic(self.tier, feed)
        same = await self.producer.partitions(topic) == await self.producer.partitions(source)
        ends: dict[int, int] = {}
        for headers, parts in groups.items():
            if same and _REHASH not in parts:
                sent = await self.producer.send_partitioned(topic, parts, list(headers))
                got = await self.producer.ends(sent)
            else:
                flat = [row for part in parts.values() for row in part]
                got = await self.producer.deliver(topic, flat, list(headers))
            for partition, end in got.items():
                ends[partition] = max(end, ends.get(partition, 0))
        return ends

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_assigned(assigned)
        for topic, feed in self.feed_of_topic.items():
            mine = {tp for tp in assigned if tp.topic == topic}
            if not mine:
                continue
            done = await self.store.load(self.store.naming.forwarded_key(self.tier, feed))
            for tp in mine:
                if str(tp.partition) in done:
                    self.forwarded[tp] = int(done[str(tp.partition)])
            gate = self.gates.get(feed)
            if gate is not None:
                count = self.partition_count(topic)
                owned = {tp.partition for tp in mine}
                ends = await self.store.load(self.store.naming.windows_key(self.tier, feed))
                seen = await self.store.load(self.store.naming.decided_key(self.tier, feed))
                gate.remember(
                    (
                        (key.encode(), int(end))
                        for key, end in ends.items()
                        if partition_for(key.encode(), count) in owned
                    ),
                    ((tp, int(seen[str(tp.partition)])) for tp in mine if str(tp.partition) in seen),
                )

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await super().on_revoked(revoked)
        # Whoever owns these partitions next records its own progress in Redis; ours would go stale.
        for tp in revoked:
            self.paused_until.pop(tp, None)
            self.forwarded.pop(tp, None)
        for topic, feed in self.feed_of_topic.items():
            gate = self.gates.get(feed)
            gone = {tp for tp in revoked if tp.topic == topic}
            if gate is not None and gone:
                count = self.partition_count(topic)
                numbers = {tp.partition for tp in gone}
                lost = {key for key in gate.released if partition_for(key, count) in numbers}
                gate.forget(gone, lost)
