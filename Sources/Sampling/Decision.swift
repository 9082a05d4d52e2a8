/// One policy's verdict on a trace, as the OpenTelemetry Collector's tail_sampling names them.
public enum PolicyDecision: Sendable, Equatable {
    case notSampled
    case sampled
    /// `invert_match` found no match (deprecated in the collector, kept for compatibility).
    case invertSampled
    /// `invert_match` found a match.
    case invertNotSampled
    /// A `drop` policy matched: the trace is dropped whatever else says.
    case dropped

    /// Whether the decision leans to keeping (for `composite`, which samples on Sampled or
    /// InvertSampled).
    var samples: Bool { self == .sampled || self == .invertSampled }

    /// Whether `and` and `drop` count it as a refusal: NotSampled or InvertNotSampled (the collector's
    /// and.go / drop.go; any other decision lets the combination go on).
    var refuses: Bool { self == .notSampled || self == .invertNotSampled }

    /// The collector's name for it (`eval --explain`).
    public var name: String {
        switch self {
        case .notSampled: "NotSampled"
        case .sampled: "Sampled"
        case .invertSampled: "InvertSampled"
        case .invertNotSampled: "InvertNotSampled"
        case .dropped: "Dropped"
        }
    }
}

/// The final verdict on a trace.
public enum TraceDecision: Sendable, Equatable, Hashable {
    /// Keep, naming the policy that kept it (the first, in rule-file order, that sampled).
    case keep(policy: String)
    case drop

    public var isKeep: Bool { if case .keep = self { true } else { false } }
}

/// Which of the collector's precedence rules decided a trace (`eval --explain`).
public enum PrecedenceRule: String, Sendable, Equatable {
    /// A `drop` policy matched: dropped whatever else says.
    case dropped = "Dropped wins"
    /// An `invert_match` policy matched: dropped unless a drop already decided.
    case invertNotSampled = "InvertNotSampled drops"
    /// A policy sampled: kept by the first that did.
    case sampled = "Sampled keeps"
    /// Only `invert_match` policies that found no match sampled, and no policy said NotSampled.
    case invertSampled = "InvertSampled keeps (no NotSampled)"
    /// Only InvertSampled leaned to keep, and a policy said NotSampled: dropped.
    case invertSampledOutvoted = "InvertSampled outvoted by NotSampled"
    /// Nothing sampled.
    case notSampled = "nothing sampled"
}

/// Combines policy decisions with the collector's precedence (its `makeDecision`):
/// Dropped, then InvertNotSampled (both drop), then Sampled (keep, by the first policy that
/// sampled), then InvertSampled — which keeps only when no policy returned NotSampled — and
/// otherwise drop.
public struct DecisionCombiner: Sendable {
    private var dropped = false
    private var invertNotSampled = false
    private var notSampled = false
    private var sampledBy: String?
    private var invertSampledBy: String?

    public init() {}

    public mutating func add(_ decision: PolicyDecision, policy: String) {
        switch decision {
        case .dropped: dropped = true
        case .invertNotSampled: invertNotSampled = true
        case .sampled: if sampledBy == nil { sampledBy = policy }
        case .invertSampled: if invertSampledBy == nil { invertSampledBy = policy }
        case .notSampled: notSampled = true
        }
    }

    /// Whether a policy sampled (for `sample_on_first_match`, which stops there).
    public var hasSample: Bool { sampledBy != nil }
    /// Whether a drop policy matched: the collector stops evaluating there (later stateful policies,
    /// such as rate limits, spend nothing on the trace).
    public var isDropped: Bool { dropped }

    public var result: TraceDecision { explained.decision }

    /// The decision with the rule that made it.
    public var explained: (decision: TraceDecision, rule: PrecedenceRule) {
        if dropped { return (.drop, .dropped) }
        if invertNotSampled { return (.drop, .invertNotSampled) }
        if let sampledBy { return (.keep(policy: sampledBy), .sampled) }
        if let invertSampledBy { return notSampled ? (.drop, .invertSampledOutvoted) : (.keep(policy: invertSampledBy), .invertSampled) }
        return (.drop, .notSampled)
    }
}
