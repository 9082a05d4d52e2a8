import ArgumentParser
import Foundation

/// Commands of the contract whose engine parts are still being built: listed in `--help` with their
/// flags, and honest about it when run.
protocol PendingCommand: ParsableCommand {
    static var arrivesWith: String { get }
}

extension PendingCommand {
    func run() throws {
        FileHandle.standardError.write(Data("tailgate \(Self._commandName): not yet available in this build; it arrives with \(Self.arrivesWith).\n".utf8))
        throw ExitCode.failure
    }
}

struct Query: PendingCommand {
    static let configuration = CommandConfiguration(abstract: "Print a stored trace as OTLP/JSON; exit 1 if unknown.")
    static let arrivesWith = "the trace store"

    @Option(help: "Data directory of the file store.")
    var data: String

    @Argument(help: "Trace id (32 hex characters).")
    var traceID: String
}
