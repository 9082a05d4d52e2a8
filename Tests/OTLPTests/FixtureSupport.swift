import Foundation
import OTLP

/// The SDK-made fixtures in Tests/Fixtures (see make_fixtures.py).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: directory.appendingPathComponent(name)))
    }

    /// The expected spans, in wire order, as the official protobuf runtime read them.
    static func expected(_ name: String) throws -> [[String: Any]] {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try JSONSerialization.jsonObject(with: data) as! [[String: Any]]
    }

    /// Every attribute key (span and resource) the expectations mention, so that all get decoded.
    static func allKeys(_ expected: [[String: Any]]) -> [String] {
        var keys: [String] = []
        for span in expected {
            keys += (span["attributes"] as! [String: Any]).keys.sorted()
            keys += (span["resourceAttributes"] as! [String: Any]).keys.sorted()
        }
        return keys
    }
}

extension SpanBatch {
    /// Renders a typed value the way the expectations file does.
    func expectationForm(_ value: AttributeValue) -> [String: AnyHashable] {
        switch value {
        case .string(let range): ["string": string(range)]
        case .bool(let bool): ["bool": bool]
        case .int(let int): ["int": String(int)]
        case .double(let double): ["double": double]
        case .bytes(let range): ["bytes": HexDigits.string(withBytes(range) { Array($0) })]
        case .array(let range): ["array": Int(range.count)]
        case .keyValueList(let range): ["kvlist": Int(range.count)]
        case .empty: ["empty": true]
        }
    }
}

/// Builds small OTLP messages by hand for the bad-input cases.
struct MessageBuilder {
    var writer = ProtoWriter()

    static func span(traceID: [UInt8], spanID: [UInt8], parent: [UInt8] = [], name: String = "op") -> [UInt8] {
        var span = ProtoWriter()
        span.writeBytesField(1, traceID)
        span.writeBytesField(2, spanID)
        if !parent.isEmpty { span.writeBytesField(4, parent) }
        span.writeStringField(5, name)
        span.writeFixed64Field(7, 1_000)
        span.writeFixed64Field(8, 2_000)
        return span.bytes
    }

    /// An `ExportTraceServiceRequest` with one resource (`service.name` = service) and these spans.
    static func request(service: String = "checkout", spans: [[UInt8]]) -> [UInt8] {
        var w = ProtoWriter()
        w.writeNested(1) { rs in
            rs.writeNested(1) { resource in
                resource.writeNested(1) { kv in
                    kv.writeStringField(1, "service.name")
                    kv.writeNested(2) { $0.writeStringField(1, service) }
                }
            }
            rs.writeNested(2) { ss in
                for span in spans { ss.writeBytesField(2, span) }
            }
        }
        return w.bytes
    }
}
