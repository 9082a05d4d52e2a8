import OTLP
import Yams

/// Honeycomb Refinery rules files (`RulesVersion: 2`), read as tailgate policies.
///
/// One environment's sampler (`__default__` unless another is named) becomes policies with the same
/// decisions where the meaning carries over exactly, and is refused — file, line and construct named —
/// where it does not:
/// - `DeterministicSampler` → `probabilistic` (mode `equalizing`: 1/SampleRate, consistent by trace id);
/// - `EMADynamicSampler`, `EMAThroughputSampler`, `WindowedThroughputSampler` → `ema_dynamic`,
///   `ema_throughput`, `windowed_throughput` with the same settings;
/// - `RulesBasedSampler`: Refinery takes the first rule whose conditions match. Rule k becomes one
///   policy that requires its own conditions *and* that none of the rules before it matched, so
///   tailgate's "any policy keeps" gives the same answer: `drop` for `Drop: true`, `and` of the
///   conditions with a `probabilistic` (SampleRate) or the downstream sampler, and a last policy that
///   keeps what no rule matched (Refinery keeps it at rate 1).
extension RuleFileParser {
    mutating func parseRefinery(_ root: Node, environment: String) -> RuleConfiguration? {
        guard let mapping = root.mapping else { return nil }
        for (key, _) in mapping where !["RulesVersion", "Samplers"].contains(key.string ?? "") {
            unknownKey(key, policy: nil, allowed: ["RulesVersion", "Samplers"])
        }
        guard let version = mapping["RulesVersion"] else {
            error(root, "a Refinery rules file needs RulesVersion: 2")
            return nil
        }
        guard version.string == "2" else {
            error(version, "RulesVersion \(version.string ?? "?") is not supported; convert it with Refinery's convert tool to version 2 first")
            return nil
        }
        guard let samplers = mapping["Samplers"]?.mapping else {
            error(mapping["Samplers"] ?? root, "Samplers must map environment names to samplers, with a __default__")
            return nil
        }
        guard let chosen = samplers[Node(environment)] else {
            error(mapping["Samplers"], "no sampler for environment \"\(environment)\" (Refinery requires __default__)")
            return nil
        }
        guard let policies = refinerySampler(chosen, name: environment, topLevel: true) else { return nil }
        return RuleConfiguration(policies: policies)
    }

    /// The policies one Refinery sampler stands for.
    private mutating func refinerySampler(_ node: Node, name: String, topLevel: Bool) -> [PolicySpec]? {
        guard let mapping = node.mapping, mapping.count == 1, let (kindNode, settings) = mapping.first, let kind = kindNode.string else {
            error(node, policy: name, "expected one sampler, e.g. DeterministicSampler: {SampleRate: 10}")
            return nil
        }
        let line = kindNode.mark?.line ?? 0
        switch kind {
        case "DeterministicSampler":
            guard let rate = refineryInteger(settings.mapping?["SampleRate"], key: "SampleRate", policy: name, allowed: ["SampleRate"], in: settings) else {
                return nil
            }
            return [PolicySpec(name: name, line: line, kind: Self.deterministic(rate))]
        case "EMADynamicSampler", "EMAThroughputSampler", "WindowedThroughputSampler":
            guard let configuration = refineryDynamic(kind, settings, policy: name) else { return nil }
            return [PolicySpec(name: name, line: line, kind: .dynamic(configuration))]
        case "RulesBasedSampler":
            guard topLevel else {
                error(kindNode, policy: name, "a RulesBasedSampler cannot be a rule's downstream sampler")
                return nil
            }
            return refineryRules(settings, policy: name)
        case "DynamicSampler", "TotalThroughputSampler":
            error(kindNode, policy: name, "\(kind) is not supported; use EMADynamicSampler (or EMAThroughputSampler), its successor")
            return nil
        default:
            error(kindNode, policy: name, "unknown Refinery sampler \(kind)")
            return nil
        }
    }

    static func deterministic(_ rate: Int64) -> PolicyKind {
        rate <= 1 ? .alwaysSample : .probabilistic(samplingPercentage: 100 / Double(rate), hashSalt: "", mode: .equalizing, precision: 4)
    }

    private mutating func refineryInteger(_ node: Node?, key: String, policy: String, allowed: [String]? = nil, in settings: Node) -> Int64? {
        if let allowed, let map = settings.mapping {
            for (k, _) in map where !allowed.contains(k.string ?? "") { unknownKey(k, policy: policy, allowed: allowed) }
        }
        guard let node else {
            error(settings, policy: policy, "missing \(key)")
            return nil
        }
        return integer(node, key: key, policy: policy, minimum: 1)
    }

    private mutating func refineryDynamic(_ kind: String, _ settings: Node, policy: String) -> DynamicSamplerConfiguration? {
        let algorithm: DynamicSamplerConfiguration.Algorithm =
            kind == "EMADynamicSampler" ? .emaDynamic : kind == "EMAThroughputSampler" ? .emaThroughput : .windowedThroughput
        var allowed = ["FieldList", "UseTraceLength", "MaxKeys"]
        switch algorithm {
        case .emaDynamic: allowed += ["GoalSampleRate", "AdjustmentInterval", "Weight", "AgeOutValue", "BurstMultiple", "BurstDetectionDelay"]
        case .emaThroughput: allowed += ["GoalThroughputPerSec", "InitialSampleRate", "AdjustmentInterval", "Weight", "AgeOutValue", "BurstMultiple", "BurstDetectionDelay", "UseClusterSize"]
        case .windowedThroughput: allowed += ["GoalThroughputPerSec", "UpdateFrequency", "LookbackFrequency", "UseClusterSize"]
        case .byteBudget: break  // tailgate's own; Refinery has none
        }
        guard let map = settings.mapping else {
            error(settings, policy: policy, "\(kind) needs its settings (FieldList, ...)")
            return nil
        }
        for (key, _) in map where !allowed.contains(key.string ?? "") { unknownKey(key, policy: policy, allowed: allowed) }
        guard let fields = stringList(map["FieldList"], key: "FieldList", config: settings, policy: policy), !fields.isEmpty else {
            if map["FieldList"] != nil { error(map["FieldList"], policy: policy, "FieldList must name at least one field") }
            return nil
        }
        var configuration = DynamicSamplerConfiguration(algorithm: algorithm, keyFields: fields)
        configuration.useTraceLength = boolean(map["UseTraceLength"], key: "UseTraceLength", policy: policy) ?? false
        if let keys = integer(map["MaxKeys"], key: "MaxKeys", policy: policy, minimum: 0), keys > 0 { configuration.maxKeys = Int(keys) }
        if let rate = integer(map["GoalSampleRate"], key: "GoalSampleRate", policy: policy, minimum: 1) { configuration.goalSampleRate = Int(rate) }
        if let rate = integer(map["InitialSampleRate"], key: "InitialSampleRate", policy: policy, minimum: 1) { configuration.initialSampleRate = Int(rate) }
        if let node = map["GoalThroughputPerSec"] {
            guard let goal = number(node), goal > 0 else {
                error(node, policy: policy, "GoalThroughputPerSec must be a number above 0")
                return nil
            }
            configuration.goalThroughputPerSecond = goal
        } else if algorithm != .emaDynamic {
            configuration.goalThroughputPerSecond = 100  // Refinery's default
        }
        func nanoseconds(_ key: String) -> UInt64? {
            guard let node = map[Node(key)], let duration = duration(node, key: key) else { return nil }
            return UInt64(max(1, duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000))
        }
        if let value = nanoseconds("AdjustmentInterval") { configuration.adjustmentInterval = value }
        if let value = nanoseconds("UpdateFrequency") { configuration.updateInterval = value }
        if let value = nanoseconds("LookbackFrequency") { configuration.lookback = value }
        if let node = map["Weight"] {
            guard let weight = number(node), weight > 0, weight < 1 else {
                error(node, policy: policy, "Weight must be between 0 and 1")
                return nil
            }
            configuration.weight = weight
        }
        if let node = map["AgeOutValue"], let value = number(node) { configuration.ageOutValue = value }
        if let node = map["BurstMultiple"], let value = number(node) { configuration.burstMultiple = value }
        if let delay = integer(map["BurstDetectionDelay"], key: "BurstDetectionDelay", policy: policy, minimum: 0) {
            configuration.burstDetectionDelay = Int(delay)
        }
        return configuration
    }

    // MARK: RulesBasedSampler

    private mutating func refineryRules(_ settings: Node, policy: String) -> [PolicySpec]? {
        guard let map = settings.mapping else {
            error(settings, policy: policy, "RulesBasedSampler needs Rules: a list")
            return nil
        }
        for (key, value) in map where !["Rules", "CheckNestedFields"].contains(key.string ?? "") {
            _ = value
            unknownKey(key, policy: policy, allowed: ["Rules", "CheckNestedFields"])
        }
        if boolean(map["CheckNestedFields"], key: "CheckNestedFields", policy: policy) == true {
            error(map["CheckNestedFields"], policy: policy, "CheckNestedFields is not supported: OTLP attributes are flat; name the attribute as sent")
        }
        guard let rules = map["Rules"]?.sequence, !rules.isEmpty else {
            error(map["Rules"] ?? settings, policy: policy, "Rules must be a list of rules")
            return nil
        }
        var policies: [PolicySpec] = []
        var earlier: [PolicySpec] = []  // each earlier rule's match, to be negated
        var names = Set<String>()
        for (index, ruleNode) in rules.enumerated() {
            guard let rule = ruleNode.mapping else {
                error(ruleNode, policy: policy, "a rule must be a mapping (Name, Conditions, SampleRate or Drop or Sampler)")
                continue
            }
            let allowed = ["Name", "Conditions", "SampleRate", "Drop", "Sampler", "Scope"]
            for (key, _) in rule where !allowed.contains(key.string ?? "") { unknownKey(key, policy: policy, allowed: allowed) }
            var name = rule["Name"]?.string ?? "rule \(index + 1)"
            if !names.insert(name).inserted { name += " (\(index + 1))" }
            names.insert(name)
            let line = ruleNode.mark?.line ?? 0
            let conditionNodes = rule["Conditions"]?.sequence ?? []
            let scope = rule["Scope"]?.string ?? "trace"
            guard ["trace", "span"].contains(scope) else {
                error(rule["Scope"], policy: name, "Scope must be trace or span")
                continue
            }
            if scope == "span" && conditionNodes.count > 1 {
                error(rule["Scope"], policy: name, "Scope: span with \(conditionNodes.count) conditions cannot be mapped: tailgate's conditions each match any span of the trace; use Scope: trace if any span may satisfy each condition")
                continue
            }
            var conditions: [PolicySpec] = []
            var failed = false
            for (position, node) in conditionNodes.enumerated() {
                if let condition = refineryCondition(node, rule: name, position: position) { conditions.append(condition) } else { failed = true }
            }
            if failed { continue }
            let notEarlier = earlier.map { PolicySpec(name: "not \($0.name)", line: line, kind: .not($0)) }
            let match = conditions.count == 1 ? conditions[0] : PolicySpec(name: "\(name) matches", line: line, kind: conditions.isEmpty ? .alwaysSample : .and(conditions))
            if boolean(rule["Drop"], key: "Drop", policy: name) == true {
                policies.append(PolicySpec(name: name, line: line, kind: .drop((conditions.isEmpty ? [PolicySpec(name: "any", line: line, kind: .alwaysSample)] : conditions) + notEarlier)))
            } else if let samplerNode = rule["Sampler"] {
                guard let downstream = refinerySampler(samplerNode, name: "\(name) sampler", topLevel: false) else { continue }
                policies.append(PolicySpec(name: name, line: line, kind: .and(conditions + notEarlier + downstream)))
            } else {
                let rate = rule["SampleRate"].map { integer($0, key: "SampleRate", policy: name, minimum: 1) } ?? 1
                guard let rate else { continue }
                var parts = conditions + notEarlier
                if rate > 1 { parts.append(PolicySpec(name: "1 in \(rate)", line: line, kind: Self.deterministic(rate))) }
                policies.append(PolicySpec(name: name, line: line, kind: parts.isEmpty ? .alwaysSample : .and(parts)))
            }
            earlier.append(PolicySpec(name: name, line: line, kind: match.kind))
            if conditionNodes.isEmpty { break }  // a rule without conditions matches every trace: later rules never apply
        }
        // Refinery keeps what no rule matched, at rate 1.
        if !earlier.contains(where: { $0.kind == .alwaysSample }) {
            let line = settings.mark?.line ?? 0
            policies.append(PolicySpec(
                name: "no rule matched", line: line,
                kind: .and(earlier.map { PolicySpec(name: "not \($0.name)", line: line, kind: .not($0)) })))
        }
        return policies
    }

    /// One condition as a tailgate policy, or nil (refused, with the reason).
    private mutating func refineryCondition(_ node: Node, rule: String, position: Int) -> PolicySpec? {
        guard let map = node.mapping else {
            error(node, policy: rule, "a condition must be a mapping: Field, Operator, Value, Datatype")
            return nil
        }
        let allowed = ["Field", "Fields", "Operator", "Value", "Datatype"]
        for (key, _) in map where !allowed.contains(key.string ?? "") { unknownKey(key, policy: rule, allowed: allowed) }
        var fields: [String] = []
        if let field = map["Field"]?.string { fields = [field] }
        if let list = map["Fields"]?.sequence { fields += list.compactMap(\.string) }
        guard fields.count == 1, let field = fields.first else {
            error(map["Fields"] ?? node, policy: rule, fields.isEmpty ? "a condition needs a Field" : "Fields with \(fields.count) names cannot be mapped (each tailgate condition reads one attribute); write one rule per field")
            return nil
        }
        guard let op = map["Operator"]?.string else {
            error(node, policy: rule, "a condition needs an Operator")
            return nil
        }
        let name = "\(field) \(op)\(map["Value"]?.string.map { " \($0)" } ?? "")"
        let line = node.mark?.line ?? 0
        func spec(_ kind: PolicyKind) -> PolicySpec { PolicySpec(name: name, line: line, kind: kind) }
        func refuse(_ why: String) -> PolicySpec? {
            error(map["Operator"] ?? node, policy: rule, "condition \"\(name)\" cannot be mapped: \(why)")
            return nil
        }
        if field.hasPrefix("root.") { return refuse("root. fields read the root span only; tailgate's conditions match any span") }
        if field == "duration_ms" { return refuse("a span's duration_ms; write a latency policy (the trace's duration) instead") }
        let datatype = map["Datatype"]?.string
        let valueNode = map["Value"]
        let text = valueNode?.string
        let isInteger = datatype == "int" || (datatype == nil && valueNode?.tag.description.hasSuffix("int") == true)
        let isBool = datatype == "bool" || (datatype == nil && valueNode?.tag.description.hasSuffix("bool") == true)
        // Refinery's own fields from OTLP: error (true on error spans), status_code (the span's status).
        if field == "error" {
            if op == "exists" || (op == "=" && text?.lowercased() == "true") { return spec(.statusCode([.error])) }
            return refuse("only error exists and error = true map (to status_code ERROR)")
        }
        if field == "status_code" {
            guard op == "=", let code = text.flatMap(Int.init) else { return refuse("only status_code = 0, 1 or 2 maps (to status_code UNSET, OK, ERROR)") }
            switch code {
            case 0: return spec(.statusCode([.unset]))
            case 1: return spec(.statusCode([.ok]))
            case 2: return spec(.statusCode([.error]))
            default: return refuse("status_code \(code) is not an OTLP status (0, 1, 2)")
            }
        }
        switch op {
        case "=":
            guard let text else { return refuse("no Value") }
            if isBool, let value = Bool(text.lowercased()) { return spec(.booleanAttribute(key: field, value: value, invertMatch: false)) }
            if isInteger {
                guard let value = Int64(text) else { return refuse("\(text) is not an int") }
                guard value != 0 else { return refuse("= 0: a numeric_attribute bound of 0 means \"not set\" in the collector's syntax") }
                return spec(.numericAttribute(key: field, min: value, max: value, invertMatch: false))
            }
            if datatype == "float" { return refuse("float equality has no tailgate policy") }
            return spec(.stringAttribute(key: field, values: [text], regex: false, cacheMaxSize: 0, invertMatch: false))
        case "!=":
            guard let text, !isInteger, !isBool, datatype != "float" else { return refuse("!= maps for strings only") }
            return spec(.stringAttribute(key: field, values: ["^(?!\(Self.escaped(text))$)"], regex: true, cacheMaxSize: 0, invertMatch: false))
        case ">", ">=", "<", "<=":
            guard let text, let value = Int64(text), datatype != "float", datatype != "string" else {
                return refuse("comparisons map for whole numbers only (numeric_attribute bounds are integers)")
            }
            if (op == ">=" || op == "<=") && value == 0 || (op == ">" && value == -1) || (op == "<" && value == 1) {
                return refuse("a bound of 0 means \"not set\" in the collector's numeric_attribute; write > -1 or < 1 as >= 0 / <= 0 cannot be expressed")
            }
            switch op {
            case ">": return spec(.numericAttribute(key: field, min: value &+ 1, max: .max, invertMatch: false))
            case ">=": return spec(.numericAttribute(key: field, min: value, max: .max, invertMatch: false))
            case "<": return spec(.numericAttribute(key: field, min: .min, max: value &- 1, invertMatch: false))
            default: return spec(.numericAttribute(key: field, min: .min, max: value, invertMatch: false))
            }
        case "starts-with", "contains", "does-not-contain", "matches":
            guard let text else { return refuse("no Value") }
            let pattern: String
            switch op {
            case "starts-with": pattern = "^" + Self.escaped(text)
            case "contains": pattern = Self.escaped(text)
            case "does-not-contain": pattern = "^(?!.*\(Self.escaped(text)))"
            default:
                do { _ = try Regex(text) } catch { return refuse("the regular expression does not compile here: \(error)") }
                pattern = text
            }
            return spec(.stringAttribute(key: field, values: [pattern], regex: true, cacheMaxSize: 0, invertMatch: false))
        case "in":
            guard let values = valueNode?.sequence?.compactMap(\.string), !values.isEmpty, !isInteger else {
                return refuse("in maps for a list of strings only")
            }
            return spec(.stringAttribute(key: field, values: values, regex: false, cacheMaxSize: 0, invertMatch: false))
        case "exists":
            if datatype == "string" { return spec(.stringAttribute(key: field, values: [""], regex: true, cacheMaxSize: 0, invertMatch: false)) }
            return refuse("exists maps only with Datatype: string (tailgate's attribute policies compare typed values)")
        default:
            return refuse("operator \(op) has no tailgate equivalent")
        }
    }

    /// `text` as a regular expression matching itself.
    static func escaped(_ text: String) -> String {
        var out = ""
        for character in text {
            if "\\^$.|?*+()[]{}/".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }
}
