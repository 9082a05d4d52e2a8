import Foundation
public import OTLP

/// The one hand-made OTLP request of the Storage and Engine tests: an `ExportTraceServiceRequest` of
/// trace `id` with a `service.name` resource (none when nil), a `dogbook` scope, and one span per id
/// in `spans`, named by `name`.
public func otlpTrace(
    _ id: TraceID, spans: some Sequence<UInt64>, service: String? = "feed-service", name: (UInt64) -> String = { "op-\($0)" }
) -> [UInt8] {
    var w = ProtoWriter()
    w.writeNested(1) { rs in
        if let service {
            rs.writeNested(1) { r in
                r.writeNested(1) { kv in
                    kv.writeStringField(1, "service.name")
                    kv.writeNested(2) { $0.writeStringField(1, service) }
                }
            }
        }
        rs.writeNested(2) { ss in
            ss.writeNested(1) { $0.writeStringField(1, "dogbook") }
            for s in spans {
                ss.writeNested(2) { span in
                    span.writeBytesField(1, id.bytes)
                    span.writeBytesField(2, SpanID(rawValue: s).bytes)
                    span.writeStringField(5, name(s))
                }
            }
        }
    }
    return w.bytes
}

/// An OTLP `KeyValue` with a string value, encoded.
public func otlpKeyValue(_ key: String, _ value: String) -> [UInt8] {
    var any = ProtoWriter()
    any.writeStringField(1, value)
    var keyValue = ProtoWriter()
    keyValue.writeStringField(1, key)
    keyValue.writeBytesField(2, any.bytes)
    return keyValue.bytes
}

/// `promtool check metrics` (Debian's `prometheus` package; CI installs it) on `text`: its exit
/// status and what it reported. Throws when promtool is not installed.
public func promtoolCheckMetrics(_ text: String) throws -> (status: Int32, report: String) {
    guard let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw PromtoolMissing()
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: promtool)
    process.arguments = ["check", "metrics"]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = output
    try process.run()
    input.fileHandleForWriting.write(Data(text.utf8))
    try input.fileHandleForWriting.close()
    let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, report)
}

public struct PromtoolMissing: Error, CustomStringConvertible {
    public var description: String { "promtool not installed (apt-get install prometheus)" }
}
