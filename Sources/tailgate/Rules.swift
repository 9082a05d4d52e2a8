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
        // What each input held that was not decided, on stderr (stdout stays one JSON line a trace).
        let note: (String) -> Void = { FileHandle.standardError.write(Data("eval: \($0)\n".utf8)) }
        var traces = 0
        if explain {
            for (line, explanation) in try OfflineEvaluation.explain(rules: ruleSet, inputs: inputs, notes: note) {
                output += Data((line.jsonLine(explanation: explanation) + "\n").utf8)
                traces += 1
            }
        } else {
            // Field order of the contract: traceId, decision, policy, spans.
            for line in try OfflineEvaluation.run(rules: ruleSet, inputs: inputs, notes: note) {
                output += Data((line.jsonLine() + "\n").utf8)
                traces += 1
            }
        }
        FileHandle.standardOutput.write(output)
        if traces == 0 && !inputs.isEmpty {
            note("nothing to decide: no span with a valid trace id in \(inputs.count == 1 ? inputs[0] : "\(inputs.count) inputs")")
            throw ExitCode.failure
        }
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

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the tailgate rule file equivalent to a Honeycomb Refinery rules file.",
        discussion: """
            Reads a Refinery rules file (RulesVersion: 2) and prints, for one environment's sampler, the tailgate \
            policies that decide the same (what `run --rules` does with the file directly), so you can read and own \
            them. What cannot be mapped exactly is refused with the file, line and construct named (exit 2).
            """)

    @Option(help: "The source format: refinery.")
    var from: String

    @Option(help: "The Refinery environment whose sampler to convert.")
    var environment: String = "__default__"

    @Argument(help: "The Refinery rules file.")
    var file: String

    func run() throws {
        guard from == "refinery" else { throw ConfigurationError("--from: '\(from)' is not a known format; use refinery") }
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigurationError("\(file): cannot read it (\(error.localizedDescription))")
        }
        do {
            let configuration = try RuleFile.parse(text, file: file, refineryEnvironment: environment)
            print(RuleFileWriter.yaml(configuration, header: [
                "tailgate rules converted from \(file) (Refinery, environment \(environment)) by `tailgate convert`.",
                "Refinery keeps the first matching rule's outcome: each policy below requires its rule's conditions",
                "and that no earlier rule matched, so tailgate's \"any policy keeps\" decides the same.",
            ]), terminator: "")
        } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
    }
}
