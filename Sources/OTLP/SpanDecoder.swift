/// The encodings the OpenTelemetry Collector's kafka exporter writes for traces.
public enum OTLPEncoding: String, Sendable, CaseIterable {
    /// Protobuf `ExportTraceServiceRequest` (the exporter's default).
    case otlpProto = "otlp_proto"
    /// OTLP/JSON.
    case otlpJSON = "otlp_json"
}

/// Decodes messages of one ``OTLPEncoding`` into a ``SpanBatch``.
public struct SpanDecoder: Sendable {
    public let encoding: OTLPEncoding

    public init(encoding: OTLPEncoding) { self.encoding = encoding }

    /// Decodes `message`, appending its spans to `batch`. On error the batch is unchanged.
    @inline(__always)
    public func decode(_ message: UnsafeRawBufferPointer, into batch: inout SpanBatch) throws(OTLPDecodeError) -> DecodeOutcome {
        switch encoding {
        case .otlpProto: try ProtobufSpanDecoder().decode(message, into: &batch)
        case .otlpJSON: try JSONSpanDecoder().decode(message, into: &batch)
        }
    }

    /// Convenience for tests and tools: decodes a byte array.
    public func decode(_ message: [UInt8], into batch: inout SpanBatch) throws(OTLPDecodeError) -> DecodeOutcome {
        let result: Result<DecodeOutcome, OTLPDecodeError> = message.withUnsafeBytes { raw in
            do throws(OTLPDecodeError) { return .success(try decode(raw, into: &batch)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}
