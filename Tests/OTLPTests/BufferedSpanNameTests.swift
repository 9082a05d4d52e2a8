import Foundation
import OTLP
import Testing

/// A buffered span records where its name lies in its bytes; reading the name must give what the
/// official protobuf runtime reads, wherever the name sits and however large what precedes it.
@Suite struct BufferedSpanNameTests {
    /// Every span of the SDK fixture, buffered as the window buffers it, names itself as the
    /// protobuf runtime read it (`many_traces.expected.json`).
    @Test func everySDKSpanNamesItselfAsTheProtobufRuntimeReadsIt() throws {
        let expected = try Fixtures.expected("many_traces.expected.json")
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(try Fixtures.bytes("many_traces.pb"), into: &batch)
        var trace = TraceData(traceID: batch.spans[0].traceID)
        for record in batch.spans { trace.append(record, from: batch, batchGeneration: 1) }
        #expect(trace.spans.count == expected.count)
        for (span, want) in zip(trace.spans, expected) {
            #expect(trace.string(trace.name(of: span)) == want["name"] as! String)
            #expect(span.nameLength != BufferedSpan.nameUnknown)
        }
    }

    /// A name after 70 000 bytes of `trace_state` lies beyond what 16 bits address: it is found by
    /// walking the span's fields instead.
    @Test func aNameBeyondSixtyFourKiBIsFoundByWalking() throws {
        var span = ProtoWriter()
        span.writeBytesField(1, Array(repeating: 0x11, count: 16))
        span.writeBytesField(2, Array(repeating: 0x22, count: 8))
        span.writeStringField(3, String(repeating: "k", count: 70_000))
        span.writeStringField(5, "GET /dogs/{id}")
        let trace = try buffered(MessageBuilder.request(spans: [span.bytes]))
        #expect(trace.spans[0].nameLength == BufferedSpan.nameUnknown)
        #expect(trace.string(trace.name(of: trace.spans[0])) == "GET /dogs/{id}")
    }

    /// Protobuf: a scalar field written twice takes its last value — the name the decoder read, not
    /// the first one a walk meets.
    @Test func aNameWrittenTwiceIsTheLast() throws {
        var span = ProtoWriter()
        span.writeBytesField(1, Array(repeating: 0x11, count: 16))
        span.writeBytesField(2, Array(repeating: 0x22, count: 8))
        span.writeStringField(5, "first")
        span.writeFixed64Field(7, 1_000)
        span.writeStringField(5, "GET /dogs")
        let trace = try buffered(MessageBuilder.request(spans: [span.bytes]))
        #expect(trace.string(trace.name(of: trace.spans[0])) == "GET /dogs")
    }

    /// An unnamed span (no field 5) and an empty name read as empty.
    @Test func noNameIsEmpty() throws {
        var span = ProtoWriter()
        span.writeBytesField(1, Array(repeating: 0x11, count: 16))
        span.writeBytesField(2, Array(repeating: 0x22, count: 8))
        let trace = try buffered(MessageBuilder.request(spans: [span.bytes, MessageBuilder.span(
            traceID: Array(repeating: 0x11, count: 16), spanID: Array(repeating: 0x33, count: 8), name: "")]))
        #expect(trace.spans.count == 2)
        for buffered in trace.spans { #expect(trace.name(of: buffered).count == 0) }
    }

    /// The name's place lives in the record's padding: a buffered span costs 72 bytes, as before.
    @Test func aBufferedSpanStaysSeventyTwoBytes() {
        #expect(MemoryLayout<BufferedSpan>.stride == 72)
    }

    private func buffered(_ message: [UInt8]) throws -> TraceData {
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(message, into: &batch)
        var trace = TraceData(traceID: batch.spans[0].traceID)
        for record in batch.spans { trace.append(record, from: batch, batchGeneration: 1) }
        return trace
    }
}
