public import OTLP

/// A policy ready to judge traces: keys resolved to attribute ids, regexes compiled, limiter state
/// attached (and carried over a reload when the policy did not change).
public final class Policy: @unchecked Sendable {
    public let spec: PolicySpec
    let evaluator: Evaluator

    var name: String { spec.name }
    /// Whether a trace this policy samples is kept for its content alone (an error, a latency, an
    /// attribute…), with probability 1: not by chance (probabilistic, adaptive) nor by a rate limit.
    public let isMustKeep: Bool

    init(spec: PolicySpec, evaluator: Evaluator) {
        self.spec = spec
        self.evaluator = evaluator
        isMustKeep = evaluator.isMustKeep
    }

    /// The adaptive sampler behind a top-level `ema_dynamic`/`ema_throughput`/`windowed_throughput`.
    public var dynamicSampler: DynamicSampler? {
        if case .dynamic(let sampler) = evaluator { return sampler }
        return nil
    }

    /// The adaptive sampler that decides for this policy: its own, or the last condition of an `and`
    /// (a Refinery rule's downstream sampler), which only sees the traces its conditions let through.
    public var decidingSampler: DynamicSampler? {
        if let dynamicSampler { return dynamicSampler }
        if case .and(let subs) = evaluator { return subs.last?.dynamicSampler }
        return nil
    }

    /// Every adaptive sampler in this policy (for metrics and snapshots).
    public var allSamplers: [DynamicSampler] {
        switch evaluator {
        case .dynamic(let sampler): [sampler]
        case .and(let subs), .drop(let subs), .composite(let subs, _): subs.flatMap(\.allSamplers)
        case .not(let sub): sub.allSamplers
        default: []
        }
    }

    /// Judges `trace` at `now` (monotonic nanoseconds, for the rate limiters).
    public func evaluate(_ trace: TraceData, now: UInt64) -> PolicyDecision {
        evaluator.evaluate(trace, now: now)
    }
}

/// Compiled string matching: exact values (byte comparison, no allocation) or regexes.
struct StringMatcher: @unchecked Sendable {
    let exact: [[UInt8]]
    let regexes: [Regex<AnyRegexOutput>]
    let cache: RegexResultCache?

    func matches(_ trace: TraceData, _ range: ByteRange) -> Bool {
        if let cache {
            let value = trace.string(range)
            return cache.result(for: value) { regexes.contains { value.contains($0) } }
        }
        return trace.withBytes(range) { bytes in
            exact.contains { candidate in candidate.count == bytes.count && candidate.elementsEqual(bytes) }
        }
    }
}

extension Evaluator {
    var isMustKeep: Bool {
        switch self {
        case .alwaysSample, .latency, .numeric, .statusCode, .string, .spanCount, .traceState, .traceFlags, .boolean: true
        case .probabilistic, .consistent, .rateLimiting, .bytesLimiting, .dynamic, .composite, .drop: false
        case .and(let subs): subs.allSatisfy(\.isMustKeep)
        case .not(let sub): sub.isMustKeep
        }
    }
}

indirect enum Evaluator: @unchecked Sendable {
    case alwaysSample
    case latency(thresholdMs: Int64, upperThresholdMs: Int64)
    case numeric(key: AttributeKeyID?, min: Int64, max: Int64, invert: Bool)
    /// `seed`: the hash after the salt (``ProbabilisticHash/seed(salt:)``), computed at load.
    case probabilistic(threshold: UInt64, seed: UInt64)
    /// OTEP 235 consistent sampling on the trace's randomness.
    case consistent(mode: ProbabilisticMode, probability: Double, precision: Int)
    /// The codes as bits (1 << raw value): a set test per span without hashing.
    case statusCode(mask: UInt8)
    case string(key: AttributeKeyID?, matcher: StringMatcher, invert: Bool)
    case rateLimiting(TokenBucket)
    case bytesLimiting(TokenBucket)
    case spanCount(min: Int64, max: Int64)
    case traceState(key: [UInt8], values: [[UInt8]])
    case traceFlags
    case boolean(key: AttributeKeyID?, value: Bool, invert: Bool)
    case and([Policy])
    case not(Policy)
    case drop([Policy])
    case composite(subPolicies: [Policy], budget: CompositeBudget)
    case dynamic(DynamicSampler)

    func evaluate(_ trace: TraceData, now: UInt64) -> PolicyDecision {
        switch self {
        case .alwaysSample:
            return .sampled

        case .latency(let threshold, let upper):
            // Whole milliseconds, truncated, as Go's Duration.Milliseconds().
            let ms = Int64(trace.durationNanos / 1_000_000)
            if upper == 0 { return ms >= threshold ? .sampled : .notSampled }
            return threshold < ms && ms <= upper ? .sampled : .notSampled

        case .numeric(let key, let min, let max, let invert):
            return attributeDecision(trace, key: key, invert: invert) { value in
                switch value {
                case .int(let int): int >= min && int <= max
                case .double(let double): double >= Double(min) && double <= Double(max)
                default: false
                }
            }

        case .probabilistic(let threshold, let seed):
            return ProbabilisticHash.hash(seed: seed, traceID: trace.traceID) <= threshold ? .sampled : .notSampled

        case .consistent(let mode, let probability, let precision):
            guard probability > 0 else { return .notSampled }
            let threshold = mode == .proportional
                ? trace.incomingThreshold.scaled(by: probability, precision: precision)
                : SamplingThreshold(probability: probability, precision: precision)
            // nil: the product of the probabilities is below what a threshold can say (underflow).
            guard let threshold else { return .notSampled }
            return threshold.keeps(trace.samplingRandomness) ? .sampled : .notSampled

        case .statusCode(let mask):
            return trace.spans.contains { mask & (1 << $0.statusCode.rawValue) != 0 } ? .sampled : .notSampled

        case .string(let key, let matcher, let invert):
            return attributeDecision(trace, key: key, invert: invert) { value in
                if case .string(let range) = value, range.count > 0 { return matcher.matches(trace, range) }
                return false
            }

        case .rateLimiting(let bucket):
            return bucket.take(Double(trace.spans.count), now: now) ? .sampled : .notSampled

        case .bytesLimiting(let bucket):
            return bucket.take(Double(trace.encodedBytes), now: now) ? .sampled : .notSampled

        case .spanCount(let min, let max):
            let count = Int64(trace.spans.count)
            return count >= min && (max == 0 || count <= max) ? .sampled : .notSampled

        case .traceState(let key, let values):
            for span in trace.spans where span.traceState.count > 0 {
                let matched = trace.withBytes(span.traceState) { state in
                    TraceStateList.value(of: key, in: state).map { value in
                        values.contains { $0.count == value.count && $0.elementsEqual(value) }
                    } ?? false
                }
                if matched { return .sampled }
            }
            return .notSampled

        case .traceFlags:
            return trace.spans.contains { $0.flags & 0x01 != 0 } ? .sampled : .notSampled

        case .boolean(let key, let expected, let invert):
            return attributeDecision(trace, key: key, invert: invert) { value in
                if case .bool(let bool) = value { return bool == expected }
                return false
            }

        case .and(let policies):
            for policy in policies where policy.evaluate(trace, now: now).refuses { return .notSampled }
            return .sampled

        case .not(let policy):
            // Swaps Sampled and NotSampled only; the invert decisions (and Dropped) pass through, as
            // the collector's not.go does.
            switch policy.evaluate(trace, now: now) {
            case .sampled: return .notSampled
            case .notSampled: return .sampled
            case let other: return other
            }

        case .drop(let policies):
            for policy in policies where policy.evaluate(trace, now: now).refuses { return .notSampled }
            return .dropped

        case .dynamic(let sampler):
            return sampler.decide(trace, now: now).kept ? .sampled : .notSampled

        case .composite(let policies, let budget):
            // The first sub-policy (in policy_order) that samples decides, within its span budget.
            for (index, policy) in policies.enumerated() where policy.evaluate(trace, now: now).samples {
                return budget.take(Int64(trace.spans.count), for: index, now: now) ? .sampled : .notSampled
            }
            return .notSampled
        }
    }

    /// The collector's attribute policies: a match on any span attribute or resource attribute
    /// samples; with `invert_match`, any match gives InvertNotSampled and none InvertSampled.
    private func attributeDecision(
        _ trace: TraceData, key: AttributeKeyID?, invert: Bool, _ matches: (TraceAttributeValue) -> Bool
    ) -> PolicyDecision {
        var found = false
        if let key {
            for attribute in trace.attributes where attribute.key == key && matches(attribute.value) {
                found = true
                break
            }
        }
        if invert { return found ? .invertNotSampled : .invertSampled }
        return found ? .sampled : .notSampled
    }
}

/// W3C `tracestate`: `key1=value1,key2=value2` (optional whitespace around members).
enum TraceStateList {
    static func value(of key: [UInt8], in state: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var start = 0
        while start < state.count {
            var end = start
            while end < state.count && state[end] != UInt8(ascii: ",") { end += 1 }
            var lower = start
            var upper = end
            while lower < upper && (state[lower] == 0x20 || state[lower] == 0x09) { lower += 1 }
            while upper > lower && (state[upper - 1] == 0x20 || state[upper - 1] == 0x09) { upper -= 1 }
            if let equals = (lower..<upper).first(where: { state[$0] == UInt8(ascii: "=") }),
                equals - lower == key.count,
                key.elementsEqual(UnsafeRawBufferPointer(rebasing: state[lower..<equals]))
            {
                return UnsafeRawBufferPointer(rebasing: state[(equals + 1)..<upper])
            }
            start = end + 1
        }
        return nil
    }
}
