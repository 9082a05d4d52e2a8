/// The field numbers of the OTLP trace messages (opentelemetry-proto: `collector/trace/v1`,
/// `trace/v1`, `common/v1`, `resource/v1`), named once for every walker of the wire format — the
/// decoder, the JSON writer and transcoder, the redaction rewriter, the buffered trace, the splitter,
/// the store's merger and the search's attribute walker.
public enum OTLPField {
    /// `ExportTraceServiceRequest` (and tempopb `Trace`, which shares the number).
    public enum ExportTraceServiceRequest {
        public static let resourceSpans: UInt32 = 1
    }

    public enum ResourceSpans {
        public static let resource: UInt32 = 1
        public static let scopeSpans: UInt32 = 2
        public static let schemaURL: UInt32 = 3
    }

    public enum Resource {
        public static let attributes: UInt32 = 1
        public static let droppedAttributesCount: UInt32 = 2
    }

    public enum ScopeSpans {
        public static let scope: UInt32 = 1
        public static let spans: UInt32 = 2
        public static let schemaURL: UInt32 = 3
    }

    public enum InstrumentationScope {
        public static let name: UInt32 = 1
        public static let version: UInt32 = 2
        public static let attributes: UInt32 = 3
        public static let droppedAttributesCount: UInt32 = 4
    }

    public enum Span {
        public static let traceID: UInt32 = 1
        public static let spanID: UInt32 = 2
        public static let traceState: UInt32 = 3
        public static let parentSpanID: UInt32 = 4
        public static let name: UInt32 = 5
        public static let kind: UInt32 = 6
        public static let startTimeUnixNano: UInt32 = 7
        public static let endTimeUnixNano: UInt32 = 8
        public static let attributes: UInt32 = 9
        public static let droppedAttributesCount: UInt32 = 10
        public static let events: UInt32 = 11
        public static let droppedEventsCount: UInt32 = 12
        public static let links: UInt32 = 13
        public static let droppedLinksCount: UInt32 = 14
        public static let status: UInt32 = 15
        public static let flags: UInt32 = 16
    }

    public enum Event {
        public static let timeUnixNano: UInt32 = 1
        public static let name: UInt32 = 2
        public static let attributes: UInt32 = 3
        public static let droppedAttributesCount: UInt32 = 4
    }

    public enum Link {
        public static let traceID: UInt32 = 1
        public static let spanID: UInt32 = 2
        public static let traceState: UInt32 = 3
        public static let attributes: UInt32 = 4
        public static let droppedAttributesCount: UInt32 = 5
        public static let flags: UInt32 = 6
    }

    public enum Status {
        public static let message: UInt32 = 2
        public static let code: UInt32 = 3
    }

    public enum KeyValue {
        public static let key: UInt32 = 1
        public static let value: UInt32 = 2
    }

    public enum AnyValue {
        public static let stringValue: UInt32 = 1
        public static let boolValue: UInt32 = 2
        public static let intValue: UInt32 = 3
        public static let doubleValue: UInt32 = 4
        public static let arrayValue: UInt32 = 5
        public static let kvlistValue: UInt32 = 6
        public static let bytesValue: UInt32 = 7
    }

    /// `ArrayValue` and `KeyValueList` both hold their elements in field 1.
    public enum ArrayValue {
        public static let values: UInt32 = 1
    }

    public enum KeyValueList {
        public static let values: UInt32 = 1
    }
}
