public import OTLP

/// The two text formats a scraper can ask for.
///
/// Why hand-written rather than swift-prometheus: swift-prometheus (2.x) writes only the Prometheus
/// 0.0.4 text format and has no exemplars, and one `/metrics` response must be in one format. The
/// span metrics are aggregated on the shard threads without locks per span (see ``ShardSpanMetrics``),
/// which no registry of individually locked metric objects can do at our cost per span. So the
/// engine's metrics, self-metrics included, go through this one writer.
public enum MetricsFormat: Sendable, Equatable {
    /// Prometheus text format 0.0.4 (no exemplars).
    case prometheus
    /// OpenMetrics 1.0 text (exemplars on histogram buckets, `# EOF`).
    case openMetrics

    /// Chooses by an HTTP `Accept` header: OpenMetrics when the scraper lists it (Prometheus does when
    /// exemplar storage is on, or by default since 2.x with a lower preference), else Prometheus text.
    public init(accept: String?) {
        guard let accept, accept.contains("application/openmetrics-text") else {
            self = .prometheus
            return
        }
        // An explicit q=0 refuses it.
        for part in accept.split(separator: ",") where part.contains("application/openmetrics-text") {
            let parameters = part.split(separator: ";").map { String($0).trimming(" ") }
            if parameters.contains(where: { $0 == "q=0" || $0 == "q=0.0" }) {
                self = .prometheus
                return
            }
        }
        self = .openMetrics
    }

    public var contentType: String {
        switch self {
        case .prometheus: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }
}

/// A metric family's type.
public enum MetricType: String, Sendable {
    case counter, gauge, histogram
}

/// A trace id (and the value and time it was seen with) attached to a histogram bucket.
public struct Exemplar: Sendable, Equatable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// The observed value (seconds).
    public var value: Double
    /// Unix time of the observation, in milliseconds.
    public var timestampMillis: Int64

    public init(traceID: TraceID, spanID: SpanID, value: Double, timestampMillis: Int64) {
        self.traceID = traceID
        self.spanID = spanID
        self.value = value
        self.timestampMillis = timestampMillis
    }
}

/// A series' labels rendered once: the text between the braces (`service="a",span_name="b"`), names
/// and escaped values. The span-metrics series keep theirs from the moment they are created, so a
/// scrape copies each series' labels instead of pairing and escaping every one again.
public struct RenderedLabels: Sendable, Equatable {
    public let text: String

    public init(_ labels: [(String, String)]) {
        var text = ""
        for (index, (name, value)) in labels.enumerated() {
            if index > 0 { text += "," }
            text += name
            text += "=\""
            MetricsWriter.escapeLabel(value, into: &text)
            text += "\""
        }
        self.text = text
    }

    public init(names: [String], values: [String]) { self.init(Array(zip(names, values))) }
}

/// Writes metric families in the Prometheus or OpenMetrics text format.
public struct MetricsWriter: Sendable {
    public let format: MetricsFormat
    public private(set) var text = ""

    public init(format: MetricsFormat = .prometheus) {
        self.format = format
        text.reserveCapacity(16 * 1024)
    }

    /// `# HELP` and `# TYPE` for a family. `name` is the sample name for counters (`…_total`); the
    /// OpenMetrics family name drops the suffix, as that format requires.
    public mutating func family(_ name: String, _ type: MetricType, _ help: String) {
        var familyName = name
        if format == .openMetrics && type == .counter && name.hasSuffix("_total") {
            familyName = String(name.dropLast(6))
        }
        text += "# HELP \(familyName) \(Self.escapeHelp(help))\n# TYPE \(familyName) \(type.rawValue)\n"
    }

    /// One sample line.
    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Double, exemplar: Exemplar? = nil) {
        sample(name, RenderedLabels(labels), value, exemplar: exemplar)
    }

    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Int) {
        sample(name, RenderedLabels(labels), value)
    }

    public mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: UInt64) {
        sample(name, RenderedLabels(labels), value)
    }

    /// One sample line of a series whose labels were rendered before.
    public mutating func sample(_ name: String, _ labels: RenderedLabels, _ value: Double, exemplar: Exemplar? = nil) {
        text += name
        writeLabels(labels)
        text += " "
        text += Self.number(value)
        if let exemplar, format == .openMetrics { writeExemplar(exemplar) }
        text += "\n"
    }

    public mutating func sample(_ name: String, _ labels: RenderedLabels, _ value: Int) {
        text += name
        writeLabels(labels)
        text += " "
        text += String(value)
        text += "\n"
    }

    public mutating func sample(_ name: String, _ labels: RenderedLabels, _ value: UInt64) {
        text += name
        writeLabels(labels)
        text += " "
        text += String(value)
        text += "\n"
    }

    public mutating func counter(_ name: String, _ help: String, _ value: Int) {
        family(name, .counter, help)
        sample(name, [], value)
    }

    public mutating func gauge(_ name: String, _ help: String, _ value: Int) {
        family(name, .gauge, help)
        sample(name, [], value)
    }

    public mutating func gauge(_ name: String, _ help: String, _ value: Double) {
        family(name, .gauge, help)
        sample(name, [], value)
    }

    /// The `_bucket` (cumulative, `+Inf` last), `_sum` and `_count` lines of one histogram series.
    /// `counts` are per bucket (not cumulative), one more than `bounds` (the overflow bucket).
    public mutating func histogram(
        _ name: String, _ labels: [(String, String)], bounds: [Double], counts: some Collection<UInt64>, sum: Double,
        exemplars: [Exemplar?]? = nil
    ) {
        histogram(name, RenderedLabels(labels), bounds: bounds, counts: counts, sum: sum, exemplars: exemplars)
    }

    public mutating func histogram(
        _ name: String, _ labels: RenderedLabels, bounds: [Double], counts: some Collection<UInt64>, sum: Double,
        exemplars: [Exemplar?]? = nil
    ) {
        let count = histogramLines(name, labels, bounds: bounds, counts: counts, exemplars: exemplars) { String($0) }
        sample(name + "_sum", labels, sum)
        sample(name + "_count", labels, count)
    }

    /// A histogram whose bucket counts are weighted (a span multiplier): the same lines, with
    /// floating-point counts.
    public mutating func histogram(
        _ name: String, _ labels: RenderedLabels, bounds: [Double], weightedCounts counts: some Collection<Double>, sum: Double,
        exemplars: [Exemplar?]? = nil
    ) {
        let count = histogramLines(name, labels, bounds: bounds, counts: counts, exemplars: exemplars) { Self.number($0) }
        sample(name + "_sum", labels, sum)
        sample(name + "_count", labels, count)
    }

    /// The `_bucket` lines; returns the total count.
    private mutating func histogramLines<Count: AdditiveArithmetic>(
        _ name: String, _ labels: RenderedLabels, bounds: [Double], counts: some Collection<Count>, exemplars: [Exemplar?]?,
        render: (Count) -> String
    ) -> Count {
        var cumulative = Count.zero
        for (index, count) in counts.enumerated() {
            cumulative += count
            text += name
            text += "_bucket{"
            if !labels.text.isEmpty {
                text += labels.text
                text += ","
            }
            text += "le=\""
            text += index < bounds.count ? Self.number(bounds[index]) : "+Inf"
            text += "\"} "
            text += render(cumulative)
            if format == .openMetrics, let exemplars, index < exemplars.count, let exemplar = exemplars[index] {
                writeExemplar(exemplar)
            }
            text += "\n"
        }
        return cumulative
    }

    /// Ends the exposition (`# EOF` in OpenMetrics).
    public mutating func finish() {
        if format == .openMetrics { text += "# EOF\n" }
    }

    /// Appends another writer's text (same format; neither finished).
    public mutating func append(_ other: MetricsWriter) { text += other.text }

    private mutating func writeLabels(_ labels: RenderedLabels) {
        guard !labels.text.isEmpty else { return }
        text += "{"
        text += labels.text
        text += "}"
    }

    private mutating func writeExemplar(_ exemplar: Exemplar) {
        text += " # {trace_id=\""
        text += exemplar.traceID.hex
        text += "\",span_id=\""
        text += exemplar.spanID.hex
        text += "\"} "
        text += Self.number(exemplar.value)
        text += " "
        let millis = exemplar.timestampMillis
        text += "\(millis / 1000)."
        let fraction = String(millis % 1000)
        text += String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    /// A number as both formats read it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
    public static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    static func escapeLabel(_ value: String, into text: inout String) {
        // Fast path: nothing to escape (almost always).
        if !value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) {
            text += value
            return
        }
        for character in value {
            switch character {
            case "\\": text += "\\\\"
            case "\"": text += "\\\""
            case "\n": text += "\\n"
            default: text.append(character)
            }
        }
    }

    static func escapeHelp(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}

extension String {
    fileprivate func trimming(_ set: Character) -> String {
        var slice = Substring(self)
        while slice.first == set { slice = slice.dropFirst() }
        while slice.last == set { slice = slice.dropLast() }
        return String(slice)
    }

    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard contains(target) else { return self }
        return split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
