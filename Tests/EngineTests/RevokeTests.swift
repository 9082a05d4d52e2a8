import Engine
import Foundation
import Ingest
import Kafka
import OTLP
import Sampling
import Sinks
import Storage
import Synchronization
import Testing
import TestSupport

/// A clock the test moves.
final class ManualClock: MonotonicClock, Sendable {
    private let nanoseconds = Atomic<UInt64>(1_000_000_000)
    func now() -> UInt64 { nanoseconds.load(ordering: .relaxed) }
    func advance(_ duration: Duration) { nanoseconds.add(UInt64(duration.timeInterval * 1e9), ordering: .relaxed) }
}

/// Acknowledges at once, except traces whose id's high half is `held`: those wait until `release()`.
final class HoldingSink: TraceSink {
    let name = "holding"
    let held: UInt64
    private let waiting = Mutex<[@Sendable () -> Void]>([])
    let received = Atomic<Int>(0)

    init(holding high: UInt64) { held = high }

    func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        received.add(1, ordering: .relaxed)
        if trace.traceID.high == held { waiting.withLock { $0.append(acknowledged) } } else { acknowledged() }
    }
    func release() { for acknowledge in waiting.withLock({ list in defer { list.removeAll() }; return list }) { acknowledge() } }
    var heldCount: Int { waiting.withLock { $0.count } }
    func flush(timeout: Duration) -> Bool { waitUntil(timeout) { self.heldCount == 0 } }
    func stop(timeout: Duration) {}
    var queuedBytes: Int { 0 }
    var statistics: TraceSinkStatistics { TraceSinkStatistics() }
}

@Suite(.timeLimit(.minutes(10))) struct RevokeTests {
    /// One shard keeping every trace, a 1 s decision wait on `clock`, kept traces to `sink`.
    func stage(sink: HoldingSink, clock: ManualClock) throws -> SamplingStage {
        let metrics = SamplingMetrics(shards: 1)
        let rules = try RuleStore(path: nil, metrics: metrics, logger: quietLogger, fallback: Engine.keepEverything)
        return SamplingStage(
            rules: rules, metrics: metrics, shardCount: 1, bufferLimit: 64 << 20,
            fanOut: KeptTraceFanOut(sinks: [sink], logger: quietLogger), decisionWaitOverride: .seconds(1), clock: clock,
            logger: quietLogger)
    }

    /// A revoke waits for the kept traces of the partitions it hands over, not for the sinks' whole
    /// backlog: with another partition's kept traces stuck in a slow sink, revoking this one returns
    /// as soon as its own traces are acknowledged (it used to wait the full 10 s bound, and the whole
    /// group's rebalance with it), and commits past them.
    @Test func aRevokeWaitsOnlyForTheTracesItHandsOver() throws {
        let sink = HoldingSink(holding: 2)
        let clock = ManualClock()
        let stage = try stage(sink: sink, clock: clock)
        defer { stage.stop() }
        stage.assigned([1: TopicPartition("spans", 0), 2: TopicPartition("spans", 1)], committed: [1: 0, 2: 0])
        func hand(_ lane: Lane, offset: Int64, trace: UInt64) throws {
            var batch = SpanBatch(selection: stage.attributeSelection)
            let outcome = try SpanDecoder(encoding: .otlpProto).decode(otlpTrace(TraceID(high: UInt64(lane), low: trace), spans: 1...3), into: &batch)
            stage.ingest(batch, messages: [IngestedMessage(lane: lane, offset: offset, spans: outcome.spans)])
        }
        // Partition 1's trace is decided (kept) and stuck in the sink. (Buffered first: the clock
        // moves only once the shard has it, so its deadline is behind the new time.)
        try hand(2, offset: 0, trace: 1)
        #expect(waitUntil(.seconds(10)) { stage.metrics.buffered.traces == 1 })
        clock.advance(.seconds(2))
        #expect(waitUntil(.seconds(10)) { sink.heldCount == 1 }, "partition 1's kept trace waits in the sink")
        // Partition 0's trace is buffered, undecided, when partition 0 is revoked.
        try hand(1, offset: 0, trace: 1)
        #expect(waitUntil(.seconds(10)) { stage.metrics.buffered.traces == 1 && stage.metrics.snapshot.kept == 1 })
        let started = ContinuousClock.now
        let safe = stage.revoked([1])
        let took = ContinuousClock.now - started
        #expect(safe == [1: 1], "partition 0 commits past its trace, decided and acknowledged")
        #expect(took < .seconds(3), "the revoke took \(took); partition 1's stuck trace is not its business")
        #expect(sink.heldCount == 1, "partition 1's trace is still unacknowledged")
        #expect(sink.received.load(ordering: .relaxed) == 2)
        sink.release()
    }

    /// The README's bound on a revoke's wait for a sink that is down: at most 10 s, or the drain
    /// timeout (80% of `--shutdown-timeout`) if shorter — the whole group's rebalance waits with it.
    /// What the sink has not acknowledged by then stays uncommitted (the next owner replays it).
    @Test(arguments: [(drain: Duration.milliseconds(1500), expected: Duration.milliseconds(1500)), (.seconds(30), .seconds(10))])
    func aRevokeWaitsForADownSinkAtMostItsBound(drain: Duration, expected: Duration) throws {
        let sink = HoldingSink(holding: 1)
        let clock = ManualClock()
        let stage = try stage(sink: sink, clock: clock)
        stage.drainTimeout = drain
        defer {
            sink.release()
            stage.stop()
        }
        stage.assigned([1: TopicPartition("spans", 0)], committed: [1: 0])
        var batch = SpanBatch(selection: stage.attributeSelection)
        let outcome = try SpanDecoder(encoding: .otlpProto).decode(otlpTrace(TraceID(high: 1, low: 1), spans: 1...3), into: &batch)
        stage.ingest(batch, messages: [IngestedMessage(lane: 1, offset: 0, spans: outcome.spans)])
        #expect(waitUntil(.seconds(10)) { stage.metrics.buffered.traces == 1 })
        let started = ContinuousClock.now
        let safe = stage.revoked([1])
        let took = ContinuousClock.now - started
        #expect(sink.heldCount == 1, "decided and handed to the sink, which never answers")
        #expect(took >= expected && took < expected + .seconds(2), "waited \(took), bound \(expected)")
        #expect(safe == [1: 0], "nothing committed past the unacknowledged trace")
    }
}
