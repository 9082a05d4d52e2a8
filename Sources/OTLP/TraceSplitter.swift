/// Re-keys OTLP input by trace: messages of any shape (many traces per message, a trace spread over
/// messages, `otlp_proto` or `otlp_json`) go in, and one `otlp_proto` `ExportTraceServiceRequest` per
/// trace comes out, the shape the collector's kafka exporter writes with `partition_traces_by_id`.
///
/// Every span leaves byte for byte under the resource and scope it arrived with (their bytes and
/// schema URLs too); spans of one trace that came in several of the added messages leave together.
/// Pure and reusable: ``removeAll()`` keeps every buffer's capacity.
public struct TraceSplitter: Sendable {
    public private(set) var batch: SpanBatch
    private var groupOfTrace = TraceIDTable()
    private var traceIDs: [TraceID] = []
    /// Per span of the batch, its trace's group.
    private var groupOfSpan: [Int32] = []

    public init() { batch = SpanBatch() }

    /// Traces added since the last ``removeAll()``.
    public var traceCount: Int { traceIDs.count }

    /// Spans added since the last ``removeAll()``.
    public var spanCount: Int { batch.spans.count }

    /// Empties the splitter, keeping capacity.
    public mutating func removeAll() {
        batch.removeAll()
        groupOfTrace.removeAll()
        traceIDs.removeAll(keepingCapacity: true)
        groupOfSpan.removeAll(keepingCapacity: true)
    }

    /// Decodes `message` and adds its spans. A malformed message throws and adds nothing; spans refused
    /// one by one (bad ids) are left out and counted in the outcome, as `run` does.
    public mutating func add(_ message: UnsafeRawBufferPointer, encoding: OTLPEncoding) throws(OTLPDecodeError) -> DecodeOutcome {
        let outcome = try SpanDecoder(encoding: encoding).decode(message, into: &batch)
        for index in outcome.spans {
            let id = batch.spans[index].traceID
            let group: Int32
            if let known = groupOfTrace[id] {
                group = known
            } else {
                group = Int32(traceIDs.count)
                groupOfTrace[id] = group
                traceIDs.append(id)
            }
            groupOfSpan.append(group)
        }
        return outcome
    }

    /// Convenience for tests and tools.
    public mutating func add(_ message: [UInt8], encoding: OTLPEncoding) throws(OTLPDecodeError) -> DecodeOutcome {
        let result: Result<DecodeOutcome, OTLPDecodeError> = message.withUnsafeBytes { raw in
            do throws(OTLPDecodeError) { return .success(try add(raw, encoding: encoding)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// One request per trace, in the order of each trace's first span, its spans in arrival order.
    /// A trace whose request would exceed `maxBytes` leaves as several requests, split by span (a
    /// single span larger than `maxBytes` still leaves alone: the caller decides what to do with it).
    public func forEachTrace<E: Error>(maxBytes: Int = .max, _ body: (TraceID, [UInt8]) throws(E) -> Void) throws(E) {
        guard !traceIDs.isEmpty else { return }
        // A stable counting sort of span indices by group: each trace's spans end up contiguous.
        var starts = [Int](repeating: 0, count: traceIDs.count + 1)
        for group in groupOfSpan { starts[Int(group) + 1] += 1 }
        for index in 1..<starts.count { starts[index] += starts[index - 1] }
        var next = starts
        var ordered = [Int32](repeating: 0, count: groupOfSpan.count)
        for (span, group) in groupOfSpan.enumerated() {
            ordered[next[Int(group)]] = Int32(span)
            next[Int(group)] += 1
        }
        for (group, id) in traceIDs.enumerated() {
            try emit(id, ordered[starts[group]..<starts[group + 1]], maxBytes: maxBytes, body)
        }
    }

    private func emit<E: Error>(
        _ id: TraceID, _ spans: ArraySlice<Int32>, maxBytes: Int, _ body: (TraceID, [UInt8]) throws(E) -> Void
    ) throws(E) {
        let request = encode(spans)
        if request.count <= maxBytes || spans.count == 1 {
            try body(id, request)
            return
        }
        let middle = spans.startIndex + spans.count / 2
        try emit(id, spans[..<middle], maxBytes: maxBytes, body)
        try emit(id, spans[middle...], maxBytes: maxBytes, body)
    }

    /// `spans` (batch indices) as one `ExportTraceServiceRequest`: consecutive spans of one resource
    /// share a `ResourceSpans`, of one scope a `ScopeSpans`.
    func encode(_ spans: ArraySlice<Int32>) -> [UInt8] {
        var writer = ProtoWriter()
        var bytes = 0
        for span in spans { bytes += Int(batch.spans[Int(span)].encoded.count) + 4 }
        writer.bytes.reserveCapacity(bytes + 256)
        var index = spans.startIndex
        while index < spans.endIndex {
            let scopeIndex = batch.spans[Int(spans[index])].scopeIndex
            let resourceIndex = batch.scopes[Int(scopeIndex)].resourceIndex
            let resource = batch.resources[Int(resourceIndex)]
            let resourceSpans = writer.beginNested(OTLPField.ExportTraceServiceRequest.resourceSpans)
            if resource.encoded.count > 0 { batch.withBytes(resource.encoded) { writer.writeBytesField(OTLPField.ResourceSpans.resource, $0) } }
            while index < spans.endIndex {
                let scopeIndex = batch.spans[Int(spans[index])].scopeIndex
                let scope = batch.scopes[Int(scopeIndex)]
                guard scope.resourceIndex == resourceIndex else { break }
                let scopeSpans = writer.beginNested(OTLPField.ResourceSpans.scopeSpans)
                if scope.encoded.count > 0 { batch.withBytes(scope.encoded) { writer.writeBytesField(OTLPField.ScopeSpans.scope, $0) } }
                while index < spans.endIndex, batch.spans[Int(spans[index])].scopeIndex == scopeIndex {
                    batch.withBytes(batch.spans[Int(spans[index])].encoded) { writer.writeBytesField(OTLPField.ScopeSpans.spans, $0) }
                    index += 1
                }
                if scope.schemaURL.count > 0 { batch.withBytes(scope.schemaURL) { writer.writeBytesField(OTLPField.ScopeSpans.schemaURL, $0) } }
                writer.endNested(scopeSpans)
            }
            if resource.schemaURL.count > 0 { batch.withBytes(resource.schemaURL) { writer.writeBytesField(OTLPField.ResourceSpans.schemaURL, $0) } }
            writer.endNested(resourceSpans)
        }
        return writer.bytes
    }
}
