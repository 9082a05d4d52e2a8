import OTLP

/// How representative the kept traces are: per service, the RED figures tailgate counts exactly from
/// every span against the Horvitz–Thompson estimate a backend holding only the kept traces would
/// make (each kept span weighted by its trace's adjusted count), over a sliding window.

/// One service's cumulative figures, summed over its span-metrics series.
public struct ServiceSample: Sendable, Equatable {
    public var calls = 0.0
    public var errors = 0.0
    /// Span counts per latency bucket (not cumulative), the histogram's buckets.
    public var latency: [Double] = []
    public var estimatedCalls = 0.0
    public var estimatedErrors = 0.0
    public var estimatedLatency: [Double] = []
    public var keptTraces = 0.0

    public init() {}

    static func - (a: ServiceSample, b: ServiceSample) -> ServiceSample {
        var result = ServiceSample()
        result.calls = a.calls - b.calls
        result.errors = a.errors - b.errors
        result.estimatedCalls = a.estimatedCalls - b.estimatedCalls
        result.estimatedErrors = a.estimatedErrors - b.estimatedErrors
        result.keptTraces = a.keptTraces - b.keptTraces
        result.latency = zip(a.latency, b.latency.isEmpty ? Array(repeating: 0, count: a.latency.count) : b.latency).map { $0 - $1 }
        result.estimatedLatency = zip(a.estimatedLatency, b.estimatedLatency.isEmpty ? Array(repeating: 0, count: a.estimatedLatency.count) : b.estimatedLatency).map { $0 - $1 }
        return result
    }
}

/// One service's fidelity over the window.
public struct ServiceFidelity: Sendable, Equatable, Codable {
    public var service: String
    public var calls: Double
    public var estimatedCalls: Double
    public var errors: Double
    public var estimatedErrors: Double
    /// Latency quantiles in seconds from the histogram's buckets (nil without spans).
    public var p50: Double?
    public var estimatedP50: Double?
    public var p99: Double?
    public var estimatedP99: Double?
    public var keptTraces: Int
    /// Fewer kept traces than ``SampleFidelityWindow/minimumKeptTraces``: too few to estimate from.
    public var tooSmall: Bool
}

/// Per service sums of the span metrics' totals (true and estimated).
public enum SampleFidelity {
    public static func services(_ totals: SpanMetricsHub.Totals) -> [String: ServiceSample] {
        var services: [String: ServiceSample] = [:]
        let buckets = totals.bucketCount
        for (index, labels) in totals.spanLabels.enumerated() where index < totals.calls.count && labels.count >= 4 {
            let service = labels[0]
            if service == SeriesRegistry.overflowValue { continue }
            var sample = services[service] ?? {
                var fresh = ServiceSample()
                fresh.latency = Array(repeating: 0, count: buckets)
                fresh.estimatedLatency = Array(repeating: 0, count: buckets)
                return fresh
            }()
            let weighted = !totals.weightedCalls.isEmpty
            let calls = weighted ? totals.weightedCalls[index] : Double(totals.calls[index])
            let estimated = index < totals.estimatedCalls.count ? totals.estimatedCalls[index] : 0
            sample.calls += calls
            sample.estimatedCalls += estimated
            if labels[3] == StatusCode.error.protoName {
                sample.errors += calls
                sample.estimatedErrors += estimated
            }
            for bucket in 0..<buckets {
                let slot = index * buckets + bucket
                sample.latency[bucket] += weighted ? totals.weightedLatencyCounts[slot] : Double(totals.latencyCounts[slot])
                if slot < totals.estimatedLatencyCounts.count { sample.estimatedLatency[bucket] += totals.estimatedLatencyCounts[slot] }
            }
            services[service] = sample
        }
        for (service, kept) in totals.keptTracesByService { services[service]?.keptTraces = Double(kept) }
        return services
    }

    /// The `q` quantile (0…1) of a histogram (`counts` per bucket, `bounds` the finite upper bounds
    /// in seconds) as Prometheus' `histogram_quantile` computes it: linear within the bucket; in the
    /// last, unbounded bucket, its lower bound.
    public static func quantile(_ q: Double, counts: [Double], bounds: [Double]) -> Double? {
        let total = counts.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = q * total
        var seen = 0.0
        for (index, count) in counts.enumerated() {
            if seen + count >= rank && count > 0 {
                guard index < bounds.count else { return bounds.last }
                let lower = index == 0 ? 0 : bounds[index - 1]
                return lower + (bounds[index] - lower) * (rank - seen) / count
            }
            seen += count
        }
        return bounds.last
    }
}

/// The sliding window: cumulative per-service samples taken every `step`, the report the difference
/// between now and the newest sample at least `length` old (or the start, before the window fills).
/// A pure value on an injected clock (nanoseconds).
public struct SampleFidelityWindow: Sendable {
    public let length: UInt64
    public let step: UInt64
    /// Below this many kept traces in the window, a service's estimate is flagged as too small.
    public let minimumKeptTraces: Int
    private var samples: [(at: UInt64, services: [String: ServiceSample])]

    public init(start: UInt64, length: UInt64 = 300_000_000_000, step: UInt64 = 10_000_000_000, minimumKeptTraces: Int = 30) {
        self.length = length
        self.step = step
        self.minimumKeptTraces = minimumKeptTraces
        samples = [(start, [:])]
    }

    /// Takes `services` as the sample at `now` when a step has passed since the last one.
    public mutating func observe(_ services: [String: ServiceSample], at now: UInt64) {
        guard let last = samples.last, now >= last.at + step else { return }
        samples.append((now, services))
        // Keep the newest sample at least `length` old as the base, and everything after it.
        while samples.count > 1, now >= samples[1].at + length { samples.removeFirst() }
    }

    /// Seconds the report covers at `now`.
    public func coverage(at now: UInt64) -> Double { Double(now - base(at: now).at) / 1e9 }

    private func base(at now: UInt64) -> (at: UInt64, services: [String: ServiceSample]) {
        samples.last { now >= $0.at + length } ?? samples[0]
    }

    /// Per service, `current` (cumulative, now) against the window's base; `bounds` the histogram's
    /// finite bucket bounds (seconds). Busiest services first.
    public func report(current: [String: ServiceSample], at now: UInt64, bounds: [Double]) -> [ServiceFidelity] {
        let base = base(at: now).services
        return current.map { service, sample -> ServiceFidelity in
            let window = base[service].map { sample - $0 } ?? sample
            return ServiceFidelity(
                service: service, calls: window.calls, estimatedCalls: window.estimatedCalls, errors: window.errors,
                estimatedErrors: window.estimatedErrors,
                p50: SampleFidelity.quantile(0.5, counts: window.latency, bounds: bounds),
                estimatedP50: SampleFidelity.quantile(0.5, counts: window.estimatedLatency, bounds: bounds),
                p99: SampleFidelity.quantile(0.99, counts: window.latency, bounds: bounds),
                estimatedP99: SampleFidelity.quantile(0.99, counts: window.estimatedLatency, bounds: bounds),
                keptTraces: Int(window.keptTraces), tooSmall: Int(window.keptTraces) < minimumKeptTraces)
        }
        .filter { $0.calls > 0 }
        .sorted { ($0.calls, $1.service) > ($1.calls, $0.service) }
    }
}
