import Foundation
import OTLP
public import Sampling

/// `tailgate eval`: offline decisions for OTLP files.
public enum OfflineEvaluation {
    /// Reads each input (a protobuf `ExportTraceServiceRequest`, or OTLP/JSON: one request per line
    /// or one per file), assembles traces in first-seen order and decides them.
    public static func run(rules: RuleSet, inputs: [String]) throws -> [EvaluatedTrace] {
        rules.evaluate(try assemble(rules: rules, inputs: inputs))
    }

    /// ``run(rules:inputs:)`` with every trace's explanation (`eval --explain`).
    public static func explain(rules: RuleSet, inputs: [String]) throws -> [(EvaluatedTrace, RuleSet.Explanation)] {
        rules.explain(try assemble(rules: rules, inputs: inputs))
    }

    static func assemble(rules: RuleSet, inputs: [String]) throws -> [TraceData] {
        var assembler = TraceAssembler()
        for path in inputs {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            for batch in try decode(bytes, path: path, selection: rules.selection) { assembler.add(batch) }
        }
        return assembler.traces
    }


    static func decode(_ bytes: [UInt8], path: String, selection: AttributeSelection) throws -> [SpanBatch] {
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
                    _ = try SpanDecoder(encoding: .otlpJSON).decode(Array(line), into: &batch)
                    batches.append(batch)
                } catch {
                    failure = (lineNumber, error)
                    break
                }
            }
            guard let (line, error) = failure else { return batches }
            var whole = SpanBatch(selection: selection)
            if (try? SpanDecoder(encoding: .otlpJSON).decode(bytes, into: &whole)) != nil { return [whole] }
            throw ConfigurationError("\(path):\(line): not OTLP/JSON: \(error)")
        }
        var batch = SpanBatch(selection: selection)
        do {
            _ = try SpanDecoder(encoding: .otlpProto).decode(bytes, into: &batch)
        } catch {
            throw ConfigurationError("\(path): not an OTLP protobuf ExportTraceServiceRequest: \(error)")
        }
        return [batch]
    }
}
