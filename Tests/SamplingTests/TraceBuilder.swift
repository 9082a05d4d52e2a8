import OTLP
import Sampling

/// Builds traces for policy tests: spans encoded as OTLP, decoded as the engine decodes them, and
/// buffered as the window buffers them.
struct TestSpan {
    enum Value { case string(String), int(Int64), double(Double), bool(Bool) }
    var name = "op"
    var service = "checkout"
    var startMs: UInt64 = 0
    var durationMs: UInt64 = 10
    var status: StatusCode = .unset
    var kind: SpanKind = .internal
    var attributes: [(String, Value)] = []
    var resourceAttributes: [(String, Value)] = []
    var traceState = ""
    var flags: UInt32 = 0
    var root = false
}

func writeValue(_ writer: inout ProtoWriter, _ key: String, _ value: TestSpan.Value) {
    writer.writeNested(1) { kv in
        kv.writeStringField(1, key)
        kv.writeNested(2) { any in
            switch value {
            case .string(let s): any.writeStringField(1, s)
            case .bool(let b): any.writeVarintField(2, b ? 1 : 0)
            case .int(let i): any.writeVarintField(3, UInt64(bitPattern: i))
            case .double(let d): any.writeDoubleField(4, d)
            }
        }
    }
}

func makeTrace(_ spans: [TestSpan], traceID: TraceID = TraceID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10), selection: AttributeSelection) throws -> TraceData {
    var trace = TraceData(traceID: traceID)
    let base: UInt64 = 1_764_000_000_000_000_000
    for (index, span) in spans.enumerated() {
        var request = ProtoWriter()
        request.writeNested(1) { rs in
            rs.writeNested(1) { resource in
                writeValue(&resource, "service.name", .string(span.service))
                for (key, value) in span.resourceAttributes { writeValue(&resource, key, value) }
            }
            rs.writeNested(2) { ss in
                ss.writeNested(2) { s in
                    s.writeBytesField(1, traceID.bytes)
                    s.writeBytesField(2, SpanID(rawValue: UInt64(index + 1)).bytes)
                    if !span.traceState.isEmpty { s.writeStringField(3, span.traceState) }
                    if !span.root && index > 0 { s.writeBytesField(4, SpanID(rawValue: 1).bytes) }
                    s.writeStringField(5, span.name)
                    s.writeVarintField(6, UInt64(span.kind.rawValue))
                    s.writeFixed64Field(7, base + span.startMs * 1_000_000)
                    s.writeFixed64Field(8, base + (span.startMs + span.durationMs) * 1_000_000)
                    for (key, value) in span.attributes {
                        s.writeNested(9) { kv in
                            kv.writeStringField(1, key)
                            kv.writeNested(2) { any in
                                switch value {
                                case .string(let v): any.writeStringField(1, v)
                                case .bool(let v): any.writeVarintField(2, v ? 1 : 0)
                                case .int(let v): any.writeVarintField(3, UInt64(bitPattern: v))
                                case .double(let v): any.writeDoubleField(4, v)
                                }
                            }
                        }
                    }
                    if span.status != .unset { s.writeNested(15) { $0.writeVarintField(3, UInt64(span.status.rawValue)) } }
                    if span.flags != 0 { s.writeFixed32Field(16, span.flags) }
                }
            }
        }
        var batch = SpanBatch(selection: selection)
        _ = try SpanDecoder(encoding: .otlpProto).decode(request.bytes, into: &batch)
        for record in batch.spans { trace.append(record, from: batch, batchGeneration: UInt64(index)) }
    }
    return trace
}

/// Parses `yaml` (policies only) into a rule set.
func rules(_ yaml: String) throws -> RuleSet {
    RuleSet(configuration: try RuleFile.parse(yaml, file: "rules.yaml"))
}

let second: UInt64 = 1_000_000_000
