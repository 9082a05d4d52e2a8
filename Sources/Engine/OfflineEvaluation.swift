import Foundation
import OTLP
public import Sampling

/// `tailgate eval`: offline decisions for OTLP files.
public enum OfflineEvaluation {
    /// Reads each input (a protobuf `ExportTraceServiceRequest`, or OTLP/JSON: one request per line
    /// or one per file), assembles traces in first-seen order and decides them.
    /// `notes`: called with a line per input that had something skipped (spans refused for a bad
    /// trace or span id, requests without spans), naming the file and what was skipped.
    public static func run(rules: RuleSet, inputs: [String], notes: (String) -> Void = { _ in }) throws -> [EvaluatedTrace] {
        rules.evaluate(try assemble(rules: rules, inputs: inputs, notes: notes))
    }

    /// ``run(rules:inputs:notes:)`` with every trace's explanation (`eval --explain`).
    public static func explain(rules: RuleSet, inputs: [String], notes: (String) -> Void = { _ in }) throws -> [(EvaluatedTrace, RuleSet.Explanation)] {
        rules.explain(try assemble(rules: rules, inputs: inputs, notes: notes))
    }

    static func assemble(rules: RuleSet, inputs: [String], notes: (String) -> Void) throws -> [TraceData] {
        var assembler = TraceAssembler()
        for path in inputs {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            var report = InputReport()
            for batch in try decode(bytes, path: path, selection: rules.selection, report: &report) { assembler.add(batch) }
            for line in report.lines(path: path) { notes(line) }
        }
        return assembler.traces
    }

    /// What one input held that was not decided.
    struct InputReport {
        var requests = 0
        var spans = 0
        var refusedSpans = 0
        var firstRefusal: OTLPDecodeError?
        /// Requests (their line, for JSON lines; else 1) that held no span at all.
        var emptyRequests: [Int] = []

        mutating func add(_ outcome: DecodeOutcome, line: Int) {
            requests += 1
            spans += outcome.spans.count
            refusedSpans += outcome.rejectedSpans
            if firstRefusal == nil { firstRefusal = outcome.firstSpanRejection }
            if outcome.spans.isEmpty && outcome.rejectedSpans == 0 { emptyRequests.append(line) }
        }

        func lines(path: String) -> [String] {
            var lines: [String] = []
            if refusedSpans > 0 {
                lines.append("\(path): skipped \(refusedSpans) of \(spans + refusedSpans) span(s) without a valid trace or span id (first: \(firstRefusal.map { "\($0)" } ?? "?")); the rest decided")
            }
            if !emptyRequests.isEmpty {
                let which = emptyRequests.count == requests && requests == 1 ? "the request" : "\(emptyRequests.count) of \(requests) requests (line \(emptyRequests.prefix(5).map(String.init).joined(separator: ", "))\(emptyRequests.count > 5 ? ", …" : ""))"
                lines.append("\(path): \(which) held no spans")
            }
            return lines
        }
    }

    static func decode(_ bytes: [UInt8], path: String, selection: AttributeSelection, report: inout InputReport) throws -> [SpanBatch] {
        let firstByte = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        if firstByte == UInt8(ascii: "{") {
            // JSON lines first; a pretty-printed single document falls back to the whole file.
            var batches: [SpanBatch] = []
            var lineNumber = 0
            var failure: (Int, OTLPDecodeError)?
            for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
                lineNumber += 1
                guard line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) else { continue }
                var batch = SpanBatch(selection: selection)
                do {
                    let outcome = try SpanDecoder(encoding: .otlpJSON).decode(Array(line), into: &batch)
                    report.add(outcome, line: lineNumber)
                    batches.append(batch)
                } catch {
                    failure = (lineNumber, error)
                    break
                }
            }
            guard let (line, error) = failure else { return batches }
            var whole = SpanBatch(selection: selection)
            if let outcome = try? SpanDecoder(encoding: .otlpJSON).decode(bytes, into: &whole) {
                report = InputReport()
                report.add(outcome, line: 1)
                return [whole]
            }
            throw ConfigurationError("\(path):\(line): not OTLP/JSON: \(error)")
        }
        var batch = SpanBatch(selection: selection)
        do {
            report.add(try SpanDecoder(encoding: .otlpProto).decode(bytes, into: &batch), line: 1)
        } catch {
            throw ConfigurationError("\(path): not an OTLP protobuf ExportTraceServiceRequest: \(error)")
        }
        return [batch]
    }
}
