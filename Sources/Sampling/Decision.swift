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

    /// Whether the decision leans to keeping (for `and`, `not`, `composite`, which see plain booleans).
    var samples: Bool { self == .sampled || self == .invertSampled }
}

/// The final verdict on a trace.
public enum TraceDecision: Sendable, Equatable, Hashable {
    /// Keep, naming the policy that kept it (the first, in rule-file order, that sampled).
    case keep(policy: String)
    case drop

    public var isKeep: Bool { if case .keep = self { true } else { false } }
}

/// Combines policy decisions with the collector's precedence:
/// Dropped > InvertNotSampled > Sampled > InvertSampled > NotSampled.
public struct DecisionCombiner: Sendable {
    private var dropped = false
    private var invertNotSampled = false
    private var sampledBy: String?
    private var invertSampledBy: String?

    public init() {}

    public mutating func add(_ decision: PolicyDecision, policy: String) {
        switch decision {
        case .dropped: dropped = true
        case .invertNotSampled: invertNotSampled = true
        case .sampled: if sampledBy == nil { sampledBy = policy }
        case .invertSampled: if invertSampledBy == nil { invertSampledBy = policy }
        case .notSampled: break
        }
    }

    /// Whether no later decision can change the outcome any more (for `sample_on_first_match`).
    public var hasSample: Bool { sampledBy != nil }

    public var result: TraceDecision {
        if dropped || invertNotSampled { return .drop }
        if let sampledBy { return .keep(policy: sampledBy) }
        if let invertSampledBy { return .keep(policy: invertSampledBy) }
        return .drop
    }
}
