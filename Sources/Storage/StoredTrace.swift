public import OTLP

/// A kept trace as the store writes it: its id, the policy that kept it, and an OTLP
/// `ExportTraceServiceRequest` holding its spans byte for byte under their resources and scopes.
public struct StoredTrace: Sendable, Equatable {
    public var traceID: TraceID
    public var policy: String
    public var request: [UInt8]

    public init(traceID: TraceID, policy: String, request: [UInt8]) {
        self.traceID = traceID
        self.policy = policy
        self.request = request
    }
}

/// Merges pieces of one trace (stored at different times: late spans, replays after a crash) into
/// one `ExportTraceServiceRequest`, each span once (the first copy of a span id wins), grouped under
/// its resource and scope. Optionally adds `tailgate.policy` to every span.
public enum TraceMerger {
    /// The attribute key as it appears in an encoded span (length-prefixed).
    static let policyKey: [UInt8] = [UInt8(TraceData.policyAttributeKey.utf8.count)] + Array(TraceData.policyAttributeKey.utf8)

    public static func merge(_ pieces: [StoredTrace], policyAttribute: Bool) throws(OTLPDecodeError) -> [UInt8] {
        var batch = SpanBatch()
        var policies: [String] = []
        for piece in pieces {
            let before = batch.spans.count
            _ = try SpanDecoder(encoding: .otlpProto).decode(piece.request, into: &batch)
            policies += Array(repeating: piece.policy, count: batch.spans.count - before)
        }
        var seen = Set<SpanID>()
        let unique = batch.spans.indices.filter { seen.insert(batch.spans[$0].spanID).inserted }
        return encode(batch, spans: unique, policies: policyAttribute ? policies : nil)
    }

    /// `request` (an `ExportTraceServiceRequest`) as two requests holding the first and the second
    /// half of its spans, each span under its own resource and scope, bytes unchanged; nil when it
    /// holds fewer than two spans. How a sink splits a trace its receiver finds too large.
    public static func halves(_ request: [UInt8]) throws(OTLPDecodeError) -> (first: [UInt8], second: [UInt8])? {
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
        guard batch.spans.count >= 2 else { return nil }
        let middle = batch.spans.count / 2
        return (encode(batch, spans: Array(0..<middle), policies: nil), encode(batch, spans: Array(middle..<batch.spans.count), policies: nil))
    }

    /// Writes the spans at `spans` (indices into `batch`) as one request, grouped under their resource
    /// and scope; with `policies`, appends `tailgate.policy` to spans that do not carry it yet.
    static func encode(_ batch: SpanBatch, spans: [Int], policies: [String]?) -> [UInt8] {
        var writer = ProtoWriter()
        var openResource: (resource: [UInt8], schema: [UInt8])?
        var openScope: (scope: [UInt8], schema: [UInt8])?
        var resourceMessage: ProtoWriter.NestedMessage?
        var scopeMessage: ProtoWriter.NestedMessage?
        for index in spans {
            let span = batch.spans[index]
            let scope = batch.scopes[Int(span.scopeIndex)]
            let resource = batch.resources[Int(scope.resourceIndex)]
            let resourceKey = (batch.withBytes(resource.encoded) { Array($0) }, batch.withBytes(resource.schemaURL) { Array($0) })
            let scopeKey = (batch.withBytes(scope.encoded) { Array($0) }, batch.withBytes(scope.schemaURL) { Array($0) })
            if openResource.map({ $0.resource != resourceKey.0 || $0.schema != resourceKey.1 }) ?? true {
                if let scopeMessage { writer.endNested(scopeMessage) }
                if let resourceMessage { writer.endNested(resourceMessage) }
                resourceMessage = writer.beginNested(OTLPField.ExportTraceServiceRequest.resourceSpans)
                writer.writeBytesField(OTLPField.ResourceSpans.resource, resourceKey.0)
                if !resourceKey.1.isEmpty { writer.writeBytesField(OTLPField.ResourceSpans.schemaURL, resourceKey.1) }
                openResource = resourceKey
                openScope = nil
                scopeMessage = nil
            }
            if openScope.map({ $0.scope != scopeKey.0 || $0.schema != scopeKey.1 }) ?? true {
                if let scopeMessage { writer.endNested(scopeMessage) }
                scopeMessage = writer.beginNested(OTLPField.ResourceSpans.scopeSpans)
                writer.writeBytesField(OTLPField.ScopeSpans.scope, scopeKey.0)
                if !scopeKey.1.isEmpty { writer.writeBytesField(OTLPField.ScopeSpans.schemaURL, scopeKey.1) }
                openScope = scopeKey
            }
            let spanMessage = writer.beginNested(OTLPField.ScopeSpans.spans)
            // Pieces stored since the policy is encoded with the trace carry it already.
            let carriesPolicy = batch.withBytes(span.encoded) { bytes -> Bool in
                writer.bytes.append(contentsOf: bytes)
                return bytes.firstRange(of: policyKey) != nil
            }
            if let policies, !policies[index].isEmpty, !carriesPolicy {
                // Appending a field keeps every received byte of the span as it was.
                writer.writeNested(OTLPField.Span.attributes) { kv in
                    kv.writeStringField(OTLPField.KeyValue.key, "tailgate.policy")
                    kv.writeNested(OTLPField.KeyValue.value) { $0.writeStringField(OTLPField.AnyValue.stringValue, policies[index]) }
                }
            }
            writer.endNested(spanMessage)
        }
        if let scopeMessage { writer.endNested(scopeMessage) }
        if let resourceMessage { writer.endNested(resourceMessage) }
        return writer.bytes
    }
}
