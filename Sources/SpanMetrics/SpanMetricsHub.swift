public import OTLP
import Synchronization

/// The span metrics of every shard, and their exposition: each shard aggregates into its own
/// ``ShardSpanMetrics`` (taking its lock once per cycle); a scrape sums the shards series by series.
public final class SpanMetricsHub: Sendable {
    public let configuration: SpanMetricsConfiguration
    public let registry: SeriesRegistry
    private let shards: [ShardBox]

    final class ShardBox: Sendable {
        let state: Mutex<ShardSpanMetrics>
        init(_ metrics: ShardSpanMetrics) { state = Mutex(metrics) }
    }

    public init(configuration: SpanMetricsConfiguration, selection: AttributeSelection, shards: Int) {
        self.configuration = configuration
        let registry = SeriesRegistry(configuration: configuration)
        self.registry = registry
        self.shards = (0..<max(1, shards)).map { _ in
            ShardBox(ShardSpanMetrics(configuration: configuration, registry: registry, selection: selection))
        }
    }

    public var shardCount: Int { shards.count }

    /// Runs `body` with shard `index`'s aggregation, locked.
    public func withShard<Result: Sendable>(_ index: Int, _ body: (inout ShardSpanMetrics) -> Result) -> Result {
        shards[index].state.withLock { body(&$0) }
    }

    /// Sums over the shards, for exposition and tests.
    public struct Totals: Sendable {
        public var bucketCount: Int
        public var calls: [UInt64] = []
        public var sizes: [UInt64] = []
        public var latencyCounts: [UInt64] = []
        public var latencySums: [Double] = []
        public var latencyExemplars: [Exemplar?] = []
        /// With a span multiplier: the weighted calls, sizes and bucket counts (else empty).
        public var weightedCalls: [Double] = []
        public var weightedSizes: [Double] = []
        public var weightedLatencyCounts: [Double] = []
        /// The estimate from kept traces (see ``ShardSpanMetrics``): calls and bucket counts weighted
        /// by each kept trace's adjusted count, and kept traces per service.
        public var estimatedCalls: [Double] = []
        public var estimatedLatencyCounts: [Double] = []
        public var keptTracesByService: [String: UInt64] = [:]
        public var requests: [UInt64] = []
        public var failed: [UInt64] = []
        public var clientCounts: [UInt64] = []
        public var clientSums: [Double] = []
        public var clientExemplars: [Exemplar?] = []
        public var serverCounts: [UInt64] = []
        public var serverSums: [Double] = []
        public var serverExemplars: [Exemplar?] = []
        public var broken: [UInt64] = []
        public var tracesWithoutRoot: UInt64 = 0
        public var tracesWithOrphans: UInt64 = 0
        public var overflowSamples = Array(repeating: UInt64(0), count: SeriesFamily.allCases.count)
        public var spanLabels: [[String]] = []
        public var edgeLabels: [[String]] = []
        public var brokenLabels: [[String]] = []
        /// The same series' labels as rendered once for the exposition.
        public var spanRendered: [RenderedLabels] = []
        public var edgeRendered: [RenderedLabels] = []
        public var brokenRendered: [RenderedLabels] = []

        /// Calls per span-metrics series, keyed by its labels (tests and the demo summary).
        public var callsByLabels: [[String]: UInt64] {
            var result: [[String]: UInt64] = [:]
            for (index, labels) in spanLabels.enumerated() where index < calls.count { result[labels, default: 0] += calls[index] }
            return result
        }

        /// Requests per service-graph edge (`[client, server, connection_type]`).
        public var requestsByEdge: [[String]: UInt64] {
            var result: [[String]: UInt64] = [:]
            for (index, labels) in edgeLabels.enumerated() where index < requests.count { result[labels, default: 0] += requests[index] }
            return result
        }
    }

    public func totals() -> Totals {
        var totals = Totals(bucketCount: configuration.latencyBuckets.count + 1)
        // Labels first: series a shard adds after this point are beyond these counts and wait for the next scrape.
        totals.spanLabels = registry.labels(of: .spanMetrics)
        totals.edgeLabels = registry.labels(of: .serviceGraph)
        totals.brokenLabels = registry.labels(of: .brokenPropagation)
        totals.spanRendered = registry.renderedLabels(of: .spanMetrics)
        totals.edgeRendered = registry.renderedLabels(of: .serviceGraph)
        totals.brokenRendered = registry.renderedLabels(of: .brokenPropagation)
        let bucketCount = totals.bucketCount
        let spanSeries = totals.spanLabels.count
        let edges = totals.edgeLabels.count
        totals.calls = Array(repeating: 0, count: spanSeries)
        totals.sizes = Array(repeating: 0, count: spanSeries)
        totals.latencySums = Array(repeating: 0, count: spanSeries)
        totals.latencyCounts = Array(repeating: 0, count: spanSeries * bucketCount)
        totals.latencyExemplars = Array(repeating: nil, count: spanSeries * bucketCount)
        let weighted = configuration.spanMultiplier == .tracestate
        if weighted {
            totals.weightedCalls = Array(repeating: 0, count: spanSeries)
            totals.weightedSizes = Array(repeating: 0, count: spanSeries)
            totals.weightedLatencyCounts = Array(repeating: 0, count: spanSeries * bucketCount)
        }
        totals.estimatedCalls = Array(repeating: 0, count: spanSeries)
        totals.estimatedLatencyCounts = Array(repeating: 0, count: spanSeries * bucketCount)
        totals.requests = Array(repeating: 0, count: edges)
        totals.failed = Array(repeating: 0, count: edges)
        totals.clientSums = Array(repeating: 0, count: edges)
        totals.serverSums = Array(repeating: 0, count: edges)
        totals.clientCounts = Array(repeating: 0, count: edges * bucketCount)
        totals.serverCounts = Array(repeating: 0, count: edges * bucketCount)
        totals.clientExemplars = Array(repeating: nil, count: edges * bucketCount)
        totals.serverExemplars = Array(repeating: nil, count: edges * bucketCount)
        totals.broken = Array(repeating: 0, count: totals.brokenLabels.count)
        for shard in shards {
            shard.state.withLock { shard in
                for index in 0..<min(shard.stats.count, spanSeries) {
                    totals.calls[index] &+= shard.stats[index].calls
                    totals.sizes[index] &+= shard.stats[index].size
                    totals.latencySums[index] += shard.stats[index].latencySum
                }
                add(shard.latencyCounts, into: &totals.latencyCounts)
                if weighted {
                    add(shard.weightedCalls, into: &totals.weightedCalls)
                    add(shard.weightedSizes, into: &totals.weightedSizes)
                    add(shard.weightedLatencyCounts, into: &totals.weightedLatencyCounts)
                }
                latest(shard.latencyExemplars, into: &totals.latencyExemplars)
                add(shard.estimatedCalls, into: &totals.estimatedCalls)
                add(shard.estimatedLatencyCounts, into: &totals.estimatedLatencyCounts)
                totals.keptTracesByService.merge(shard.keptTracesByService, uniquingKeysWith: &+)
                add(shard.requests, into: &totals.requests)
                add(shard.failed, into: &totals.failed)
                add(shard.clientSums, into: &totals.clientSums)
                add(shard.serverSums, into: &totals.serverSums)
                add(shard.clientCounts, into: &totals.clientCounts)
                add(shard.serverCounts, into: &totals.serverCounts)
                latest(shard.clientExemplars, into: &totals.clientExemplars)
                latest(shard.serverExemplars, into: &totals.serverExemplars)
                add(shard.broken, into: &totals.broken)
                totals.tracesWithoutRoot += shard.tracesWithoutRoot
                totals.tracesWithOrphans += shard.tracesWithOrphans
                add(shard.overflowSamples, into: &totals.overflowSamples)
            }
        }
        return totals
    }

    /// Writes every span-metrics, service-graph and propagation-health family.
    public func write(into out: inout MetricsWriter) {
        let totals = totals()
        let bounds = configuration.latencyBuckets
        let bucketCount = totals.bucketCount
        // Label values and their rendering are read together, so the series line up; a series
        // created since is left for the next scrape.
        let spanSeries = min(totals.spanRendered.count, totals.calls.count)
        let edgeSeries = min(totals.edgeRendered.count, totals.requests.count)

        out.family("traces_spanmetrics_calls_total", .counter, "Spans, before sampling, by service, span name, kind and status.")
        for (index, labels) in totals.spanRendered.prefix(spanSeries).enumerated() {
            if totals.weightedCalls.isEmpty {
                out.sample("traces_spanmetrics_calls_total", labels, totals.calls[index])
            } else {
                out.sample("traces_spanmetrics_calls_total", labels, totals.weightedCalls[index])
            }
        }
        out.family("traces_spanmetrics_latency", .histogram, "Span duration in seconds, before sampling; exemplars are kept traces.")
        for (index, labels) in totals.spanRendered.prefix(spanSeries).enumerated() {
            let range = (index * bucketCount)..<((index + 1) * bucketCount)
            if totals.weightedLatencyCounts.isEmpty {
                out.histogram(
                    "traces_spanmetrics_latency", labels, bounds: bounds, counts: totals.latencyCounts[range],
                    sum: totals.latencySums[index], exemplars: Array(totals.latencyExemplars[range]))
            } else {
                out.histogram(
                    "traces_spanmetrics_latency", labels, bounds: bounds,
                    weightedCounts: totals.weightedLatencyCounts[range], sum: totals.latencySums[index],
                    exemplars: Array(totals.latencyExemplars[range]))
            }
        }
        out.family("traces_spanmetrics_size_total", .counter, "Encoded bytes of spans, before sampling.")
        for (index, labels) in totals.spanRendered.prefix(spanSeries).enumerated() {
            if totals.weightedSizes.isEmpty {
                out.sample("traces_spanmetrics_size_total", labels, totals.sizes[index])
            } else {
                out.sample("traces_spanmetrics_size_total", labels, totals.weightedSizes[index])
            }
        }

        out.family("traces_service_graph_request_total", .counter, "Requests between two nodes, paired within whole traces.")
        for (index, labels) in totals.edgeRendered.prefix(edgeSeries).enumerated() {
            out.sample("traces_service_graph_request_total", labels, totals.requests[index])
        }
        out.family("traces_service_graph_request_failed_total", .counter, "Failed requests between two nodes (either side's status is error).")
        for (index, labels) in totals.edgeRendered.prefix(edgeSeries).enumerated() {
            out.sample("traces_service_graph_request_failed_total", labels, totals.failed[index])
        }
        out.family("traces_service_graph_request_server_seconds", .histogram, "Request time as the server saw it, in seconds.")
        for (index, labels) in totals.edgeRendered.prefix(edgeSeries).enumerated() {
            let range = (index * bucketCount)..<((index + 1) * bucketCount)
            out.histogram(
                "traces_service_graph_request_server_seconds", labels, bounds: bounds,
                counts: totals.serverCounts[range], sum: totals.serverSums[index], exemplars: Array(totals.serverExemplars[range]))
        }
        out.family("traces_service_graph_request_client_seconds", .histogram, "Request time as the client saw it, in seconds.")
        for (index, labels) in totals.edgeRendered.prefix(edgeSeries).enumerated() {
            let range = (index * bucketCount)..<((index + 1) * bucketCount)
            out.histogram(
                "traces_service_graph_request_client_seconds", labels, bounds: bounds,
                counts: totals.clientCounts[range], sum: totals.clientSums[index], exemplars: Array(totals.clientExemplars[range]))
        }

        out.family(
            "tailgate_traces_incomplete_total", .counter,
            "Decided traces missing spans: no_root (no span without a parent), orphan_spans (a root, and spans whose parent never arrived).")
        out.sample("tailgate_traces_incomplete_total", [("reason", "no_root")], totals.tracesWithoutRoot)
        out.sample("tailgate_traces_incomplete_total", [("reason", "orphan_spans")], totals.tracesWithOrphans)
        out.family(
            "tailgate_broken_propagation_total", .counter,
            "Client spans whose server side never joined the trace although the server is a traced service: context not propagated.")
        for (index, labels) in totals.brokenRendered.prefix(totals.broken.count).enumerated() {
            out.sample("tailgate_broken_propagation_total", labels, totals.broken[index])
        }
        out.family("tailgate_metrics_series", .gauge, "Series of a span-derived metric family (the overflow series included).")
        for family in SeriesFamily.allCases {
            let count = family == .spanMetrics ? totals.spanLabels.count : family == .serviceGraph ? totals.edgeLabels.count : totals.brokenLabels.count
            out.sample("tailgate_metrics_series", [("metric", family.metricName)], count)
        }
        out.family(
            "tailgate_metrics_series_overflow_total", .counter,
            "New label combinations folded into the __overflow__ series (counted by each shard that met them) because the family reached its series limit.")
        for family in SeriesFamily.allCases {
            out.sample("tailgate_metrics_series_overflow_total", [("metric", family.metricName)], totals.overflowSamples[family.rawValue])
        }
    }
}

private func add(_ values: [UInt64], into totals: inout [UInt64]) {
    for index in 0..<min(values.count, totals.count) { totals[index] &+= values[index] }
}

private func add(_ values: [Double], into totals: inout [Double]) {
    for index in 0..<min(values.count, totals.count) { totals[index] += values[index] }
}

/// Per bucket, the most recent exemplar of any shard.
private func latest(_ values: [Exemplar?], into totals: inout [Exemplar?]) {
    for index in 0..<min(values.count, totals.count) {
        guard let value = values[index] else { continue }
        if let current = totals[index], current.timestampMillis > value.timestampMillis { continue }
        totals[index] = value
    }
}
