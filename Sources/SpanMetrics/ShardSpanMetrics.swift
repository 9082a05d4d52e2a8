public import OTLP

/// One shard's RED and service-graph aggregation, fed with whole traces as they are decided (every
/// trace is decided, kept or dropped, so every span is counted once, before sampling).
///
/// Counting at decision time rather than on arrival buys three things: service-graph edges pair
/// exactly (the whole trace is at hand — no edge store that expires half-pairs), exemplars can be
/// restricted to traces that were kept, and a partition revoked mid-window is not counted twice (its
/// undecided traces are replayed and counted by the next owner). Spans that arrive after their trace
/// was decided are counted on arrival (``recordLate(_:from:kept:wallClockMillis:)``).
///
/// Single-threaded: the owning shard holds it under a lock once per cycle, not per span. Service
/// and peer names are interned once per trace into small node ids, so a span costs a short key (node
/// id, name, kind, status, dimensions), a hash and a probe, and an edge a probe by one packed
/// integer; series seen before allocate nothing.
public struct ShardSpanMetrics: Sendable {
    struct Keys: Sendable {
        var peerService, serverAddress, networkPeerAddress, networkPeerPort, dbName, dbNamespace, dbSystem: AttributeKeyID?
    }

    let registry: SeriesRegistry
    let boundsNanos: [UInt64]
    let bucketCount: Int
    let dimensionKeys: [AttributeKeyID?]
    let keys: Keys
    let localCacheLimit: Int

    // Span metrics, by global series index.
    private var redCache = ByteKeyTable()
    /// Without dimensions: (name hash, service node, kind, status) packed → an entry of `namedSeries`.
    private var nameCache = IntKeyTable()
    private var namedSeries = NamedSeries()
    /// Calls, size and latency sum of a series, together: one array write per span, not three.
    struct SeriesStats: Sendable {
        var calls: UInt64 = 0
        var size: UInt64 = 0
        var latencySum: Double = 0
    }

    var stats: [SeriesStats] = []
    var latencyCounts: [UInt64] = []
    /// With a span multiplier: calls, sizes and bucket counts weighted by each span's adjusted count
    /// (empty otherwise; the latency sums above are weighted then).
    let weighted: Bool
    var weightedCalls: [Double] = []
    var weightedSizes: [Double] = []
    var weightedLatencyCounts: [Double] = []
    var latencyExemplars: [Exemplar?] = []
    /// The same from kept traces only, each span weighted by its trace's adjusted count (1 for a
    /// trace some policy had to keep, 1/p for a keep with probability p): the Horvitz–Thompson
    /// estimate of calls and latency that a backend holding only the kept traces would compute.
    var estimatedCalls: [Double] = []
    var estimatedLatencyCounts: [Double] = []
    /// Kept traces per service they touch (a trace counts once per service): service names → index
    /// into the counts (never emptied: services are few).
    private var keptServices = ByteKeyTable()
    var keptServiceCounts: [UInt64] = []
    var keptTracesByService: [String: UInt64] {
        var result: [String: UInt64] = [:]
        for (index, count) in keptServiceCounts.enumerated() {
            result[String(decoding: keptServices.key(at: Int32(index)), as: UTF8.self), default: 0] &+= count
        }
        return result
    }

    // Service graph, by global edge index.
    private var edgeCache = IntKeyTable()
    var requests: [UInt64] = []
    var failed: [UInt64] = []
    var clientCounts: [UInt64] = []
    var clientSums: [Double] = []
    var clientExemplars: [Exemplar?] = []
    var serverCounts: [UInt64] = []
    var serverSums: [Double] = []
    var serverExemplars: [Exemplar?] = []

    // Propagation health.
    private var brokenCache = IntKeyTable()
    var broken: [UInt64] = []

    // Node names (services, peers, databases) → small ids; ids are entry indices of `nodes`.
    private var nodes = ByteKeyTable()
    private var nodeIsService: [Bool] = []
    private var userNode: Int32 = -1
    var tracesWithoutRoot: UInt64 = 0
    var tracesWithOrphans: UInt64 = 0
    var overflowSamples = Array(repeating: UInt64(0), count: SeriesFamily.allCases.count)

    // Scratch, reused.
    private let key = KeyBuffer()
    private var spanIndex = SpanIndexTable()
    private var paired: [Bool] = []
    private var envelopeNodes: [Int32] = []
    private var lateTrace = TraceData(traceID: .zero)

    /// - Parameter selection: the decoder's attribute selection (it must contain
    ///   ``SpanMetricsConfiguration/attributeKeys``; ids of keys it lacks read as absent).
    public init(configuration: SpanMetricsConfiguration, registry: SeriesRegistry, selection: AttributeSelection) {
        self.registry = registry
        boundsNanos = configuration.latencyBuckets.map { UInt64(($0 * 1e9).rounded()) }
        bucketCount = configuration.latencyBuckets.count + 1
        dimensionKeys = configuration.dimensions.map { selection.id(of: $0) }
        keys = Keys(
            peerService: selection.id(of: "peer.service"), serverAddress: selection.id(of: "server.address"),
            networkPeerAddress: selection.id(of: "network.peer.address"), networkPeerPort: selection.id(of: "network.peer.port"),
            dbName: selection.id(of: "db.name"), dbNamespace: selection.id(of: "db.namespace"), dbSystem: selection.id(of: "db.system"))
        localCacheLimit = configuration.maxSeriesPerMetric * 4 + 1024
        weighted = configuration.spanMultiplier == .tracestate
    }

    /// A span's incoming adjusted count (1 without a valid `ot=th`).
    @inline(__always)
    private func multiplier(_ view: TraceView, _ span: BufferedSpan) -> Double {
        guard span.traceState.count > 0, Int(span.traceState.offset) + Int(span.traceState.count) <= view.payload.count else { return 1 }
        let bytes = UnsafeRawBufferPointer(rebasing: view.payload[Int(span.traceState.offset)..<(Int(span.traceState.offset) + Int(span.traceState.count))])
        return TraceStateThreshold.threshold(Substring(decoding: bytes, as: UTF8.self))?.adjustedCount ?? 1
    }

    // MARK: Recording

    /// Counts every span of a decided trace and pairs its service-graph edges. `kept` traces lend
    /// their id to exemplars.
    /// `weight`: a kept trace's adjusted count, for the estimate from kept traces.
    public mutating func record(_ trace: TraceData, kept: Bool, weight: Double = 1, wallClockMillis: Int64) {
        guard !trace.spans.isEmpty else { return }
        TraceView.with(trace) { view in
            touchNames(view)
            internServices(view)
            for index in 0..<view.spans.count {
                recordSpan(view, index, kept: kept, wallClockMillis: wallClockMillis, estimateWeight: kept ? weight : 0)
            }
            recordGraph(view, kept: kept, wallClockMillis: wallClockMillis)
            if kept { countKeptTrace(view) }
        }
    }

    /// Loads the first byte of every name the metrics read from the trace's bytes — the services,
    /// and the strings of its client spans (their peers) — one after another, before any is used:
    /// the trace was buffered long ago and each is a cache miss, and misses issued together overlap
    /// where misses met one at a time, each behind a hash and a probe, wait in turn.
    @inline(__always)
    private mutating func touchNames(_ view: TraceView) {
        guard let base = view.payload.baseAddress else { return }
        let count = view.payload.count
        var sum: UInt8 = 0
        for envelope in view.envelopes where Int(envelope.service.offset) < count {
            sum &+= base.load(fromByteOffset: Int(envelope.service.offset), as: UInt8.self)
        }
        for span in view.spans where span.kind == .client {
            for index in Int(span.firstAttribute)..<(Int(span.firstAttribute) + Int(span.attributeCount)) {
                if case .string(let range) = view.attributes[index].value, Int(range.offset) < count {
                    sum &+= base.load(fromByteOffset: Int(range.offset), as: UInt8.self)
                }
            }
        }
        touched &+= sum
    }
    /// What ``touchNames(_:)`` read, kept so that its loads are not optimised away.
    private var touched: UInt8 = 0

    /// One more kept trace for each service it touches (no allocation once the services are known).
    private mutating func countKeptTrace(_ view: TraceView) {
        let envelopes = view.envelopes.count
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: max(1, envelopes)) { seen in
            var distinct = 0
            for envelope in 0..<envelopes {
                let node = envelopeNodes[envelope]
                if (0..<distinct).contains(where: { seen[$0] == node }) { continue }
                seen[distinct] = node
                distinct += 1
                let range = view.envelopes[envelope].service
                guard Int(range.offset) + Int(range.count) <= view.payload.count else { continue }
                let name = UnsafeRawBufferPointer(rebasing: view.payload[Int(range.offset)..<(Int(range.offset) + Int(range.count))])
                let hash = hashBytes(name)
                if let index = keptServices.find(name, hash: hash) {
                    keptServiceCounts[Int(index)] &+= 1
                } else {
                    keptServices.insert(name, hash: hash, value: Int32(keptServiceCounts.count))
                    keptServiceCounts.append(1)
                }
            }
        }
    }

    /// Counts a span that arrived after its trace was decided (span metrics only: its trace's edges
    /// were paired at the decision).
    public mutating func recordLate(_ span: SpanRecord, from batch: SpanBatch, kept: Bool, wallClockMillis: Int64) {
        lateTrace.reset(traceID: span.traceID)
        lateTrace.append(span, from: batch, batchGeneration: 0)
        let trace = lateTrace
        TraceView.with(trace) { view in
            internServices(view)
            recordSpan(view, 0, kept: kept, wallClockMillis: wallClockMillis, estimateWeight: 0)
        }
    }

    /// Node ids of the trace's services (one per envelope). Node ids stay valid for the whole trace:
    /// the tables are only ever emptied here, before a trace, when they grew past their bound.
    private mutating func internServices(_ view: TraceView) {
        if nodes.count + view.envelopes.count + 2 * view.spans.count > localCacheLimit || cachesFull { forgetCaches() }
        envelopeNodes.removeAll(keepingCapacity: true)
        for envelope in view.envelopes {
            let node = intern(UnsafeRawBufferPointer(rebasing: view.payload[envelope.service.lowerBound..<envelope.service.upperBound]))
            nodeIsService[Int(node)] = true
            envelopeNodes.append(node)
        }
    }

    /// Whether a cache of label combinations reached its bound (a burst of new names, ids in span
    /// names): they are emptied then, between traces — on arrival as at a decision, so that spans
    /// arriving for seconds before any decision cannot grow them without bound.
    private var cachesFull: Bool {
        nodes.count >= localCacheLimit || redCache.count >= localCacheLimit || nameCache.count >= localCacheLimit
    }

    /// Empties the caches of nodes, series and edges (series indices are the registry's and stay valid;
    /// node ids are handed out anew).
    private mutating func forgetCaches() {
        nodes.removeAll()
        nodesEpoch &+= 1
        nodeIsService.removeAll(keepingCapacity: true)
        userNode = -1
        redCache.removeAll()
        nameCache.removeAll()
        namedSeries.removeAll()
        edgeCache.removeAll()
        brokenCache.removeAll()
    }

    /// Label combinations the caches hold now (for tests of their bound).
    var cachedCombinations: Int { max(nodes.count, redCache.count, nameCache.count) }

    @inline(__always)
    private mutating func intern(_ name: UnsafeRawBufferPointer) -> Int32 {
        let hash = hashBytes(name)
        if let node = nodes.find(name, hash: hash) { return node }
        let node = Int32(nodes.count)
        nodes.insert(name, hash: hash, value: node)
        nodeIsService.append(false)
        return node
    }

    @inline(__always)
    private func serviceNode(of span: BufferedSpan) -> Int32 { envelopeNodes[Int(span.envelope)] }

    private mutating func recordSpan(_ view: TraceView, _ index: Int, kept: Bool, wallClockMillis: Int64, estimateWeight: Double) {
        let span = view.spans[index]
        // A series found on arrival is this shard's (its arrays grew to it then); anything else —
        // none, or a trace that never arrived here — is found now.
        let series = Int(span.series >= 0 && Int(span.series) < stats.count ? span.series : seriesAtDecision(view, span))
        let duration = span.durationNanos
        let bucket = bucketIndex(duration)
        let base = series * bucketCount
        stats[series].calls &+= 1
        stats[series].size &+= UInt64(span.encoded.count)
        latencyCounts[base + bucket] &+= 1
        if weighted {
            let weight = multiplier(view, span)
            weightedCalls[series] += weight
            weightedSizes[series] += weight * Double(span.encoded.count)
            weightedLatencyCounts[base + bucket] += weight
            stats[series].latencySum += weight * Double(duration) / 1e9
        } else {
            stats[series].latencySum += Double(duration) / 1e9
        }
        if estimateWeight > 0 {
            estimatedCalls[series] += estimateWeight
            estimatedLatencyCounts[base + bucket] += estimateWeight
        }
        if kept {
            latencyExemplars[base + bucket] = Exemplar(
                traceID: view.traceID, spanID: span.spanID, value: Double(duration) / 1e9, timestampMillis: wallClockMillis)
        }
    }

    /// The series of a span that arrives in `batch`, found now, while its bytes are at hand, to be
    /// kept with the span until its trace is decided (``BufferedSpan/series``): at the decision its
    /// trace's bytes are long out of the cache, and reading each span's name there cost a miss per
    /// span. Only the intrinsic labels are known this early (-1 with dimensions: found at the
    /// decision, from the trace's attributes). Series indices are the registry's, never reused, so
    /// one found here stays valid while the span waits.
    public mutating func seriesOnArrival(_ span: SpanRecord, from batch: SpanBatch, batchGeneration: UInt64) -> Int32 {
        guard dimensionKeys.isEmpty else { return -1 }
        if cachesFull { forgetCaches() }
        let resource = batch.resource(of: span)
        return batch.bytes.withUnsafeBytes { all -> Int32 in
            // A poll's copies of one resource share its first copy's index (`canonical`): its node is
            // interned once per poll.
            let slot = Int(resource.canonical) & (Self.arrivalSlots - 1)
            let node: Int32
            if arrivalNodes[slot].batchGeneration == batchGeneration && arrivalNodes[slot].canonical == resource.canonical
                && arrivalNodes[slot].nodesEpoch == nodesEpoch
            {
                node = arrivalNodes[slot].node
            } else {
                let service = resource.serviceName
                node = intern(UnsafeRawBufferPointer(rebasing: all[service.lowerBound..<service.upperBound]))
                arrivalNodes[slot] = ArrivalNode(batchGeneration: batchGeneration, canonical: resource.canonical, nodesEpoch: nodesEpoch, node: node)
            }
            let name = UnsafeRawBufferPointer(rebasing: all[span.name.lowerBound..<span.name.upperBound])
            return intrinsicSeries(node: node, name: name, kind: span.kind, status: span.statusCode)
        }
    }

    /// The service node of a resource of a poll, by its first copy's index.
    private struct ArrivalNode {
        var batchGeneration = UInt64.max
        var canonical = UInt32.max
        var nodesEpoch = 0
        var node: Int32 = -1
    }
    private static let arrivalSlots = 64
    private var arrivalNodes = Array(repeating: ArrivalNode(), count: arrivalSlots)
    /// Counts the emptyings of `nodes` (node ids are reassigned after one).
    private var nodesEpoch = 0

    /// The series of a buffered span whose series was not found on arrival.
    private mutating func seriesAtDecision(_ view: TraceView, _ span: BufferedSpan) -> Int32 {
        let name = TraceData.spanName(of: span, in: view.payload)
        guard dimensionKeys.isEmpty, name.upperBound <= view.payload.count else { return seriesByKey(view, span, name) }
        return intrinsicSeries(
            node: serviceNode(of: span), name: UnsafeRawBufferPointer(rebasing: view.payload[Int(name.offset)..<name.upperBound]),
            kind: span.kind, status: span.statusCode)
    }

    /// The series of a span when only the intrinsic labels count (no dimensions): found by its
    /// service node, kind, status and a hash of its name packed in one word, then confirmed against
    /// the name's bytes — no key is built. A span this misses (first sight, or a hash shared by two
    /// names) takes the full key, and the first sight is remembered here.
    @inline(__always)
    private mutating func intrinsicSeries(node: Int32, name: UnsafeRawBufferPointer, kind: SpanKind, status: StatusCode) -> Int32 {
        guard UInt32(bitPattern: node) < 1 << 24 else { return intrinsicSeriesByKey(node: node, name: name, kind: kind, status: status) }
        let packed = hashBytes(name) & 0xFFFF_FFFF | UInt64(UInt32(bitPattern: node)) << 32
            | UInt64(kind.rawValue & 0x7) << 56 | UInt64(status.rawValue & 0x3) << 59
        if let entry = nameCache.find(packed) {
            if let series = namedSeries.series(entry, ifNamed: name) { return series }
            return intrinsicSeriesByKey(node: node, name: name, kind: kind, status: status)
        }
        let series = intrinsicSeriesByKey(node: node, name: name, kind: kind, status: status)
        nameCache.insert(packed, value: namedSeries.append(series, name: name))
        return series
    }

    /// The full key without dimensions: [service node][name][kind][status].
    private mutating func intrinsicSeriesByKey(node: Int32, name: UnsafeRawBufferPointer, kind: SpanKind, status: StatusCode) -> Int32 {
        key.reset()
        key.append(UInt32(bitPattern: node))
        key.appendField(name)
        key.appendField(byte: kind.rawValue)
        key.appendField(byte: status.rawValue)
        let bytes = key.bytes
        let hash = hashBytes(bytes)
        return redCache.find(bytes, hash: hash) ?? resolveSpanSeries(bytes, hash: hash)
    }

    /// The series of a span by its full key: service node, name, kind, status and the dimensions'
    /// values, length-prefixed in one buffer.
    private mutating func seriesByKey(_ view: TraceView, _ span: BufferedSpan, _ name: ByteRange) -> Int32 {
        key.reset()
        key.append(UInt32(bitPattern: serviceNode(of: span)))
        appendField(view, name)
        key.appendField(byte: span.kind.rawValue)
        key.appendField(byte: span.statusCode.rawValue)
        for dimension in dimensionKeys {
            appendAttributeField(view, span, dimension)
        }
        let bytes = key.bytes
        let hash = hashBytes(bytes)
        return redCache.find(bytes, hash: hash) ?? resolveSpanSeries(bytes, hash: hash)
    }

    private mutating func recordGraph(_ view: TraceView, kept: Bool, wallClockMillis: Int64) {
        let spans = view.spans
        // A parent is found by scanning a small trace's spans (most traces: a dozen, one cache line
        // apart), and through a table of span ids in a large one.
        let scans = spans.count <= Self.scannedTraceLimit
        if !scans {
            spanIndex.reset(expecting: spans.count)
            for index in spans.indices { spanIndex.insert(spans[index].spanID.rawValue, Int32(index)) }
        }
        paired.removeAll(keepingCapacity: true)
        paired.append(contentsOf: repeatElement(false, count: spans.count))
        var hasRoot = false
        var hasOrphan = false
        let exemplarTrace: TraceID? = kept ? view.traceID : nil
        for index in spans.indices {
            let span = spans[index]
            guard span.parentSpanID.isValid else {
                hasRoot = true
                // A server root: its caller is not instrumented (a browser, curl): Tempo's "user" node.
                if span.kind == .server {
                    if userNode < 0 { userNode = intern(UnsafeRawBufferPointer(start: Self.user.utf8Start, count: Self.user.utf8CodeUnitCount)) }
                    recordEdge(
                        client: userNode, server: serviceNode(of: span), type: .virtualNode,
                        client: nil, server: span, failed: span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
                }
                continue
            }
            // Only calls can pair; other kinds need no lookup (but a missing parent is an orphan).
            guard let parentIndex = scans ? Self.scan(spans, for: span.parentSpanID.rawValue) : spanIndex.find(span.parentSpanID.rawValue) else {
                hasOrphan = true
                continue
            }
            guard span.kind == .server || span.kind == .consumer else { continue }
            let parent = spans[Int(parentIndex)]
            let direct = span.kind == .server && parent.kind == .client
            let messaging = span.kind == .consumer && parent.kind == .producer
            guard direct || messaging else { continue }
            paired[Int(parentIndex)] = true
            recordEdge(
                client: serviceNode(of: parent), server: serviceNode(of: span),
                type: messaging ? .messagingSystem : .direct, client: parent, server: span,
                failed: parent.statusCode == .error || span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
        }
        for index in spans.indices where spans[index].kind == .client && !paired[index] {
            let span = spans[index]
            let isDatabase = view.attribute(of: span, keys.dbSystem) != nil || view.attribute(of: span, keys.dbName) != nil
            if isDatabase {
                // Tempo's database node name: peer.service, server.address, network.peer.address:port, db.name.
                let node: Node? = stringNode(view, span, keys.peerService) ?? stringNode(view, span, keys.serverAddress)
                    ?? peerAddressNode(view, span) ?? stringNode(view, span, keys.dbName) ?? stringNode(view, span, keys.dbNamespace)
                    ?? stringNode(view, span, keys.dbSystem)
                if let node {
                    recordEdge(
                        client: serviceNode(of: span), server: internNode(node, view), type: .database, client: span,
                        server: nil, failed: span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
                }
            } else if let peer = stringNode(view, span, keys.peerService) ?? stringNode(view, span, keys.serverAddress) {
                // A call whose server side never joined this trace: an uninstrumented peer (a virtual
                // node) — or, when that peer is a service tailgate sees, a context that was not propagated.
                let peerNode = internNode(peer, view)
                recordEdge(
                    client: serviceNode(of: span), server: peerNode, type: .virtualNode, client: span,
                    server: nil, failed: span.statusCode == .error, trace: exemplarTrace, wallClockMillis: wallClockMillis)
                if nodeIsService[Int(peerNode)] {
                    let pair = UInt64(UInt32(bitPattern: serviceNode(of: span))) | UInt64(UInt32(bitPattern: peerNode)) << 28
                    let index = brokenCache.find(pair) ?? resolveBroken(pair)
                    broken[Int(index)] &+= 1
                }
            }
        }
        if !hasRoot {
            tracesWithoutRoot += 1
        } else if hasOrphan {
            tracesWithOrphans += 1
        }
    }

    static let user: StaticString = "user"

    /// Traces of at most this many spans find parents by scanning (see ``recordGraph(_:kept:wallClockMillis:)``).
    static let scannedTraceLimit = 32

    /// The index of the span with id `id` (the last one, when ids repeat, as the table keeps it).
    @inline(__always)
    static func scan(_ spans: UnsafeBufferPointer<BufferedSpan>, for id: UInt64) -> Int32? {
        var index = spans.count
        while index > 0 {
            index &-= 1
            if spans[index].spanID.rawValue == id { return Int32(index) }
        }
        return nil
    }

    enum Node {
        case range(ByteRange)
        case peerAddress(ByteRange, port: Int64?)
    }

    /// Tempo's `connection_type` values.
    enum ConnectionType: UInt64 {
        case direct = 0, messagingSystem = 1, database = 2, virtualNode = 3

        var label: String {
            switch self {
            case .direct: ""
            case .messagingSystem: "messaging_system"
            case .database: "database"
            case .virtualNode: "virtual_node"
            }
        }
    }

    private mutating func internNode(_ node: Node, _ view: TraceView) -> Int32 {
        switch node {
        case .range(let range):
            return intern(UnsafeRawBufferPointer(rebasing: view.payload[range.lowerBound..<range.upperBound]))
        case .peerAddress(let range, let port):
            key.reset()
            key.append(UnsafeRawBufferPointer(rebasing: view.payload[range.lowerBound..<range.upperBound]))
            if let port {
                key.append(UInt8(ascii: ":"))
                key.appendDecimal(port)
            }
            return intern(key.bytes)
        }
    }

    /// Node ids stay below 2^28 (the tables are bounded far lower), so an edge packs into one word.
    @inline(__always)
    private static func edgeKey(_ client: Int32, _ server: Int32, _ type: ConnectionType) -> UInt64 {
        UInt64(UInt32(bitPattern: client)) | UInt64(UInt32(bitPattern: server)) << 28 | type.rawValue << 56
    }

    private mutating func recordEdge(
        client clientNode: Int32, server serverNode: Int32, type: ConnectionType,
        client: BufferedSpan?, server: BufferedSpan?, failed isFailed: Bool, trace: TraceID?, wallClockMillis: Int64
    ) {
        let packed = Self.edgeKey(clientNode, serverNode, type)
        let index = Int(edgeCache.find(packed) ?? resolveEdge(packed, clientNode, serverNode, type))
        requests[index] &+= 1
        if isFailed { failed[index] &+= 1 }
        if let client {
            let bucket = bucketIndex(client.durationNanos)
            let seconds = Double(client.durationNanos) / 1e9
            clientCounts[index * bucketCount + bucket] &+= 1
            clientSums[index] += seconds
            if let trace {
                clientExemplars[index * bucketCount + bucket] = Exemplar(
                    traceID: trace, spanID: client.spanID, value: seconds, timestampMillis: wallClockMillis)
            }
        }
        if let server {
            let bucket = bucketIndex(server.durationNanos)
            let seconds = Double(server.durationNanos) / 1e9
            serverCounts[index * bucketCount + bucket] &+= 1
            serverSums[index] += seconds
            if let trace {
                serverExemplars[index * bucketCount + bucket] = Exemplar(
                    traceID: trace, spanID: server.spanID, value: seconds, timestampMillis: wallClockMillis)
            }
        }
    }

    // MARK: Series resolution (first sight of a label combination in this shard)

    private func nodeName(_ node: Int32) -> String { String(decoding: nodes.key(at: node), as: UTF8.self) }

    private mutating func resolveSpanSeries(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Int32 {
        // [service node id: 4 bytes][name][kind][status][dimensions…], fields length-prefixed.
        let service = key.loadUnaligned(as: UInt32.self)
        let fields = Self.fields(of: UnsafeRawBufferPointer(rebasing: key[4...]))
        var labels = [
            nodeName(Int32(bitPattern: service)), String(decoding: fields[0], as: UTF8.self),
            (SpanKind(rawValue: fields[1].first ?? 0) ?? .unspecified).protoName,
            (StatusCode(rawValue: fields[2].first ?? 0) ?? .unset).protoName,
        ]
        labels += fields.dropFirst(3).map { String(decoding: $0, as: UTF8.self) }
        let (index, overflow) = registry.resolve(.spanMetrics, labels: labels, rewriteIndex: 1)
        redCache.insert(key, hash: hash, value: index)
        grow(.spanMetrics, toInclude: Int(index))
        if overflow { overflowSamples[SeriesFamily.spanMetrics.rawValue] &+= 1 }
        return index
    }

    private mutating func resolveEdge(_ packed: UInt64, _ client: Int32, _ server: Int32, _ type: ConnectionType) -> Int32 {
        let (index, overflow) = registry.resolve(.serviceGraph, labels: [nodeName(client), nodeName(server), type.label])
        edgeCache.insert(packed, value: index)
        grow(.serviceGraph, toInclude: Int(index))
        if overflow { overflowSamples[SeriesFamily.serviceGraph.rawValue] &+= 1 }
        return index
    }

    private mutating func resolveBroken(_ pair: UInt64) -> Int32 {
        let client = Int32(truncatingIfNeeded: pair & 0x0FFF_FFFF)
        let server = Int32(truncatingIfNeeded: pair >> 28)
        let (index, overflow) = registry.resolve(.brokenPropagation, labels: [nodeName(client), nodeName(server)])
        brokenCache.insert(pair, value: index)
        grow(.brokenPropagation, toInclude: Int(index))
        if overflow { overflowSamples[SeriesFamily.brokenPropagation.rawValue] &+= 1 }
        return index
    }

    private mutating func grow(_ family: SeriesFamily, toInclude index: Int) {
        switch family {
        case .spanMetrics:
            while stats.count <= index {
                stats.append(SeriesStats())
                latencyCounts.append(contentsOf: repeatElement(0, count: bucketCount))
                if weighted {
                    weightedCalls.append(0)
                    weightedSizes.append(0)
                    weightedLatencyCounts.append(contentsOf: repeatElement(0, count: bucketCount))
                }
                latencyExemplars.append(contentsOf: repeatElement(nil, count: bucketCount))
                estimatedCalls.append(0)
                estimatedLatencyCounts.append(contentsOf: repeatElement(0, count: bucketCount))
            }
        case .serviceGraph:
            while requests.count <= index {
                requests.append(0)
                failed.append(0)
                clientSums.append(0)
                serverSums.append(0)
                clientCounts.append(contentsOf: repeatElement(0, count: bucketCount))
                serverCounts.append(contentsOf: repeatElement(0, count: bucketCount))
                clientExemplars.append(contentsOf: repeatElement(nil, count: bucketCount))
                serverExemplars.append(contentsOf: repeatElement(nil, count: bucketCount))
            }
        case .brokenPropagation:
            while broken.count <= index { broken.append(0) }
        }
    }

    /// Splits a key into its length-prefixed fields.
    static func fields(of key: UnsafeRawBufferPointer) -> [[UInt8]] {
        var fields: [[UInt8]] = []
        var position = 0
        while position + 2 <= key.count {
            let length = Int(key[position]) | Int(key[position + 1]) << 8
            position += 2
            fields.append(Array(key[position..<min(key.count, position + length)]))
            position += length
        }
        return fields
    }

    // MARK: Key building

    @inline(__always)
    private func appendField(_ view: TraceView, _ range: ByteRange) {
        key.appendField(UnsafeRawBufferPointer(rebasing: view.payload[range.lowerBound..<range.upperBound]))
    }

    private func appendAttributeField(_ view: TraceView, _ span: BufferedSpan, _ id: AttributeKeyID?) {
        switch view.attribute(of: span, id) {
        case .string(let range)?: appendField(view, range)
        case .int(let value)?:
            let start = key.beginField()
            key.appendDecimal(value)
            key.endField(start)
        case .bool(let value)?: key.appendField(literal: value ? "true" : "false")
        case .double(let value)?:
            let start = key.beginField()
            let text = "\(value)"
            var utf8 = text
            utf8.withUTF8 { key.append(UnsafeRawBufferPointer($0)) }
            key.endField(start)
        case .other?, nil: key.appendField(literal: "")
        }
    }

    // MARK: Reading spans

    @inline(__always)
    private func bucketIndex(_ nanos: UInt64) -> Int {
        var bucket = 0
        while bucket < boundsNanos.count && nanos > boundsNanos[bucket] { bucket += 1 }
        return bucket
    }

    private func stringNode(_ view: TraceView, _ span: BufferedSpan, _ id: AttributeKeyID?) -> Node? {
        if case .string(let range)? = view.attribute(of: span, id), range.count > 0 { return .range(range) }
        return nil
    }

    private func peerAddressNode(_ view: TraceView, _ span: BufferedSpan) -> Node? {
        guard case .string(let range)? = view.attribute(of: span, keys.networkPeerAddress), range.count > 0 else { return nil }
        if case .int(let port)? = view.attribute(of: span, keys.networkPeerPort) { return .peerAddress(range, port: port) }
        return .peerAddress(range, port: nil)
    }
}

/// A decided trace's arrays as unsafe buffers, taken once per trace: the per-span reads then cost no
/// reference counting and no exclusivity checks.
struct TraceView {
    let traceID: TraceID
    let spans: UnsafeBufferPointer<BufferedSpan>
    let attributes: UnsafeBufferPointer<TraceAttribute>
    let envelopes: UnsafeBufferPointer<SpanEnvelope>
    let payload: UnsafeRawBufferPointer

    static func with<R>(_ trace: TraceData, _ body: (TraceView) -> R) -> R {
        trace.spans.withUnsafeBufferPointer { spans in
            trace.attributes.withUnsafeBufferPointer { attributes in
                trace.envelopes.withUnsafeBufferPointer { envelopes in
                    trace.payload.withUnsafeBytes { payload in
                        body(TraceView(traceID: trace.traceID, spans: spans, attributes: attributes, envelopes: envelopes, payload: payload))
                    }
                }
            }
        }
    }

    @inline(__always)
    func service(of span: BufferedSpan) -> ByteRange { envelopes[Int(span.envelope)].service }

    /// The span's own value of `id`, else its resource's (the span's attributes come first).
    @inline(__always)
    func attribute(of span: BufferedSpan, _ id: AttributeKeyID?) -> TraceAttributeValue? {
        guard let id else { return nil }
        var index = Int(span.firstAttribute)
        let end = index + Int(span.attributeCount)
        while index < end {
            if attributes[index].key == id { return attributes[index].value }
            index += 1
        }
        return nil
    }
}

/// The scratch buffer label keys are built in: length-prefixed fields, appended with plain memory
/// copies (an `Array` append checks uniqueness and capacity through generic code, measurably slower).
final class KeyBuffer: @unchecked Sendable {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 1024) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
    }

    deinit { base.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    @inline(__always) func reset() { count = 0 }

    @inline(__always)
    private func reserve(_ extra: Int) {
        guard count + extra > capacity else { return }
        var newCapacity = capacity * 2
        while newCapacity < count + extra { newCapacity *= 2 }
        let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        grown.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }

    @inline(__always)
    func append(_ value: UInt32) {
        reserve(4)
        base.storeBytes(of: value, toByteOffset: count, as: UInt32.self)
        count += 4
    }

    @inline(__always)
    func append(_ byte: UInt8) {
        reserve(1)
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    @inline(__always)
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        reserve(bytes.count)
        (base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    /// A field: two length bytes (little endian, at most 65 535) and the bytes.
    @inline(__always)
    func appendField(_ bytes: UnsafeRawBufferPointer) {
        let length = min(bytes.count, 0xFFFF)
        reserve(2 + length)
        base.storeBytes(of: UInt8(truncatingIfNeeded: length), toByteOffset: count, as: UInt8.self)
        base.storeBytes(of: UInt8(truncatingIfNeeded: length >> 8), toByteOffset: count + 1, as: UInt8.self)
        count += 2
        if length > 0, let source = bytes.baseAddress {
            (base + count).copyMemory(from: source, byteCount: length)
            count += length
        }
    }

    @inline(__always)
    func appendField(byte: UInt8) {
        reserve(3)
        base.storeBytes(of: 1, toByteOffset: count, as: UInt8.self)
        base.storeBytes(of: 0, toByteOffset: count + 1, as: UInt8.self)
        base.storeBytes(of: byte, toByteOffset: count + 2, as: UInt8.self)
        count += 3
    }

    func appendField(literal: StaticString) {
        appendField(UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Starts a field whose length is known only at its end (``endField(_:)``).
    func beginField() -> Int {
        reserve(2)
        count += 2
        return count - 2
    }

    func endField(_ start: Int) {
        let length = min(count - start - 2, 0xFFFF)
        base.storeBytes(of: UInt8(truncatingIfNeeded: length), toByteOffset: start, as: UInt8.self)
        base.storeBytes(of: UInt8(truncatingIfNeeded: length >> 8), toByteOffset: start + 1, as: UInt8.self)
    }

    func appendDecimal(_ value: Int64) {
        if value < 0 { append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits = 1
        var rest = magnitude
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        reserve(digits)
        var index = count + digits - 1
        repeat {
            base.storeBytes(of: UInt8(ascii: "0") + UInt8(magnitude % 10), toByteOffset: index, as: UInt8.self)
            magnitude /= 10
            index -= 1
        } while magnitude > 0
        count += digits
    }
}

/// Span id → index in the trace, open addressing; reset touches only the slots it used.
struct SpanIndexTable: Sendable {
    private var keys: [UInt64] = Array(repeating: 0, count: 64)
    private var values: [Int32] = Array(repeating: 0, count: 64)
    private var used: [Int32] = []

    mutating func reset(expecting count: Int) {
        for slot in used { keys[Int(slot)] = 0 }
        used.removeAll(keepingCapacity: true)
        if count * 2 > keys.count {
            var capacity = keys.count
            while capacity < count * 2 { capacity *= 2 }
            keys = Array(repeating: 0, count: capacity)
            values = Array(repeating: 0, count: capacity)
        }
    }

    @inline(__always)
    private func slot(of id: UInt64) -> Int {
        Int(truncatingIfNeeded: (id &* 0x9E37_79B9_7F4A_7C15) >> 32) & (keys.count - 1)
    }

    mutating func insert(_ id: UInt64, _ value: Int32) {
        guard id != 0 else { return }
        let mask = keys.count - 1
        var slot = slot(of: id)
        while keys[slot] != 0 && keys[slot] != id { slot = (slot + 1) & mask }
        if keys[slot] == 0 { used.append(Int32(slot)) }
        keys[slot] = id
        values[slot] = value
    }

    func find(_ id: UInt64) -> Int32? {
        guard id != 0 else { return nil }
        let mask = keys.count - 1
        var slot = slot(of: id)
        while keys[slot] != 0 {
            if keys[slot] == id { return values[slot] }
            slot = (slot + 1) & mask
        }
        return nil
    }
}

/// Series found by a span's name (see `ShardSpanMetrics.intrinsicSeries`): each entry's series and
/// the name it was made for, the names in one arena, so that a hit is confirmed byte for byte.
struct NamedSeries: Sendable {
    private var series: [Int32] = []
    private var offsets: [Int32] = []
    private var lengths: [Int32] = []
    private var arena: [UInt8] = []

    /// Adds an entry; returns its number.
    mutating func append(_ series: Int32, name: UnsafeRawBufferPointer) -> Int32 {
        self.series.append(series)
        offsets.append(Int32(arena.count))
        lengths.append(Int32(name.count))
        arena.append(contentsOf: name)
        return Int32(self.series.count - 1)
    }

    /// Entry `entry`'s series when it was made for `name`, else nil.
    @inline(__always)
    func series(_ entry: Int32, ifNamed name: UnsafeRawBufferPointer) -> Int32? {
        let index = Int(entry)
        guard Int(lengths[index]) == name.count else { return nil }
        guard name.count > 0 else { return series[index] }
        let equal = arena.withUnsafeBytes { all in bytesEqual(all.baseAddress! + Int(offsets[index]), name.baseAddress, name.count) }
        return equal ? series[index] : nil
    }

    mutating func removeAll() {
        series.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        arena.removeAll(keepingCapacity: true)
    }
}

/// An open-addressing hash table from `UInt64` keys to `Int32` values (edges, packed node pairs).
struct IntKeyTable: Sendable {
    private var keys: [UInt64] = Array(repeating: 0, count: 64)
    private var values: [Int32] = Array(repeating: -1, count: 64)
    private(set) var count = 0

    @inline(__always)
    private func slot(of key: UInt64) -> Int {
        Int(truncatingIfNeeded: ((key ^ (key >> 31)) &* 0x9E37_79B9_7F4A_7C15) >> 32) & (keys.count - 1)
    }

    func find(_ key: UInt64) -> Int32? {
        let mask = keys.count - 1
        var slot = slot(of: key)
        while values[slot] >= 0 {
            if keys[slot] == key { return values[slot] }
            slot = (slot + 1) & mask
        }
        return nil
    }

    mutating func insert(_ key: UInt64, value: Int32) {
        if (count + 1) * 2 > keys.count {
            let old = zip(keys, values).filter { $0.1 >= 0 }
            keys = Array(repeating: 0, count: keys.count * 2)
            values = Array(repeating: -1, count: keys.count)
            count = 0
            for (key, value) in old { place(key, value) }
        }
        place(key, value)
    }

    private mutating func place(_ key: UInt64, _ value: Int32) {
        let mask = keys.count - 1
        var slot = slot(of: key)
        while values[slot] >= 0 && keys[slot] != key { slot = (slot + 1) & mask }
        if values[slot] < 0 { count += 1 }
        keys[slot] = key
        values[slot] = value
    }

    mutating func removeAll() {
        for index in values.indices { values[index] = -1 }
        count = 0
    }
}
