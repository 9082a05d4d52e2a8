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

