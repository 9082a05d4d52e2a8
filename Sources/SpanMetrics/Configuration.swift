/// How much a span counts in the span metrics.
public enum SpanMultiplier: String, Sendable, Equatable, CaseIterable {
    /// Every span counts 1.
    case none
    /// A span counts its incoming adjusted count: 2^56 / (2^56 − T) for the `th` of its `ot`
    /// tracestate entry (head sampling upstream), 1 without one — as Tempo's metrics-generator does
    /// with `enable_tracestate_span_multiplier`. Calls, sizes and latency histograms are weighted.
    case tracestate
}

/// How RED and service-graph metrics are derived: buckets, extra dimensions, cardinality bounds.
public struct SpanMetricsConfiguration: Sendable, Equatable {
    /// Grafana Tempo's metrics-generator default: 0.002 s × 2^k for k = 0…13 (2 ms … 16.384 s).
    public static let defaultLatencyBuckets: [Double] = (0...13).map { 0.002 * Double(1 << $0) }

    /// Upper bounds (seconds) of the latency histograms (span latency and both service-graph sides).
    public var latencyBuckets: [Double]
    /// Span or resource attribute keys added as labels of the span metrics (span value first).
    /// Label names are the keys with every character outside `[a-zA-Z0-9_]` made `_`, as Tempo does.
    public var dimensions: [String]
    /// Series per metric family; beyond it, samples fold into one `__overflow__` series.
    public var maxSeriesPerMetric: Int
    /// Rewrites of span names that embed ids (`/users/123` → `/users/{id}`), applied in order.
    public var spanNameRewrites: [SpanNameRewrite]
    /// How much each span counts in the span metrics (Tempo's `enable_tracestate_span_multiplier`).
    public var spanMultiplier: SpanMultiplier = .none

    public init(
        latencyBuckets: [Double] = SpanMetricsConfiguration.defaultLatencyBuckets, dimensions: [String] = [],
        maxSeriesPerMetric: Int = 10_000, spanNameRewrites: [SpanNameRewrite] = []
    ) {
        self.latencyBuckets = latencyBuckets
        self.dimensions = dimensions
        self.maxSeriesPerMetric = maxSeriesPerMetric
        self.spanNameRewrites = spanNameRewrites
    }

    /// Labels every span-metrics series has before the dimensions.
    public static let intrinsicLabels = ["service", "span_name", "span_kind", "status_code"]

    /// The attributes service-graph pairing reads (Tempo's peer and database attributes).
    public static let serviceGraphKeys = [
        "peer.service", "server.address", "network.peer.address", "network.peer.port", "db.name", "db.namespace", "db.system",
    ]

    /// Every attribute key the decoder must extract for these metrics.
    public var attributeKeys: [String] { Self.serviceGraphKeys + dimensions.filter { !Self.serviceGraphKeys.contains($0) } }

    /// The label name of a dimension attribute.
    public static func labelName(forAttribute key: String) -> String {
        var name = String(key.map { character -> Character in
            character.isASCII && (character.isLetter || character.isNumber || character == "_") ? character : "_"
        })
        if let first = name.first, first.isNumber { name = "_" + name }
        return name
    }

    /// Checks what a user can get wrong; the message names the setting and the fix.
    public func validate() throws(SpanMetricsConfigurationError) {
        guard !latencyBuckets.isEmpty else {
            throw SpanMetricsConfigurationError("latency buckets: give at least one bucket bound, e.g. 0.005,0.05,0.5,5")
        }
        for (index, bound) in latencyBuckets.enumerated() {
            guard bound.isFinite, bound > 0 else {
                throw SpanMetricsConfigurationError("latency buckets: bound \(index + 1) (\(bound)) must be a positive number of seconds")
            }
            if index > 0 && bound <= latencyBuckets[index - 1] {
                throw SpanMetricsConfigurationError(
                    "latency buckets: bounds must increase; \(bound) follows \(latencyBuckets[index - 1])")
            }
        }
        guard maxSeriesPerMetric >= 1 else {
            throw SpanMetricsConfigurationError("max series per metric must be at least 1 (default 10000)")
        }
        var labels = Set(Self.intrinsicLabels)
        for key in dimensions {
            guard !key.isEmpty else { throw SpanMetricsConfigurationError("metrics dimension: the attribute key is empty") }
            let label = Self.labelName(forAttribute: key)
            guard labels.insert(label).inserted, label != "le" else {
                throw SpanMetricsConfigurationError(
                    "metrics dimension \(key): its label \(label) clashes with another label of traces_spanmetrics_*")
            }
        }
        for rewrite in spanNameRewrites {
            do {
                _ = try Regex(rewrite.pattern)
            } catch {
                throw SpanMetricsConfigurationError("span name rewrite \(rewrite.pattern): not a valid regular expression (\(error))")
            }
        }
    }
}

/// A rewrite of span names: every match of `pattern` becomes `replacement`.
public struct SpanNameRewrite: Sendable, Equatable {
    public var pattern: String
    public var replacement: String

    public init(pattern: String, replacement: String) {
        self.pattern = pattern
        self.replacement = replacement
    }

    /// Parses `PATTERN=>REPLACEMENT` (the command-line form).
    public init(parsing text: String) throws(SpanMetricsConfigurationError) {
        guard let separator = text.firstRange(of: "=>") else {
            throw SpanMetricsConfigurationError(
                "span name rewrite \"\(text)\": write PATTERN=>REPLACEMENT, e.g. '/users/[0-9]+=>/users/{id}'")
        }
        pattern = String(text[..<separator.lowerBound])
        replacement = String(text[separator.upperBound...])
        guard !pattern.isEmpty else {
            throw SpanMetricsConfigurationError("span name rewrite \"\(text)\": the pattern before => is empty")
        }
    }
}

/// A metrics setting that cannot work; the message says which and how to fix it.
public struct SpanMetricsConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
