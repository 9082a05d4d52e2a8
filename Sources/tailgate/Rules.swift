import ArgumentParser
import Engine
import Foundation
import Sampling

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Offline decisions for OTLP files: one JSON line per trace (keep/drop, policy, spans).",
        discussion: """
            Inputs are OTLP protobuf files (one ExportTraceServiceRequest each) or OTLP/JSON (one request per \
            line, or one per file). Spans are grouped by trace id across all inputs and each trace is decided \
            as if it had arrived whole, in first-seen order. Rate limiters see each trace at its end time.
            """)

    @Option(help: "Rule file (collector tail_sampling syntax).")
    var rules: String

    @Argument(help: "OTLP files (protobuf or JSON lines).")
    var inputs: [String]

    @Flag(help: "Add, per trace, every policy's own decision (Sampled, NotSampled, InvertSampled, InvertNotSampled, Dropped; null when not evaluated), the precedence rule that decided, and the sampling threshold a probabilistic keep writes.")
    var explain = false

    func run() throws {
        let ruleSet: RuleSet
        do {
            ruleSet = try RuleLoader.load(rules)
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
        var output = Data()
        if explain {
            for (line, explanation) in try OfflineEvaluation.explain(rules: ruleSet, inputs: inputs) {
                output += Data((line.jsonLine(explanation: explanation) + "\n").utf8)
            }
        } else {
            // Field order of the contract: traceId, decision, policy, spans.
            for line in try OfflineEvaluation.run(rules: ruleSet, inputs: inputs) {
                output += Data((line.jsonLine() + "\n").utf8)
            }
        }
        FileHandle.standardOutput.write(output)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a rule file; exit 2 with errors naming file, line and policy.")

    @Option(help: "Rule file to check.")
    var rules: String

    func run() throws {
        do {
            let set = try RuleLoader.load(rules)
            print("\(rules): ok, \(set.policies.count) policies (\(set.policies.map(\.spec.name).joined(separator: ", "))), hash \(set.hash)")
            // Behaviours tailgate keeps different from the collector on purpose: warned, not refused.
            for difference in CollectorDifference.find(in: set.configuration) {
                FileHandle.standardError.write(Data("\(rules): warning: \(difference)\n".utf8))
            }
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            FileHandle.standardError.write(Data("\(rules): \(error.errors.count) error(s); the running rules (if any) stay in force\n".utf8))
            throw ExitCode(2)
        }
    }
}
