import Engine
import Foundation
import Ingest
import Kafka
import OTLP
import Sampling
import Synchronization
import Testing
import TestSupport

/// `tailgate_trace_decisions_total{reason}` counts each decision by what triggered it. Four traces,
/// each made to leave the window one way, on an injected clock: the counts are the test's own.
@Suite(.timeLimit(.minutes(10))) struct DecisionReasonTests {
    /// A request of trace `id` whose spans all name parent `0x99` (none of them a root) unless `root`.
    static func request(_ id: TraceID, spans: ClosedRange<UInt64>, root: Bool) -> [UInt8] {
        var w = ProtoWriter()
        w.writeNested(1) { rs in
            rs.writeNested(2) { ss in
                for s in spans {
                    ss.writeNested(2) { span in
                        span.writeBytesField(1, id.bytes)
                        span.writeBytesField(2, SpanID(rawValue: s).bytes)
                        if !(root && s == spans.lowerBound) { span.writeBytesField(4, SpanID(rawValue: 0x99).bytes) }
                        span.writeStringField(5, "op-\(s)")
                    }
                }
            }
        }
        return w.bytes
    }

    @Test func decisionsAreCountedByWhatTriggeredThem() throws {
        let clock = ManualClock()
        let metrics = SamplingMetrics(shards: 1)
        let rules = try RuleStore(
            path: try writeRules(
                "decision_wait: 10s\ndecision_wait_after_root_received: 1s\nmax_spans_per_trace: 5\npolicies: [{name: all, type: always_sample}]"),
            metrics: metrics, logger: quietLogger, fallback: Engine.keepEverything)
        let stage = SamplingStage(
            rules: rules, metrics: metrics, shardCount: 1, bufferLimit: 64 << 20,
            fanOut: KeptTraceFanOut(sinks: [KeptTraces()], logger: quietLogger), clock: clock, logger: quietLogger)
        defer { stage.stop() }
        stage.assigned([1: TopicPartition("spans", 0)], committed: [1: 0])
        var offset: Int64 = 0
        func hand(_ low: UInt64, spans: ClosedRange<UInt64>, root: Bool) throws {
            var batch = SpanBatch(selection: stage.attributeSelection)
            let outcome = try SpanDecoder(encoding: .otlpProto).decode(Self.request(TraceID(high: 7, low: low), spans: spans, root: root), into: &batch)
            stage.ingest(batch, messages: [IngestedMessage(lane: 1, offset: offset, spans: outcome.spans)])
            offset += 1
        }
        func decided() -> [DecisionReason: Int] { stage.metrics.snapshot.decisionsByReason.filter { $0.value > 0 } }

        // Six spans against a limit of five: decided on the fifth, at once. The sixth, in the same
        // poll, comes before that decision is made and starts a trace of its own, rootless.
        try hand(1, spans: 1...6, root: true)
        #expect(waitUntil(.seconds(10)) { decided() == [.maxSpans: 1] }, "\(decided())")
        // With its root: decided 1 s after it (decision_wait_after_root_received).
        try hand(2, spans: 1...3, root: true)
        // Without a root: only decision_wait (10 s) ends it.
        try hand(3, spans: 1...3, root: false)
        #expect(waitUntil(.seconds(10)) { stage.metrics.buffered.traces == 3 }, "the sixth span of trace 1, traces 2 and 3")
        clock.advance(.milliseconds(1500))
        #expect(waitUntil(.seconds(10)) { decided() == [.maxSpans: 1, .rootReceived: 1] }, "\(decided())")
        clock.advance(.seconds(9))
        #expect(waitUntil(.seconds(10)) { decided() == [.maxSpans: 1, .rootReceived: 1, .decisionWait: 2] }, "\(decided())")
        // Still buffered when the stage stops: decided by the flush.
        try hand(4, spans: 1...2, root: false)
        #expect(waitUntil(.seconds(10)) { stage.metrics.buffered.traces == 1 })
        stage.drain()
        #expect(decided() == [.maxSpans: 1, .rootReceived: 1, .decisionWait: 2, .flush: 1])
    }
}
