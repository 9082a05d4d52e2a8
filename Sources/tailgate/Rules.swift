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

    func run() throws {
        let ruleSet: RuleSet
        do {
            ruleSet = try RuleLoader.load(rules)
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        var output = Data()
        for line in try OfflineEvaluation.run(rules: ruleSet, inputs: inputs) {
            // Field order of the contract: traceId, decision, policy, spans.
            let policy = line.policy.map { String(data: try! encoder.encode($0), encoding: .utf8)! } ?? "null"
            output += Data("{\"traceId\":\"\(line.traceId)\",\"decision\":\"\(line.decision)\",\"policy\":\(policy),\"spans\":\(line.spans)}\n".utf8)
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
