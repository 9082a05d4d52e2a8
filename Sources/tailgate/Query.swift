import ArgumentParser
import Foundation
import Sampling
import OTLP
import Storage

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a stored trace as OTLP/JSON {\"resourceSpans\":[...]}; exit 1 if unknown.",
        discussion: "Reads the file store read-only (safe beside a running engine). Duplicate spans are removed.")

    @Option(help: "Data directory of the file store.")
    var data: String

    @Flag(help: "Leave out the tailgate.policy attribute.")
    var noPolicyAttribute = false

    @Argument(help: "Trace id (32 hex characters; shorter ids are padded with zeros, as Tempo does).")
    var traceID: String

    func run() throws {
        guard let id = TraceID(paddedHex: traceID) else {
            FileHandle.standardError.write(Data("tailgate query: \"\(traceID)\" is not a trace id (up to 32 hex digits)\n".utf8))
            throw ExitCode(2)
        }
        let store: TraceStore
        do {
            store = try TraceStore(directory: URL(fileURLWithPath: data), readOnly: true)
        } catch {
            FileHandle.standardError.write(Data("tailgate query: \(error)\n".utf8))
            throw ExitCode(1)
        }
        guard let request = try store.trace(id, policyAttribute: !noPolicyAttribute) else {
            FileHandle.standardError.write(Data("tailgate query: trace \(id.hex) is not in \(data)\n".utf8))
            throw ExitCode(1)
        }
        FileHandle.standardOutput.write(Data((try OTLPJSONWriter.request(request) + "\n").utf8))
    }
}
