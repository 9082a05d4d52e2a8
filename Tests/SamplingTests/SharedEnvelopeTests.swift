import OTLP
import Sampling
import Testing

/// A window holds each resource and scope once for all the traces that came under the same bytes
/// (one per trace in a keyed topic: a third of its bytes), and gives every byte back unchanged.
@Suite struct SharedEnvelopeTests {
    static let selection = AttributeSelection(keys: ["deployment.environment.name", "http.route"])

    /// One keyed message: a trace of `spans` spans under the resource of `pod` (built here, by hand).
    static func message(trace: UInt64, spans: Int, pod: String) -> [UInt8] {
        var request = ProtoWriter()
        request.writeNested(1) { rs in
            rs.writeNested(1) { resource in
                writeValue(&resource, "service.name", .string("feed-service"))
                writeValue(&resource, "deployment.environment.name", .string("production"))
                writeValue(&resource, "k8s.pod.name", .string(pod))
            }
            rs.writeNested(2) { ss in
                ss.writeNested(1) { scope in
                    scope.writeStringField(1, "dogbook.feed")
                    scope.writeStringField(2, "1.0.0")
                }
                for index in 0..<spans {
                    ss.writeNested(2) { span in
                        span.writeBytesField(1, TraceID(high: 7, low: trace).bytes)
                        span.writeBytesField(2, SpanID(rawValue: UInt64(index + 1)).bytes)
                        if index > 0 { span.writeBytesField(4, SpanID(rawValue: 1).bytes) }
                        span.writeStringField(5, "GET /feed/\(index)")
                        span.writeFixed64Field(7, 1_000)
                        span.writeFixed64Field(8, 2_000)
                        span.writeNested(9) { kv in
                            kv.writeStringField(1, "http.route")
                            kv.writeNested(2) { $0.writeStringField(1, "/feed/\(index)") }
                        }
                    }
                }
                ss.writeStringField(3, "https://opentelemetry.io/schemas/1.26.0")
            }
            rs.writeStringField(3, "https://opentelemetry.io/schemas/1.26.0")
        }
        return request.bytes
    }

    static func decoded(_ message: [UInt8]) throws -> SpanBatch {
        var batch = SpanBatch(selection: selection)
        _ = try SpanDecoder(encoding: .otlpProto).decode(message, into: &batch)
        return batch
    }

    static func window() -> TraceWindow {
        TraceWindow(limits: WindowLimits(decisionWait: .seconds(10)), cache: DecisionCache(keptCapacity: 0, droppedCapacity: 0))
    }

    /// Inserts the spans of `batch` as a shard does (the run measured first), in poll `generation`.
    static func insert(_ batch: SpanBatch, into window: inout TraceWindow, generation: UInt64) {
        var ready: [ReadyTrace] = []
        let run = TraceRun.measure(batch.spans.indices, from: 0, in: batch).run
        for (index, span) in batch.spans.enumerated() {
            _ = window.insert(
                span, from: batch, batchGeneration: generation, source: SourcePosition(lane: 0, offset: Int64(generation)), now: 0,
                ready: &ready, expected: index == 0 ? run : nil)
        }
    }

    @Test func tracesUnderTheSameResourceShareItAndExportTheirOwnBytes() throws {
        let first = Self.message(trace: 1, spans: 3, pod: "feed-1")
        let second = Self.message(trace: 2, spans: 3, pod: "feed-1")
        let other = Self.message(trace: 3, spans: 3, pod: "feed-2")
        var window = Self.window()
        for (generation, message) in [first, second, other].enumerated() {
            Self.insert(try Self.decoded(message), into: &window, generation: UInt64(generation + 1))
        }
        var ready: [ReadyTrace] = []
        window.releaseAll(into: &ready)
        let traces = Dictionary(uniqueKeysWithValues: ready.map { ($0.trace.traceID.low, $0.trace) })
        let (one, two, three) = (try #require(traces[1]), try #require(traces[2]), try #require(traces[3]))

        // Every byte as it came: the message of one trace is re-exported as it was written above.
        #expect(one.exportRequest() == first)
        #expect(two.exportRequest() == second)
        #expect(three.exportRequest() == other)

        // The same resource and scope bytes: one shared envelope; another pod: another.
        let shared = try #require(one.envelopes.first?.shared)
        #expect(two.envelopes.first?.shared === shared)
        #expect(three.envelopes.first?.shared !== shared && three.envelopes.first?.shared != nil)

        // What policies read is unchanged: the resource's selected attribute on every span (the
        // envelope's first span copies it, the others repeat it), and the service.
        let environment = try #require(Self.selection.id(of: "deployment.environment.name"))
        for trace in [one, two, three] {
            #expect(trace.spans.count == 3)
            for span in trace.spans {
                let values = trace.attributes(of: span).filter { $0.key == environment }.map { attribute -> String in
                    guard case .string(let range) = attribute.value else { return "not a string" }
                    return trace.string(range)
                }
                #expect(values == ["production"])
                #expect(trace.string(trace.service(of: span)) == "feed-service")
            }
        }

        // The resource and scope are not in the traces' own bytes: each holds less than its message.
        #expect(one.payload.count < first.count - 100)
    }

    /// The window's account counts a shared envelope once; an empty window keeps it (counted) for
    /// the next trace of the same pod, which adds no envelope.
    @Test func aSharedEnvelopeIsCountedOnceAndKeptForTheNextTrace() throws {
        var window = Self.window()
        Self.insert(try Self.decoded(Self.message(trace: 1, spans: 2, pod: "feed-1")), into: &window, generation: 1)
        let oneTrace = window.residentBytes
        let shared = oneTrace - window.bufferedBytes
        #expect(shared > 100, "the resource, the scope and the two schema URLs, held once")
        Self.insert(try Self.decoded(Self.message(trace: 2, spans: 2, pod: "feed-1")), into: &window, generation: 2)
        #expect(window.residentBytes - window.bufferedBytes == shared, "the second trace adds no envelope")

        var ready: [ReadyTrace] = []
        window.releaseAll(into: &ready)
        #expect(window.bufferedBytes == 0)
        // A trace let go of (decided, then recycled or dropped) no longer holds the envelope.
        for item in ready { window.recycle(item.trace) }
        ready.removeAll()
        window.expire(now: 1, into: &ready)
        #expect(window.residentBytes == shared, "kept for reuse, and counted")
        Self.insert(try Self.decoded(Self.message(trace: 3, spans: 2, pod: "feed-1")), into: &window, generation: 3)
        #expect(window.residentBytes - window.bufferedBytes == shared)
    }

    /// A hundred pods: the table grows past its first sizes (sweeping as it goes, while every
    /// envelope is held), every trace still exports its own message, and each trace of a pod shares
    /// that pod's envelope; once no trace holds them, an empty window forgets them (more than it
    /// keeps for reuse).
    @Test func manyResourcesGrowTheTableAndStayApart() throws {
        var window = Self.window()
        var messages: [UInt64: [UInt8]] = [:]
        for trace in 1...200 as ClosedRange<UInt64> {
            let message = Self.message(trace: trace, spans: 2, pod: "feed-\(trace % 100)")
            messages[trace] = message
            Self.insert(try Self.decoded(message), into: &window, generation: trace)
        }
        var ready: [ReadyTrace] = []
        window.releaseAll(into: &ready)
        #expect(ready.count == 200)
        var byPod: [UInt64: SharedEnvelope] = [:]
        for item in ready {
            let id = item.trace.traceID.low
            #expect(item.trace.exportRequest() == messages[id])
            let shared = try #require(item.trace.envelopes.first?.shared)
            if let other = byPod[id % 100] { #expect(other === shared) } else { byPod[id % 100] = shared }
        }
        #expect(Set(byPod.values.map { ObjectIdentifier($0) }).count == 100)
        for item in ready { window.recycle(item.trace) }
        ready.removeAll()
        byPod.removeAll()
        window.expire(now: 1, into: &ready)
        #expect(window.residentBytes == 0)
    }

    /// A revoke while traces of two partitions share an envelope: the revoked partition's trace is
    /// forgotten (recycled), the other's keeps the envelope and still exports its own message.
    @Test func aRevokeForgetsOneTraceAndTheOtherKeepsTheSharedEnvelope() throws {
        let kept = Self.message(trace: 1, spans: 2, pod: "feed-1")
        let revoked = Self.message(trace: 2, spans: 2, pod: "feed-1")
        var window = Self.window()
        var ready: [ReadyTrace] = []
        for (lane, message) in [(UInt32(0), kept), (UInt32(1), revoked)] {
            let batch = try Self.decoded(message)
            for span in batch.spans {
                _ = window.insert(
                    span, from: batch, batchGeneration: UInt64(lane + 1), source: SourcePosition(lane: lane, offset: 0), now: 0, ready: &ready)
            }
        }
        let shared = window.residentBytes - window.bufferedBytes
        #expect(window.forget(lanes: [1]) == 1)
        #expect(window.traceCount == 1)
        window.expire(now: 1, into: &ready)
        #expect(window.residentBytes - window.bufferedBytes == shared, "the envelope stays while a trace holds it")
        window.releaseAll(into: &ready)
        #expect(ready.map(\.trace.traceID.low) == [1])
        #expect(ready.first?.trace.exportRequest() == kept)
    }

    /// A released trace that is still on its way (a kept trace not yet stored) keeps its envelope:
    /// the sweep forgets only what nobody holds.
    @Test func anEnvelopeStillHeldSurvivesTheSweep() throws {
        let message = Self.message(trace: 1, spans: 2, pod: "feed-1")
        var window = Self.window()
        Self.insert(try Self.decoded(message), into: &window, generation: 1)
        var ready: [ReadyTrace] = []
        window.releaseAll(into: &ready)
        let held = try #require(ready.first?.trace)
        ready.removeAll()
        window.expire(now: 1, into: &ready)
        #expect(window.residentBytes > 0)
        #expect(held.exportRequest() == message)
    }
}
