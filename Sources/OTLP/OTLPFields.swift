/// The field numbers of the OTLP trace messages (opentelemetry-proto: `collector/trace/v1`,
/// `trace/v1`, `common/v1`, `resource/v1`), named once for every walker of the wire format — the
/// decoder, the JSON writer and transcoder, the redaction rewriter, the buffered trace, the splitter,
/// the store's merger and the search's attribute walker.
public enum OTLPField {
    /// `ExportTraceServiceRequest` (and tempopb `Trace`, which shares the number).
    public enum ExportTraceServiceRequest {
        @inlinable public static var resourceSpans: UInt32 { 1 }
    }

    public enum ResourceSpans {
        @inlinable public static var resource: UInt32 { 1 }
        @inlinable public static var scopeSpans: UInt32 { 2 }
        @inlinable public static var schemaURL: UInt32 { 3 }
    }

    public enum Resource {
        @inlinable public static var attributes: UInt32 { 1 }
        @inlinable public static var droppedAttributesCount: UInt32 { 2 }
    }

    public enum ScopeSpans {
        @inlinable public static var scope: UInt32 { 1 }
        @inlinable public static var spans: UInt32 { 2 }
        @inlinable public static var schemaURL: UInt32 { 3 }
    }

    public enum InstrumentationScope {
        @inlinable public static var name: UInt32 { 1 }
        @inlinable public static var version: UInt32 { 2 }
        @inlinable public static var attributes: UInt32 { 3 }
        @inlinable public static var droppedAttributesCount: UInt32 { 4 }
    }

    public enum Span {
        @inlinable public static var traceID: UInt32 { 1 }
        @inlinable public static var spanID: UInt32 { 2 }
        @inlinable public static var traceState: UInt32 { 3 }
        @inlinable public static var parentSpanID: UInt32 { 4 }
        @inlinable public static var name: UInt32 { 5 }
        @inlinable public static var kind: UInt32 { 6 }
        @inlinable public static var startTimeUnixNano: UInt32 { 7 }
        @inlinable public static var endTimeUnixNano: UInt32 { 8 }
        @inlinable public static var attributes: UInt32 { 9 }
        @inlinable public static var droppedAttributesCount: UInt32 { 10 }
        @inlinable public static var events: UInt32 { 11 }
        @inlinable public static var droppedEventsCount: UInt32 { 12 }
        @inlinable public static var links: UInt32 { 13 }
        @inlinable public static var droppedLinksCount: UInt32 { 14 }
        @inlinable public static var status: UInt32 { 15 }
        @inlinable public static var flags: UInt32 { 16 }
    }

    public enum Event {
        @inlinable public static var timeUnixNano: UInt32 { 1 }
        @inlinable public static var name: UInt32 { 2 }
        @inlinable public static var attributes: UInt32 { 3 }
        @inlinable public static var droppedAttributesCount: UInt32 { 4 }
    }

    public enum Link {
        @inlinable public static var traceID: UInt32 { 1 }
        @inlinable public static var spanID: UInt32 { 2 }
        @inlinable public static var traceState: UInt32 { 3 }
        @inlinable public static var attributes: UInt32 { 4 }
        @inlinable public static var droppedAttributesCount: UInt32 { 5 }
        @inlinable public static var flags: UInt32 { 6 }
    }

    public enum Status {
        @inlinable public static var message: UInt32 { 2 }
        @inlinable public static var code: UInt32 { 3 }
    }

    public enum KeyValue {
        @inlinable public static var key: UInt32 { 1 }
        @inlinable public static var value: UInt32 { 2 }
    }

    public enum AnyValue {
        @inlinable public static var stringValue: UInt32 { 1 }
        @inlinable public static var boolValue: UInt32 { 2 }
        @inlinable public static var intValue: UInt32 { 3 }
        @inlinable public static var doubleValue: UInt32 { 4 }
        @inlinable public static var arrayValue: UInt32 { 5 }
        @inlinable public static var kvlistValue: UInt32 { 6 }
        @inlinable public static var bytesValue: UInt32 { 7 }
    }

    /// `ArrayValue` and `KeyValueList` both hold their elements in field 1.
    public enum ArrayValue {
        @inlinable public static var values: UInt32 { 1 }
    }

    public enum KeyValueList {
        @inlinable public static var values: UInt32 { 1 }
    }
}
