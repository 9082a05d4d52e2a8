/// Where a rule file relies on a behaviour tailgate keeps different from the collector's
/// tail_sampling processor, on purpose (the README's "Where tailgate differs" list), or on a collector
/// rule that surprises: `tailgate check` prints these as warnings (never errors), located by policy.
public struct CollectorDifference: Sendable, Equatable, CustomStringConvertible {
    /// Line of the policy in the rule file (0 when not known).
    public var line: Int
    /// The policy (path through sub-policies), or nil for a setting.
    public var policy: String?
    public var message: String

    public var description: String {
        (line > 0 ? "line \(line): " : "") + (policy.map { "policy \"\($0)\": " } ?? "") + message
    }

    /// Every difference `configuration` relies on, in file order.
    public static func find(in configuration: RuleConfiguration) -> [CollectorDifference] {
        var found: [CollectorDifference] = []
        let wait = configuration.settings.decisionWait
        if wait.components.attoseconds != 0 {
            found.append(CollectorDifference(
                line: 0, policy: nil,
                message: "decision_wait \(wait) is not whole seconds: tailgate decides to the 10 ms, the collector ticks once a second"))
        }
        for policy in configuration.policies { visit(policy, path: policy.name, into: &found) }
        return found
    }

    private static func visit(_ spec: PolicySpec, path: String, into found: inout [CollectorDifference]) {
        func note(_ message: String) { found.append(CollectorDifference(line: spec.line, policy: path, message: message)) }
        switch spec.kind {
        case .latency(_, let upper) where upper > 0:
            note("latency with upper_threshold_ms measures the whole trace here; the collector's code can sample early on a running duration")
        case .numericAttribute(_, let min, let max, _):
            note("numeric_attribute compares double values numerically here; the collector reads a double attribute as 0")
            if min == .min || max == .max {
                note("an unset (or 0) min_value/max_value means no bound on that side, as in the collector: \(min == .min ? "negative values match too" : "any large value matches")")
            }
        case .rateLimiting:
            note("rate_limiting is a token bucket on the decision clock here; the collector resets a counter each wall-clock second (bursts differ)")
        case .composite(_, let order, let subs, _):
            let fileOrder = subs.map(\.name)
            let evaluated = order.filter { fileOrder.contains($0) } + fileOrder.filter { !order.contains($0) }
            if evaluated != fileOrder {
                note("composite evaluates sub-policies in policy_order (\(evaluated.joined(separator: ", "))); the collector walks them in file order (\(fileOrder.joined(separator: ", ")))")
            }
            for sub in subs { visit(sub, path: path + "/" + sub.name, into: &found) }
        case .and(let subs), .drop(let subs):
            for sub in subs { visit(sub, path: path + "/" + sub.name, into: &found) }
        case .not(let sub):
            visit(sub, path: path + "/" + sub.name, into: &found)
        case .dynamic(let configuration):
            let what = configuration.algorithm == .byteBudget
                ? "a budget in kept bytes that counts the other policies' keeps, consistent by trace id"
                : "Refinery's dynamic sampler, consistent by trace id"
            note("\(configuration.algorithm.rawValue) is tailgate's (\(what)): the collector refuses this policy type")
        default:
            break
        }
    }
}
