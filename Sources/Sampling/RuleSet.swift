public import OTLP

/// An immutable, compiled rule file: what the shards decide with. A reload builds a new one and
/// swaps it in; policies that did not change are carried over with their limiter state.
public final class RuleSet: Sendable {
    public let configuration: RuleConfiguration
    public let policies: [Policy]
    /// The attribute keys the decoder must extract. Only grows across reloads, so key ids of spans
    /// already buffered stay valid.
    public let selection: AttributeSelection
    /// A short content hash of the rule file (for `tailgate_rules_info{hash}` and logs).
    public let hash: String
    /// The rule file's text as it was loaded (empty for rules built in code).
    public let source: String
    /// The redaction rules, compiled; nil when the file has none.
    public let redactor: Redactor?
    /// Each policy's adaptive samplers with the one that decides for it (empty: no adaptive sampler).
    private let samplers: [(policy: String, all: [DynamicSampler], deciding: DynamicSampler?)]
    /// The `byte_budget` samplers (at most 64), with the position of the policy each decides for.
    private let budgets: [(index: Int, sampler: DynamicSampler)]

    /// Compiles `configuration`. Regexes were checked by the parser; `previous` lends its attribute
    /// ids and the state of unchanged policies. `requiredKeys` are selected whatever the policies
    /// read (the span metrics' dimensions and peer attributes); they keep their ids across reloads.
    /// `redactionKey`: the secret of `hash` redaction rules (the loader reads it from the environment).
    public init(
        configuration: RuleConfiguration, previous: RuleSet? = nil, hash: String = "", requiredKeys: [String] = [],
        redactionKey: [UInt8] = [], source: String = ""
    ) {
        self.configuration = configuration
        self.hash = hash
        self.source = source
        // Patterns were checked by the parser.
        redactor = configuration.redaction.isEmpty ? nil : try? Redactor(rules: configuration.redaction, hashKey: redactionKey)
        var keys = previous?.selection.keys ?? []
        for key in requiredKeys where !keys.contains(key) { keys.append(key) }
        for policy in configuration.policies {
            for key in policy.kind.attributeKeys where !keys.contains(key) { keys.append(key) }
        }
        let selection = AttributeSelection(keys: keys)
        self.selection = selection
        policies = configuration.policies.map { spec in
            if let carried = previous?.policies.first(where: { $0.spec.sameBehaviour(as: spec) }) { return carried }
            return RuleSet.compile(spec, selection: selection)
        }
        samplers = policies.compactMap { $0.allSamplers.isEmpty ? nil : ($0.name, $0.allSamplers, $0.decidingSampler) }
        budgets = Array(policies.enumerated().compactMap { index, policy in
            policy.decidingSampler.flatMap { $0.configuration.algorithm == .byteBudget ? (index, $0) : nil }
        }.prefix(64))
    }

    /// Decides a whole trace with the collector's precedence; `now` feeds the rate limiters.
    /// The `ot=th` a trace kept by `policy` leaves with (OTEP 235), when that policy is a top-level
    /// `probabilistic` one: its probability's threshold (`hash_seed`, `equalizing`), or the incoming
    /// threshold scaled by it (`proportional`). Each span's own threshold is raised to it, never lowered.
    public func samplingThreshold(for trace: TraceData, keptBy policy: String) -> SamplingThreshold? {
        keptAnnotation(for: trace, keptBy: policy).threshold
    }

    /// What a kept trace's spans carry for the policy that kept it: the `ot=th` of a probabilistic
    /// or adaptive keep, and an adaptive sampler's `SampleRate` (Refinery's attribute: the trace
    /// stands for that many). Asks an adaptive sampler once per kept trace (it forgets the rate then).
    public func keptAnnotation(for trace: TraceData, keptBy policy: String) -> KeptAnnotation {
        guard let compiled = policies.first(where: { $0.name == policy }) else { return KeptAnnotation() }
        if let sampler = compiled.decidingSampler {
            let rate = sampler.keptRate(trace.traceID) ?? sampler.peek(trace).rate
            // At rate 1 the spans keep their tracestate as it came (Refinery writes nothing either).
            return KeptAnnotation(threshold: rate > 1 ? DynamicSampler.threshold(rate: rate) : nil, sampleRate: rate)
        }
        return KeptAnnotation(threshold: probabilisticThreshold(for: trace, spec: compiled.spec), sampleRate: probabilisticSampleRate(compiled.spec))
    }

    /// A probabilistic keep's `SampleRate`: 100 ÷ its percentage when that is a whole number (5 % →
    /// 20); otherwise none (Refinery's attribute is a whole number; the `th` carries the exact one).
    private func probabilisticSampleRate(_ spec: PolicySpec) -> Int? {
        guard case .probabilistic(let percentage, _, _, _) = spec.kind, percentage > 0, percentage < 100 else { return nil }
        let rate = 100 / percentage
        return abs(rate - rate.rounded()) < 1e-9 ? Int(rate.rounded()) : nil
    }

    private func probabilisticThreshold(for trace: TraceData, spec: PolicySpec) -> SamplingThreshold? {
        guard case .probabilistic(let percentage, _, let mode, let precision) = spec.kind else { return nil }
        let p = percentage / 100
        guard p > 0 else { return nil }
        switch mode {
        case .hashSeed, .equalizing: return SamplingThreshold(probability: p, precision: precision)
        case .proportional: return trace.incomingThreshold.scaled(by: p, precision: precision)
        }
    }

    /// Why a trace was decided so (`tailgate eval --explain`): every policy's own decision, in file
    /// order (nil: not evaluated, after a drop or with `sample_on_first_match`), the precedence rule
    /// that decided, and the threshold a probabilistic keep writes.
    public struct Explanation: Sendable, Equatable {
        public var decision: TraceDecision
        public var policies: [(name: String, decision: PolicyDecision?)]
        public var rule: PrecedenceRule
        public var threshold: SamplingThreshold?
        /// An adaptive sampler's key for the trace and the rate it got.
        public var sampler: (key: String, rate: Int)?

        public static func == (a: Explanation, b: Explanation) -> Bool {
            a.decision == b.decision && a.rule == b.rule && a.threshold == b.threshold
                && a.sampler?.key == b.sampler?.key && a.sampler?.rate == b.sampler?.rate
                && a.policies.map(\.name) == b.policies.map(\.name) && a.policies.map(\.decision) == b.policies.map(\.decision)
        }
    }

    /// ``decide(_:now:)`` with its reasons (the same evaluation; stateful policies spend alike).
    public func explain(_ trace: TraceData, now: UInt64) -> Explanation {
        var combiner = DecisionCombiner()
        var decisions: [(name: String, decision: PolicyDecision?)] = policies.map { ($0.name, nil) }
        var sampling = BudgetSampling()
        for (index, policy) in policies.enumerated() {
            let decision = policy.evaluate(trace, now: now)
            decisions[index].decision = decision
            combiner.add(decision, policy: policy.name)
            if !budgets.isEmpty { sampling.note(decision, policy: index, budgets: budgets) }
            if combiner.isDropped { break }
            if configuration.settings.sampleOnFirstMatch && combiner.hasSample { break }
        }
        let (decision, rule) = combiner.explained
        if !budgets.isEmpty { account(decision, trace: trace, sampling: sampling, now: now) }
        var threshold: SamplingThreshold?
        var sampler: (key: String, rate: Int)?
        if case .keep(let policy) = decision {
            let annotation = keptAnnotation(for: trace, keptBy: policy)
            threshold = annotation.threshold
        }
        // The first adaptive sampler's key and rate for this trace (after its evaluation above).
        if let dynamic = policies.lazy.flatMap(\.allSamplers).first { sampler = dynamic.peek(trace) }
        return Explanation(decision: decision, policies: decisions, rule: rule, threshold: threshold, sampler: sampler)
    }

    public func decide(_ trace: TraceData, now: UInt64) -> TraceDecision {
        var tally = PolicyTally.none
        return decide(trace, now: now, tally: &tally)
    }

    /// ``decide(_:now:)``, counting each policy's own decision in `tally` (sized for these policies;
    /// an empty tally counts nothing).
    public func decide(_ trace: TraceData, now: UInt64, tally: inout PolicyTally) -> TraceDecision {
        var mustKeep = false
        return decide(trace, now: now, tally: &tally, mustKeep: &mustKeep)
    }

    /// ``decide(_:now:tally:)``; `mustKeep` says whether a policy that keeps for content alone
    /// (``Policy/isMustKeep``) sampled the trace: then it was kept with probability 1, whichever
    /// policy is credited.
    public func decide(_ trace: TraceData, now: UInt64, tally: inout PolicyTally, mustKeep: inout Bool) -> TraceDecision {
        var combiner = DecisionCombiner()
        var sampling = BudgetSampling()
        mustKeep = false
        for (index, policy) in policies.enumerated() {
            let decision = policy.evaluate(trace, now: now)
            tally.count(decision, policy: index)
            combiner.add(decision, policy: policy.name)
            if !mustKeep && policy.isMustKeep && (decision == .sampled || decision == .invertSampled) { mustKeep = true }
            if !budgets.isEmpty { sampling.note(decision, policy: index, budgets: budgets) }
            if combiner.isDropped { break }
            if configuration.settings.sampleOnFirstMatch && combiner.hasSample { break }
        }
        let result = combiner.result
        if !budgets.isEmpty { account(result, trace: trace, sampling: sampling, now: now) }
        if !samplers.isEmpty {
            // A sampler remembers the rate of each trace it keeps until the keeping policy's
            // annotation takes it; traces another policy decided would stay there (a leak).
            var keptBy: String?
            if case .keep(let name) = result { keptBy = name }
            for entry in samplers {
                for sampler in entry.all where !(entry.policy == keptBy && sampler === entry.deciding) { sampler.forgetKeptRate(trace.traceID) }
            }
        }
        return result
    }

    /// Which policies sampled a trace, as the byte budgets need it: how many, and which budgets.
    struct BudgetSampling {
        var count = 0
        var budgets: UInt64 = 0

        mutating func note(_ decision: PolicyDecision, policy index: Int, budgets list: [(index: Int, sampler: DynamicSampler)]) {
            guard decision == .sampled || decision == .invertSampled else { return }
            count += 1
            for (slot, budget) in list.enumerated() where budget.index == index { budgets |= 1 << UInt64(slot) }
        }
    }

    /// Tells each byte budget what a kept trace cost it: a must-keep when another policy kept the
    /// trace too, else its own keep.
    private func account(_ decision: TraceDecision, trace: TraceData, sampling: BudgetSampling, now: UInt64) {
        guard case .keep = decision else { return }
        for (slot, budget) in budgets.enumerated() {
            let own = sampling.budgets & (1 << UInt64(slot)) != 0
            budget.sampler.account(keptBytes: trace.encodedBytes, mustKeep: sampling.count > (own ? 1 : 0), now: now)
        }
    }

    /// Every adaptive sampler with the name metrics and snapshots know it by: its top-level policy's,
    /// with `#2`, `#3` … when one policy holds several.
    public static func namedSamplers(_ rules: RuleSet) -> [(String, DynamicSampler)] {
        rules.policies.flatMap { policy in
            policy.allSamplers.enumerated().map { index, sampler in (index == 0 ? policy.spec.name : "\(policy.spec.name)#\(index + 1)", sampler) }
        }
    }

    static func compile(_ spec: PolicySpec, selection: AttributeSelection) -> Policy {
        let evaluator: Evaluator
        switch spec.kind {
        case .alwaysSample:
            evaluator = .alwaysSample
        case .latency(let threshold, let upper):
            evaluator = .latency(thresholdMs: threshold, upperThresholdMs: upper)
        case .numericAttribute(let key, let min, let max, let invert):
            evaluator = .numeric(key: selection.id(of: key), min: min, max: max, invert: invert)
        case .probabilistic(let percentage, let salt, .hashSeed, _):
            evaluator = .probabilistic(
                threshold: ProbabilisticHash.threshold(samplingPercentage: percentage),
                seed: ProbabilisticHash.seed(salt: salt.isEmpty ? ProbabilisticHash.defaultSalt : salt))
        case .probabilistic(let percentage, _, let mode, let precision):
            evaluator = .consistent(mode: mode, probability: percentage / 100, precision: precision)
        case .statusCode(let codes):
            evaluator = .statusCode(mask: codes.reduce(0) { $0 | 1 << $1.rawValue })
        case .stringAttribute(let key, let values, let regex, let cacheSize, let invert):
            let matcher: StringMatcher
            if regex {
                matcher = StringMatcher(
                    exact: [], regexes: values.compactMap { try? Regex($0) },
                    cache: RegexResultCache(capacity: cacheSize > 0 ? cacheSize : 128))
            } else {
                matcher = StringMatcher(exact: values.filter { !$0.isEmpty }.map { Array($0.utf8) }, regexes: [], cache: nil)
            }
            evaluator = .string(key: selection.id(of: key), matcher: matcher, invert: invert)
        case .rateLimiting(let spansPerSecond):
            evaluator = .rateLimiting(TokenBucket(rate: Double(spansPerSecond), capacity: Double(spansPerSecond)))
        case .bytesLimiting(let bytesPerSecond, let burst):
            evaluator = .bytesLimiting(
                TokenBucket(rate: Double(bytesPerSecond), capacity: Double(burst > 0 ? burst : 2 * bytesPerSecond)))
        case .spanCount(let min, let max):
            evaluator = .spanCount(min: min, max: max)
        case .traceState(let key, let values):
            evaluator = .traceState(
                key: Array(key.utf8), values: values.filter { !$0.isEmpty && key.utf8.count + $0.utf8.count < 256 }.map { Array($0.utf8) })
        case .traceFlags:
            evaluator = .traceFlags
        case .booleanAttribute(let key, let value, let invert):
            evaluator = .boolean(key: selection.id(of: key), value: value, invert: invert)
        case .and(let subs):
            evaluator = .and(subs.map { compile($0, selection: selection) })
        case .not(let sub):
            evaluator = .not(compile(sub, selection: selection))
        case .drop(let subs):
            evaluator = .drop(subs.map { compile($0, selection: selection) })
        case .dynamic(let configuration):
            evaluator = .dynamic(DynamicSampler(configuration: configuration, selection: selection))
        case .composite(let maxTotal, let order, let subs, let allocation):
            // Evaluated in policy_order (sub-policies not named there follow in file order).
            let ordered = order.compactMap { name in subs.first { $0.name == name } } + subs.filter { !order.contains($0.name) }
            // The collector's allocation: a percentage of the total, the default share for a 0 percent,
            // nothing for a sub-policy absent from rate_allocation.
            let defaultShare = Double(maxTotal) / Double(max(subs.count, 1))
            let allocated = ordered.map { sub -> Int64 in
                guard let entry = allocation.first(where: { $0.policy == sub.name }) else { return 0 }
                return Int64(entry.percent > 0 ? entry.percent / 100 * Double(maxTotal) : defaultShare)
            }
            evaluator = .composite(
                subPolicies: ordered.map { compile($0, selection: selection) },
                budget: CompositeBudget(allocated: allocated, maxTotal: maxTotal))
        }
        return Policy(spec: spec, evaluator: evaluator)
    }
}

/// What a kept trace's spans carry besides their own bytes.
public struct KeptAnnotation: Sendable, Equatable {
    public var threshold: SamplingThreshold?
    public var sampleRate: Int?
    public init(threshold: SamplingThreshold? = nil, sampleRate: Int? = nil) {
        self.threshold = threshold
        self.sampleRate = sampleRate
    }
}

/// Each policy's own decisions over some traces, by policy position in one ``RuleSet``: what the
/// console and `tailgate_policy_decisions_total` show (the collector's `count_traces_sampled`).
public struct PolicyTally: Sendable, Equatable {
    public enum Column: Int, CaseIterable, Sendable {
        case sampled, notSampled, dropped, invertSampled, invertNotSampled

        init(_ decision: PolicyDecision) {
            switch decision {
            case .sampled: self = .sampled
            case .notSampled: self = .notSampled
            case .dropped: self = .dropped
            case .invertSampled: self = .invertSampled
            case .invertNotSampled: self = .invertNotSampled
            }
        }

        public var label: String {
            switch self {
            case .sampled: "sampled"
            case .notSampled: "not_sampled"
            case .dropped: "dropped"
            case .invertSampled: "inverted_sampled"
            case .invertNotSampled: "inverted_not_sampled"
            }
        }
    }

    /// Counts, `Column.allCases.count` per policy.
    public private(set) var counts: [Int]

    /// Counts nothing.
    public static let none = PolicyTally(policies: 0)

    public init(policies: Int) { counts = Array(repeating: 0, count: policies * Column.allCases.count) }

    @inline(__always)
    public mutating func count(_ decision: PolicyDecision, policy index: Int) {
        let slot = index * Column.allCases.count + Column(decision).rawValue
        if slot < counts.count { counts[slot] &+= 1 }
    }

    /// Policy `index`'s counts, in `Column` order.
    public func columns(of index: Int) -> [Int] {
        let width = Column.allCases.count
        return Array(counts[(index * width)..<((index + 1) * width)])
    }

    public var isEmpty: Bool { counts.allSatisfy { $0 == 0 } }
}
