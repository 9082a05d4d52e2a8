import Engine
import Foundation
import Ingest
import Kafka
import OTLP
import Sampling
import Sinks
import Synchronization
import Testing
import TestSupport

/// The README's backpressure rule, on an injected clock: consumption pauses once what is held passes
/// `--buffer-limit` and resumes only below 80% of it — not on the first byte under the limit.
@Suite(.timeLimit(.minutes(10))) struct BackpressureTests {
    @Test func pausesAboveTheLimitAndResumesOnlyBelowEightyPercent() throws {
        let clock = ManualClock()
        let metrics = SamplingMetrics(shards: 1)
        let rules = try RuleStore(path: try writeRules("decision_wait: 10s\ndecision_wait_after_root_received: 10s\npolicies: [{name: all, type: always_sample}]"),
                                  metrics: metrics, logger: quietLogger, fallback: Engine.keepEverything)
        let limit = 64 * 1024
        let stage = SamplingStage(
            rules: rules, metrics: metrics, shardCount: 1, bufferLimit: limit,
            fanOut: KeptTraceFanOut(sinks: [KeptTraces()], logger: quietLogger), clock: clock, logger: quietLogger)
        defer { stage.stop() }
        let events = Mutex<[(paused: Bool, heldBytes: Int)]>([])
        stage.onPressure { paused in events.withLock { $0.append((paused, stage.metrics.buffered.bytes)) } }
        stage.assigned([1: TopicPartition("spans", 0)], committed: [1: 0])

        // A trace every 100 ms, each of 8 spans with 500-byte names, until the stage pauses.
        var offset: Int64 = 0
        while events.withLock({ $0.isEmpty }) && offset < 400 {
            var batch = SpanBatch(selection: stage.attributeSelection)
            let request = otlpTrace(TraceID(high: 0xBAC, low: UInt64(offset)), spans: 1...8) { _ in String(repeating: "p", count: 500) }
            let outcome = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            stage.ingest(batch, messages: [IngestedMessage(lane: 1, offset: offset, spans: outcome.spans)])
            offset += 1
            let count = Int(offset)
            #expect(waitUntil(.seconds(10)) { stage.metrics.buffered.traces == count })
            _ = stage.committableOffsets()  // the ingest loop's periodic look, which applies the pressure
            clock.advance(.milliseconds(100))
        }
        let pause = try #require(events.withLock { $0.first })
        #expect(pause.paused && pause.heldBytes > limit, "paused above the limit: \(pause.heldBytes) of \(limit)")

        // The oldest trace reaches its 10 s decision wait, then one more every 100 ms; after each, the
        // pressure is looked at again. The rule, by hand: no resume while 80% of the limit is held.
        clock.advance(.seconds(10) - .milliseconds(100) * Int(offset))
        var observed: [(held: Int, resumed: Bool)] = []
        var first = true
        while stage.metrics.buffered.traces > 0 && events.withLock({ $0.count }) < 2 {
            let before = stage.metrics.buffered.traces
            if !first { clock.advance(.milliseconds(100)) }
            first = false
            #expect(waitUntil(.seconds(10)) { stage.metrics.buffered.traces < before })
            _ = stage.committableOffsets()
            observed.append((stage.metrics.buffered.bytes, events.withLock { $0.count } == 2))
        }
        let resume = try #require(events.withLock { $0.count == 2 ? $0[1] : nil }, "consumption resumed: \(observed)")
        #expect(!resume.paused)
        #expect(resume.heldBytes < limit * 8 / 10, "resumed below 80%: \(resume.heldBytes) of \(limit)")
        let heldWhilePausedUnderTheLimit = observed.filter { !$0.resumed && $0.held < limit }
        #expect(!heldWhilePausedUnderTheLimit.isEmpty, "it stayed paused under the limit (between 80% and 100%): \(observed)")
        #expect(heldWhilePausedUnderTheLimit.allSatisfy { $0.held >= limit * 8 / 10 })
    }
}
