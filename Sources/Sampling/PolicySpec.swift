public import OTLP

/// A policy as the rule file states it (the collector's `tail_sampling` policy configuration).
public struct PolicySpec: Sendable, Equatable {
    public var name: String
    /// Line in the rule file (for messages); 0 when built in code.
    public var line: Int
    public var kind: PolicyKind

    public init(name: String, line: Int = 0, kind: PolicyKind) {
        self.name = name
        self.line = line
        self.kind = kind
    }

    /// Equality of what the policy does, ignoring where it was written (for carrying state over a reload).
    func sameBehaviour(as other: PolicySpec) -> Bool { name == other.name && kind.sameBehaviour(as: other.kind) }
}

/// How a `probabilistic` policy decides (the collector's probabilistic_sampler mode names).
public enum ProbabilisticMode: String, Sendable, Equatable, CaseIterable {
    /// The tail_sampling hash, bit for bit: FNV-1a of the salt and the trace id.
    case hashSeed = "hash_seed"
    /// OTEP 235: keep when the trace's randomness R ≥ the threshold of (incoming probability × p).
    case proportional
    /// OTEP 235: keep when R ≥ the threshold of p (spans sampled at a lower probability upstream
    /// keep theirs).
    case equalizing
}

/// Every policy type of the collector's tail_sampling processor except `ottl_condition`.
public indirect enum PolicyKind: Sendable, Equatable {
    case alwaysSample
    /// Trace duration (latest end − earliest start) in milliseconds; `upper` 0 means no upper bound.
    case latency(thresholdMs: Int64, upperThresholdMs: Int64)
    case numericAttribute(key: String, min: Int64, max: Int64, invertMatch: Bool)
    /// `mode` as the collector's probabilistic_sampler names them; `precision`: hex digits of the
    /// `ot=th` written on kept spans.
    case probabilistic(samplingPercentage: Double, hashSalt: String, mode: ProbabilisticMode = .hashSeed, precision: Int = 4)
    case statusCode([StatusCode])
    case stringAttribute(key: String, values: [String], regex: Bool, cacheMaxSize: Int, invertMatch: Bool)
    case rateLimiting(spansPerSecond: Int64)
    case bytesLimiting(bytesPerSecond: Int64, burstCapacity: Int64)
    /// Inclusive; `max` 0 means no maximum.
    case spanCount(min: Int64, max: Int64)
    case traceState(key: String, values: [String])
    case traceFlags
    case booleanAttribute(key: String, value: Bool, invertMatch: Bool)
    case and([PolicySpec])
    case not(PolicySpec)
    case drop([PolicySpec])
    case composite(maxTotalSpansPerSecond: Int64, policyOrder: [String], subPolicies: [PolicySpec], rateAllocation: [RateAllocation])
    /// tailgate's adaptive samplers (Refinery's dynamic samplers, consistent by trace id).
    case dynamic(DynamicSamplerConfiguration)

    /// The rule-file type name.
    public var typeName: String {
        switch self {
        case .alwaysSample: "always_sample"
        case .latency: "latency"
        case .numericAttribute: "numeric_attribute"
        case .probabilistic: "probabilistic"
        case .statusCode: "status_code"
        case .stringAttribute: "string_attribute"
        case .rateLimiting: "rate_limiting"
        case .bytesLimiting: "bytes_limiting"
        case .spanCount: "span_count"
        case .traceState: "trace_state"
        case .traceFlags: "trace_flags"
        case .booleanAttribute: "boolean_attribute"
        case .and: "and"
        case .not: "not"
        case .drop: "drop"
        case .composite: "composite"
        case .dynamic(let configuration): configuration.algorithm.rawValue
        }
    }

    func sameBehaviour(as other: PolicyKind) -> Bool {
        switch (self, other) {
        case (.and(let a), .and(let b)), (.drop(let a), .drop(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.sameBehaviour(as: $1) }
        case (.not(let a), .not(let b)):
            return a.sameBehaviour(as: b)
        case (.composite(let m1, let o1, let s1, let r1), .composite(let m2, let o2, let s2, let r2)):
            return m1 == m2 && o1 == o2 && r1 == r2 && s1.count == s2.count && zip(s1, s2).allSatisfy { $0.sameBehaviour(as: $1) }
        default:
            return self == other
        }
    }

    /// Attribute keys this policy (and its sub-policies) reads.
    var attributeKeys: [String] {
        switch self {
        case .numericAttribute(let key, _, _, _), .stringAttribute(let key, _, _, _, _), .booleanAttribute(let key, _, _):
            [key]
        case .and(let subs), .drop(let subs), .composite(_, _, let subs, _):
            subs.flatMap(\.kind.attributeKeys)
        case .not(let sub):
            sub.kind.attributeKeys
        case .dynamic(let configuration):
            configuration.attributeKeys
        default:
            []
        }
    }
}

/// A composite sub-policy's share of `max_total_spans_per_second`.
public struct RateAllocation: Sendable, Equatable {
    public var policy: String
    public var percent: Double
    public init(policy: String, percent: Double) {
        self.policy = policy
        self.percent = percent
    }
}

/// The processor-level settings a rule file may carry next to its policies.
public struct SamplingSettings: Sendable, Equatable {
    /// Decide this long after a trace's first span (collector default 30 s; tailgate's 10 s).
    public var decisionWait: Duration = .seconds(10)
    /// Decide this long after the root span arrives, if that comes first.
    public var decisionWaitAfterRootReceived: Duration = .seconds(2)
    /// Traces buffered at most (a count bound next to the byte bound).
    public var numTraces = 1_000_000
    /// Decide a trace at once when it reaches this many spans (0: no limit).
    public var maxSpansPerTrace = 0
    /// Stop evaluating at the first policy that samples.
    public var sampleOnFirstMatch = false
    /// tailgate's `dry_run`: decide as usual but send every trace to the sinks, each span tagged
    /// `tailgate.decision` (keep/drop); the metrics count what would have been kept and dropped.
    public var dryRun = false
    /// Trace ids whose keep decision is remembered for late spans (0: off).
    public var sampledCacheSize = 100_000
    /// Trace ids whose drop decision is remembered, in a compact filter (0: off).
    public var nonSampledCacheSize = 1_000_000
    /// On shutdown, drop what is buffered instead of deciding it early.
    public var dropPendingTracesOnShutdown = false

    public init() {}
}

/// A parsed rule file: settings and policies in order.
public struct RuleConfiguration: Sendable, Equatable {
    public var settings: SamplingSettings
    public var policies: [PolicySpec]
    /// tailgate's `redaction:` section: attribute rules applied to kept traces before any sink.
    public var redaction: [RedactionRule]

    public init(settings: SamplingSettings = SamplingSettings(), policies: [PolicySpec], redaction: [RedactionRule] = []) {
        self.settings = settings
        self.policies = policies
        self.redaction = redaction
    }

    /// Whether a rule hashes (and so needs the redaction key).
    public var redactionHashes: Bool { redaction.contains { $0.action == .hash } }
}
