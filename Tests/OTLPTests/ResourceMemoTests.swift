import OTLP
import TestSupport
import Testing

/// A batch parses each distinct resource once: every later copy of the same bytes is taken from the
/// first (its ``ResourceRecord/canonical``), which the windows' shared envelopes build on. Resources
/// of one deployment share their shape and differ in a few bytes (the service and pod names):
/// DogBook's six services, as its SDKs send them, each message carrying all six.
@Suite struct ResourceMemoTests {
    static let services = ["frontend", "api-gateway", "feed-service", "photo-service", "user-service", "auth-service"]

    static func message(trace: UInt8) -> [UInt8] {
        var request = ProtoWriter()
        for (index, service) in services.enumerated() {
            var resource = ProtoWriter()
            for (key, value) in [
                ("service.name", service), ("service.namespace", "dogbook"), ("service.version", "2.4.1"),
                ("deployment.environment.name", "production"), ("k8s.namespace.name", "dogbook"),
                ("k8s.pod.name", "\(service)-5d8c7b9f4-q7x2m"), ("cloud.provider", "azure"), ("cloud.platform", "azure_aks"),
                ("telemetry.sdk.language", service == "frontend" ? "nodejs" : "go"), ("telemetry.sdk.name", "opentelemetry"),
            ] {
                resource.writeBytesField(1, otlpKeyValue(key, value))
            }
            var span = ProtoWriter()
            span.writeBytesField(1, [UInt8](repeating: trace, count: 16))
            span.writeBytesField(2, [UInt8](repeating: UInt8(index + 1), count: 8))
            span.writeStringField(5, "GET /dogs")
            var scopeSpans = ProtoWriter()
            scopeSpans.writeBytesField(2, span.bytes)
            var resourceSpans = ProtoWriter()
            resourceSpans.writeBytesField(1, resource.bytes)
            resourceSpans.writeBytesField(2, scopeSpans.bytes)
            request.writeBytesField(1, resourceSpans.bytes)
        }
        return request.bytes
    }

    @Test func everyRepeatOfAResourceIsTakenFromItsFirstCopy() throws {
        var batch = SpanBatch()
        let decoder = SpanDecoder(encoding: .otlpProto)
        for trace in 1...40 { _ = try decoder.decode(Self.message(trace: UInt8(trace)), into: &batch) }
        #expect(batch.resources.count == 40 * Self.services.count)
        let bytes = batch.resources.map { resource in batch.withBytes(resource.encoded) { Array($0) } }
        var firsts: [[UInt8]: Int] = [:]
        for (index, resource) in batch.resources.enumerated() {
            let first = firsts[bytes[index]] ?? index
            firsts[bytes[index]] = first
            #expect(Int(resource.canonical) == first, "resource \(index) (\(batch.string(resource.serviceName)))")
        }
        #expect(firsts.count == Self.services.count)
    }
}
