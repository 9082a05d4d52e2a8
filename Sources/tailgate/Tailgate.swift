public import ArgumentParser
import Engine
import Foundation
import Sampling
import Kafka
import Logging
import OTLP

/// `tailgate`: a stream-processing tail-sampling engine for distributed traces.
@main
struct Tailgate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tailgate",
        abstract: "Tail-sampling for distributed traces: Kafka in, whole-trace decisions, kept traces to storage, RED metrics from every span.",
        version: "0.1.0 (librdkafka \(librdkafkaVersion))",
        subcommands: [Run.self, Route.self, Demo.self, Eval.self, Check.self, Convert.self, Query.self, DevBroker.self, Loadgen.self])

    /// Exit codes of the contract: 0 ok, 1 runtime failure, 2 bad usage/config/rules.
    static func main() {
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
            let configPath = (command as? Run)?.input.config ?? (command as? Route)?.input.config
            if let path = configPath {
                // The config file's settings become arguments; those on the command line win.
                let name = command is Run ? "run" : "route"
                let given = Array(CommandLine.arguments.drop { $0 != name }.dropFirst())
                let fromFile: [String]
                do {
                    fromFile = try ConfigFile.arguments(path: path, commandLine: given)
                } catch {
                    FileHandle.standardError.write(Data("tailgate: \(error)\n".utf8))
                    Foundation.exit(2)
                }
                do {
                    command = command is Run ? try Run.parse(fromFile + given) : try Route.parse(fromFile + given)
                } catch {
                    let message = command is Run ? Run.message(for: error) : Route.message(for: error)
                    FileHandle.standardError.write(Data("tailgate: --config \(path): \(message)\n".utf8))
                    Foundation.exit(2)
                }
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
        do {
            var mutable = command
            try mutable.run()
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("tailgate: \(error)\n".utf8))
            Foundation.exit(2)
        } catch let error as KafkaError where error.name == "_INVALID_ARG" {
            FileHandle.standardError.write(Data("tailgate: \(error.message)\n".utf8))
            Foundation.exit(2)
        } catch {
            // Help, version, validation and ExitCode errors come through ArgumentParser's own mapping.
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            if !message.isEmpty { FileHandle.standardError.write(Data("tailgate: \(message)\n".utf8)) }
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// Logging options every long-running command shares.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func bootstrap(label: String) -> Logger {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension OTLPEncoding: ExpressibleByArgument {}

/// Turns SIGINT/SIGTERM (and optionally SIGHUP) into callbacks on a Dispatch queue.
final class SignalTrap: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []

    init(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            sources.append(source)
        }
    }
}

func printJSON(_ value: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    if let data = try? encoder.encode(value) {
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}
