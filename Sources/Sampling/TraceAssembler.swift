public import OTLP
import Foundation

/// Groups decoded spans into whole traces, in first-seen order, with no time limit: for offline
/// evaluation (`tailgate eval`), where every span of a trace is in the input.
public struct TraceAssembler: Sendable {
    public private(set) var traces: [TraceData] = []
    private var index: [TraceID: Int] = [:]
    private var generation: UInt64 = 0

    public init() {}

    /// Adds every span of `batch`.
    public mutating func add(_ batch: SpanBatch) {
        generation += 1
        for span in batch.spans {
            if let position = index[span.traceID] {
                traces[position].append(span, from: batch, batchGeneration: generation)
            } else {
                index[span.traceID] = traces.count
                var trace = TraceData(traceID: span.traceID)
                trace.append(span, from: batch, batchGeneration: generation)
                traces.append(trace)
            }
        }
    }
}

/// One line of `tailgate eval`.
public struct EvaluatedTrace: Sendable, Equatable, Codable {
    public var traceId: String
    public var decision: String
    public var policy: String?
    public var spans: Int

    public init(trace: TraceData, decision: TraceDecision) {
        traceId = trace.traceID.hex
        spans = trace.spans.count
        switch decision {
        case .keep(let name):
            self.decision = "keep"
            policy = name
        case .drop:
            self.decision = "drop"
            policy = nil
        }
    }
}

extension RuleSet {
    /// Decides assembled traces as if each arrived whole; rate limiters see each trace at its end time,
    /// so a replay of recorded traffic is limited as the live traffic would have been.
    public func evaluate(_ traces: [TraceData]) -> [EvaluatedTrace] {
        traces.map { trace in
            let end = trace.spans.map(\.endTimeUnixNano).max() ?? 0
            return EvaluatedTrace(trace: trace, decision: decide(trace, now: end))
        }
    }

    /// ``evaluate(_:)`` with each trace's explanation.
    public func explain(_ traces: [TraceData]) -> [(EvaluatedTrace, Explanation)] {
        traces.map { trace in
            let end = trace.spans.map(\.endTimeUnixNano).max() ?? 0
            let explanation = explain(trace, now: end)
            return (EvaluatedTrace(trace: trace, decision: explanation.decision), explanation)
        }
    }
}

extension EvaluatedTrace {
    /// One `eval` output line: the contract's fields (traceId, decision, policy, spans), then with
    /// `explain` every policy's own decision, the precedence rule that decided, and the threshold.
    public func jsonLine(explanation: RuleSet.Explanation? = nil) -> String {
        func quoted(_ text: String) -> String { JSONText.quoted(text) }
        var text = "{\"traceId\":\"\(traceId)\",\"decision\":\"\(decision)\",\"policy\":\(policy.map(quoted) ?? "null"),\"spans\":\(spans)"
        if let explanation {
            let policies = explanation.policies.map { "{\"name\":\(quoted($0.name)),\"decision\":\($0.decision.map { "\"\($0.name)\"" } ?? "null")}" }
            text += ",\"policies\":[\(policies.joined(separator: ","))],\"rule\":\(quoted(explanation.rule.rawValue))"
            if let threshold = explanation.threshold {
                text += ",\"threshold\":\"\(threshold.encoded)\",\"adjustedCount\":\(threshold.adjustedCount)"
            }
            if let sampler = explanation.sampler {
                text += ",\"samplerKey\":\(quoted(sampler.key)),\"sampleRate\":\(sampler.rate)"
            }
        }
        return text + "}"
    }
}
