import OTLP
import Sampling
import Testing

/// The window on an injected clock: no sleeps anywhere.
@Suite struct TraceWindowTests {
    let ms: UInt64 = 1_000_000

    /// A batch with one span per (trace, span, parent) triple.
    func batch(_ spans: [(trace: UInt64, span: UInt64, parent: UInt64)], payload: Int = 0) throws -> SpanBatch {
        var request = ProtoWriter()
        request.writeNested(1) { rs in
            rs.writeNested(1) { resource in
                writeValue(&resource, "service.name", .string("feed-service"))
            }
            rs.writeNested(2) { ss in
                for s in spans {
                    ss.writeNested(2) { w in
                        w.writeBytesField(1, TraceID(high: 1, low: s.trace).bytes)
                        w.writeBytesField(2, SpanID(rawValue: s.span).bytes)
                        if s.parent != 0 { w.writeBytesField(4, SpanID(rawValue: s.parent).bytes) }
                        w.writeStringField(5, String(repeating: "x", count: payload))
                        w.writeFixed64Field(7, 1)
                        w.writeFixed64Field(8, 2)
                    }
                }
            }
        }
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request.bytes, into: &batch)
        return batch
    }

    func window(wait: Duration = .seconds(10), afterRoot: Duration = .seconds(2), maxSpans: Int = 0) -> TraceWindow {
        TraceWindow(
            limits: WindowLimits(decisionWait: wait, decisionWaitAfterRoot: afterRoot, maxSpansPerTrace: maxSpans),
            cache: DecisionCache(keptCapacity: 100, droppedCapacity: 100))
    }

    func insertAll(_ window: inout TraceWindow, _ batch: SpanBatch, now: UInt64, offset: Int64 = 0, partition: UInt32 = 0, generation: UInt64 = 1) -> ([SpanDisposition], [ReadyTrace]) {
        var ready: [ReadyTrace] = []
        let dispositions = batch.spans.map {
            window.insert($0, from: batch, batchGeneration: generation, source: SourcePosition(lane: partition, offset: offset), now: now, ready: &ready)
        }
        return (dispositions, ready)
    }

    /// Under memory pressure the heaviest trace by bytes × age goes first — not the largest, not the
    /// oldest. By hand (span payloads of 200 bytes dominate): A, 1 span for 10 s, weighs ~10; B, 40
    /// spans for 1 s, ~40; C, 10 spans for 8 s, ~80. Asked to shed one byte, the window decides C
    /// alone; asked for more, B next, A last.
    @Test func memoryPressureDecidesTheHeaviestByBytesTimesAge() throws {
        var w = window(wait: .seconds(600), afterRoot: .seconds(600))
        _ = insertAll(&w, try batch([(1, 1, 9)], payload: 200), now: 0)
        _ = insertAll(&w, try batch((1...10).map { (3, $0, 99) }, payload: 200), now: 2_000 * ms)
        _ = insertAll(&w, try batch((1...40).map { (2, $0, 99) }, payload: 200), now: 9_000 * ms)
        var ready: [ReadyTrace] = []
        w.releaseHeaviest(until: w.bufferedBytes - 1, now: 10_000 * ms, into: &ready)
        #expect(ready.map(\.trace.traceID.low) == [3], "C first")
        #expect(ready.first?.reason == .memoryPressure)
        w.releaseHeaviest(until: 0, now: 10_000 * ms, into: &ready)
        #expect(ready.map(\.trace.traceID.low) == [3, 2, 1], "then B, then A")
        #expect(w.traceCount == 0)
    }

    @Test func decidedDecisionWaitAfterTheFirstSpan() throws {
        var w = window(wait: .milliseconds(250))
        _ = insertAll(&w, try batch([(1, 1, 9), (1, 2, 9)]), now: 1_000 * ms)
        var ready: [ReadyTrace] = []
        w.expire(now: 1_240 * ms, into: &ready)
        #expect(ready.isEmpty, "not before 250 ms")
        w.expire(now: 1_250 * ms, into: &ready)
        #expect(ready.count == 1)
        #expect(ready.first?.reason == .decisionWait)
        #expect(ready.first?.trace.spans.count == 2)
        #expect(w.traceCount == 0 && w.bufferedSpans == 0 && w.bufferedBytes == 0)
    }

    /// Real clocks are not aligned to the wheel's 10 ms ticks: a deadline in the middle of a tick,
    /// looked at once before it within that tick, is still decided within a tick after it — not a
    /// whole wheel turn (41 s) later, as a bucket drained too early once left it.
    @Test func deadlinesBetweenTicksAreNotStranded() throws {
        var w = window(wait: .seconds(2))
        _ = insertAll(&w, try batch([(1, 1, 9)]), now: 1_003 * ms)  // deadline 3_003 ms: inside the 3_000–3_010 tick
        var ready: [ReadyTrace] = []
        for now in stride(from: UInt64(2_990), through: 3_002, by: 1) { w.expire(now: now * ms, into: &ready) }
        #expect(ready.isEmpty, "not before its deadline")
        w.expire(now: 3_004 * ms, into: &ready)
        w.expire(now: 3_013 * ms, into: &ready)
        #expect(ready.count == 1, "decided at most one tick after its deadline")
        // Many traces at unaligned times: every one decided within a tick of its deadline.
        var many = window(wait: .milliseconds(500))
        var decided = 0
        var late = 0
        for step in 0..<3_000 {
            let now = UInt64(step) * 1_370_000 + 10 * ms  // 1.37 ms steps: every phase of a tick
            if step < 1_000 { _ = insertAll(&many, try batch([(UInt64(step + 10), 1, 9)]), now: now) }
            var batchReady: [ReadyTrace] = []
            many.expire(now: now, into: &batchReady)
            for item in batchReady where now > item.firstSeen + 510 * ms { late += 1 }
            decided += batchReady.count
        }
        #expect(decided == 1_000)
        #expect(late == 0)
    }

    @Test func rootSpanBringsTheDecisionForward() throws {
        var w = window(wait: .seconds(10), afterRoot: .seconds(2))
        _ = insertAll(&w, try batch([(1, 2, 1)]), now: 0)
        _ = insertAll(&w, try batch([(1, 1, 0)]), now: 1_000 * ms)  // the root, a second later
        var ready: [ReadyTrace] = []
        w.expire(now: 2_999 * ms, into: &ready)
        #expect(ready.isEmpty)
        w.expire(now: 3_000 * ms, into: &ready)
        #expect(ready.map(\.reason) == [.rootReceived])
        #expect(ready.first?.trace.hasRoot == true)
    }

    @Test func maxSpansPerTraceDecidesAtOnce() throws {
        var w = window(maxSpans: 3)
        let (_, first) = insertAll(&w, try batch([(1, 1, 9), (1, 2, 9)]), now: 0)
        #expect(first.isEmpty)
        let (_, second) = insertAll(&w, try batch([(1, 3, 9)]), now: 1)
        #expect(second.map(\.reason) == [.maxSpans])
        #expect(second.first?.trace.spans.count == 3)
    }

    /// A trace filled to `max_spans_per_trace` is released at once; its next span, not decided yet,
    /// starts the trace anew (not late), and the spans of other traces between change nothing.
    @Test func theSpanAfterATraceFilledStartsItAnew() throws {
        var w = window(maxSpans: 3)
        let (dispositions, ready) = insertAll(&w, try batch([(1, 1, 9), (1, 2, 9), (1, 3, 9), (1, 4, 9), (2, 1, 9), (1, 5, 9)]), now: 0)
        #expect(ready.map(\.reason) == [.maxSpans])
        #expect(ready.first?.trace.spans.map(\.spanID.rawValue) == [1, 2, 3])
        #expect(dispositions == [.holding, .buffered, .buffered, .holding, .holding, .buffered])
        #expect(w.traceCount == 2)
        #expect(w.bufferedSpans == 3)
    }

    @Test func lateSpansFollowTheRememberedDecision() throws {
        var w = window(wait: .milliseconds(100))
        _ = insertAll(&w, try batch([(1, 1, 0), (2, 1, 0)]), now: 0)
        var ready: [ReadyTrace] = []
        w.expire(now: 100 * ms, into: &ready)
        #expect(ready.count == 2)
        w.remember(TraceID(high: 1, low: 1), kept: true, policy: "errors")
        w.remember(TraceID(high: 1, low: 2), kept: false)
        let (late, _) = insertAll(&w, try batch([(1, 5, 1), (2, 5, 1), (3, 1, 0)]), now: 200 * ms)
        #expect(late == [.late(.kept("errors")), .late(.dropped), .holding])
        #expect(w.traceCount == 1, "only the new trace is buffered")
    }

    @Test func subSecondGranularityAndManyDeadlines() throws {
        var w = window(wait: .milliseconds(30))
        for i in 0..<1000 {
            _ = insertAll(&w, try batch([(UInt64(i + 1), 1, 7)]), now: UInt64(i) * ms)
        }
        var ready: [ReadyTrace] = []
        w.expire(now: 529 * ms, into: &ready)
        // Traces first seen at 0…499 ms are due (first + 30 ms ≤ 529 ms).
        #expect(ready.count == 500)
        w.expire(now: 10_000 * ms, into: &ready)
        #expect(ready.count == 1000)
        #expect(w.traceCount == 0)
    }

    @Test func deadlinesBeyondOneTurnOfTheWheel() throws {
        var w = window(wait: .seconds(100))
        _ = insertAll(&w, try batch([(1, 1, 9)]), now: 0)
        var ready: [ReadyTrace] = []
        for second in stride(from: 0 as UInt64, through: 99, by: 1) {
            w.expire(now: second * 1_000 * ms, into: &ready)
        }
        #expect(ready.isEmpty)
        w.expire(now: 100_000 * ms, into: &ready)
        #expect(ready.count == 1)
    }

    @Test func bytesAreAccountedAndTheHeaviestGoFirst() throws {
        var w = window()
        _ = insertAll(&w, try batch([(1, 1, 9)], payload: 10), now: 0)
        let small = w.bufferedBytes
        _ = insertAll(&w, try batch([(2, 1, 9), (2, 2, 9), (2, 3, 9)], payload: 4000), now: 0)
        #expect(w.bufferedBytes > small + 12_000)
        var ready: [ReadyTrace] = []
        w.releaseHeaviest(until: small, now: 1 * ms, into: &ready)
        #expect(ready.map(\.trace.traceID.low) == [2])
        #expect(ready.first?.reason == .memoryPressure)
        #expect(w.bufferedBytes == small)
    }

    /// A trace holds the position of its first span from each partition (the ledger needs no more:
    /// later offsets there are behind it), and says so exactly once per position.
    @Test func tracesHoldTheirFirstPositionPerPartition() throws {
        var w = window(wait: .milliseconds(100))
        let (first, _) = insertAll(&w, try batch([(1, 1, 9)]), now: 0, offset: 10)
        let (second, _) = insertAll(&w, try batch([(2, 1, 9)]), now: 50 * ms, offset: 11)
        let (grown, _) = insertAll(&w, try batch([(1, 2, 9)]), now: 60 * ms, offset: 12)  // trace 1, a later offset
        let (spread, _) = insertAll(&w, try batch([(1, 3, 9)]), now: 61 * ms, offset: 3, partition: 4)  // another partition
        #expect(first == [.holding])
        #expect(second == [.holding])
        #expect(grown == [.buffered])
        #expect(spread == [.holding])
        var ready: [ReadyTrace] = []
        w.expire(now: 100 * ms, into: &ready)  // trace 1 decided
        #expect(ready.count == 1)
        #expect(ready.first?.sources == [SourcePosition(lane: 0, offset: 10), SourcePosition(lane: 4, offset: 3)])
    }

    /// A revoke forgets traces held only by revoked partitions; one that also holds a partition this
    /// member keeps stays, to be decided here (forgetting it would commit that partition past it).
    @Test func forgettingRevokedPartitionsKeepsTracesThatSpanAKeptOne() throws {
        var w = window()
        _ = insertAll(&w, try batch([(1, 1, 9)]), now: 0, offset: 5, partition: 0)
        _ = insertAll(&w, try batch([(2, 1, 9)]), now: 0, offset: 5, partition: 1)
        _ = insertAll(&w, try batch([(3, 1, 9)]), now: 0, offset: 6, partition: 1)
        _ = insertAll(&w, try batch([(3, 2, 9)]), now: 0, offset: 7, partition: 0)
        #expect(w.forget(lanes: [1]) == 1)
        #expect(w.traceCount == 2)
        var ready: [ReadyTrace] = []
        w.releaseAll(into: &ready)
        #expect(Set(ready.map(\.trace.traceID.low)) == [1, 3])
    }

    @Test func routingSpreadsSequentialIdsEvenly() {
        var counts = [Int](repeating: 0, count: 8)
        // Ids that differ only in their low bits (a timestamp-like high half, as some SDKs make).
        for i in 0..<80_000 { counts[TraceRouting.shard(of: TraceID(high: 0x6543_2100_0000_0000, low: UInt64(i)), count: 8)] += 1 }
        #expect(counts.allSatisfy { (9_500...10_500).contains($0) }, "\(counts)")
    }

    @Test func decisionCacheEvictsOldestGenerationAndKeepsRecent() {
        var cache = DecisionCache(keptCapacity: 4, droppedCapacity: 4)
        for i in 1...6 { cache.remember(TraceID(high: 0, low: UInt64(i)), kept: true) }
        #expect(cache.lookup(TraceID(high: 0, low: 6)) == .kept(""))
        #expect(cache.lookup(TraceID(high: 0, low: 1)) == nil, "the oldest generation was forgotten")
        cache.remember(TraceID(high: 9, low: 9), kept: false)
        #expect(cache.lookup(TraceID(high: 9, low: 9)) == .dropped)
        #expect(cache.lookup(TraceID(high: 9, low: 8)) == nil)
    }

    /// Growing `non_sampled_cache_size` on reload past what the dropped side's table was sized for:
    /// the table grows with it (it used to trap at its old half-size: a crash of every shard). By hand:
    /// 3 000 drops at capacity 1 000 (generations of 500) leave ids 2 500..<3 000 in the old generation;
    /// at 4 000 (generations of 2 000) the next 3 000 drops turn once at 2 000, so all 3 000 are
    /// remembered and the first batch is forgotten.
    @Test func droppedSideGrowsPastItsFirstSizeOnReload() {
        var cache = DecisionCache(keptCapacity: 10, droppedCapacity: 1_000)
        let first = (0..<3_000).map { TraceID(high: 1, low: UInt64($0)) }
        let second = (0..<3_000).map { TraceID(high: 2, low: UInt64($0)) }
        for id in first { cache.remember(id, kept: false) }
        #expect(cache.lookup(first[2_999]) == .dropped)
        cache.resize(keptCapacity: 10, droppedCapacity: 4_000)
        for id in second { cache.remember(id, kept: false) }
        #expect(second.allSatisfy { cache.lookup($0) == .dropped }, "every drop since the reload is remembered")
        #expect(first[2_500..<3_000].allSatisfy { cache.lookup($0) == nil }, "the generation before the turn is forgotten")
        #expect(cache.count.dropped == 3_000)
    }

    /// A reload that changes `decision_cache` applies: growing keeps what is remembered and lets it
    /// hold more; shrinking bounds it at once; zero forgets everything and remembers nothing new.
    @Test func decisionCacheResizesOnReload() {
        var window = TraceWindow(limits: WindowLimits(), cache: DecisionCache(keptCapacity: 10, droppedCapacity: 10))
        var cache = window.cache
        for i in 1...4 { cache.remember(TraceID(high: 1, low: UInt64(i)), kept: true, policy: "p") }
        cache.resize(keptCapacity: 100, droppedCapacity: 100)
        #expect(cache.keptCapacity == 100)
        #expect(cache.lookup(TraceID(high: 1, low: 1)) == .kept("p"), "growing keeps what is remembered")
        for i in 5...60 { cache.remember(TraceID(high: 1, low: UInt64(i)), kept: true, policy: "p") }
        #expect(cache.count.kept == 60, "and holds more than the old capacity of 10")
        // By hand: at capacity 100 a generation holds 50, so the 60 are an old generation (1...50)
        // and a young one (51...60). Shrinking to 10 forgets the old one; the young one (10, over
        // the new half-capacity of 5) becomes the old one: 51...60 remain, 1...50 are gone.
        cache.resize(keptCapacity: 10, droppedCapacity: 10)
        #expect(cache.count.kept == 10)
        #expect((51...60).allSatisfy { cache.lookup(TraceID(high: 1, low: UInt64($0))) == .kept("p") })
        #expect((1...50).allSatisfy { cache.lookup(TraceID(high: 1, low: UInt64($0))) == nil })
        for i in 61...80 { cache.remember(TraceID(high: 1, low: UInt64(i)), kept: true, policy: "p") }
        #expect(cache.count.kept <= 10, "back within the new capacity after one turn: \(cache.count.kept)")
        #expect(cache.lookup(TraceID(high: 1, low: 80)) == .kept("p"))
        cache.resize(keptCapacity: 0, droppedCapacity: 0)
        #expect(cache.count.kept == 0 && cache.count.dropped == 0)
        cache.remember(TraceID(high: 2, low: 2), kept: false)
        #expect(cache.lookup(TraceID(high: 2, low: 2)) == nil, "a zero-sized cache remembers nothing")

        window.resizeCache(keptCapacity: 40, droppedCapacity: 7)
        #expect(window.cache.keptCapacity == 40 && window.cache.droppedCapacity == 7)
    }

    /// A full cache of dropped ids must not claim new traces: with a million remembered, none of a
    /// million new ids matches (32-bit fingerprints matched about 230 of them: whole new traces,
    /// error traces included, dropped as "late").
    @Test func droppedCacheDoesNotSwallowNewTraces() {
        var cache = DecisionCache(keptCapacity: 0, droppedCapacity: 2_000_000)
        for i in 0..<1_000_000 { cache.remember(TraceID(high: 0xA5A5, low: UInt64(i)), kept: false) }
        #expect(cache.count.dropped == 1_000_000)
        var falseMatches = 0
        for i in 0..<1_000_000 where cache.lookup(TraceID(high: 0x5A5A, low: UInt64(i))) != nil { falseMatches += 1 }
        #expect(falseMatches == 0)
        #expect(cache.lookup(TraceID(high: 0xA5A5, low: 123_456)) == .dropped)
    }
}
