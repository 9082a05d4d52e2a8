import ArgumentParser
import Engine
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "See tailgate work with nothing installed but itself: embedded Kafka, DogBook traffic, the engine.",
        discussion: """
            Starts librdkafka's mock cluster, produces DogBook traffic into it and consumes it with the engine, \
            showing live status every second; stops after --duration or Ctrl-C and prints a summary. \
            (Sampling, storage and metrics join the demo as they land.)
            """)

    @Option(help: "How long to run (e.g. 30s, 2m).")
    var duration: String = "30s"

    @Option(help: "Traces per second of generated traffic.")
    var rate: Double = 300

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        var logging = self.logging
        if logging.logLevel == .info { logging.logLevel = .warning }  // the status display is the output
        let logger = logging.bootstrap(label: "tailgate.demo")
        var options = DemoSession.Options()
        options.duration = try parseDuration(duration, option: "--duration")
        options.rate = rate
        let demo = DemoSession(options: options, logger: logger)
        let trap = SignalTrap([SIGINT, SIGTERM]) { _ in demo.requestStop() }
        let interactive = isatty(STDOUT_FILENO) == 1
        emit("tailgate demo: embedded Kafka (librdkafka mock cluster) + DogBook traffic at \(Int(rate)) traces/s for \(duration)\n")
        let summary = try demo.run { status in
            let line = String(
                format: "%5.0fs  sent %7d traces / %8d spans   received %8d spans  %8.0f spans/s   rejected %d   lag %lld   partitions %d",
                status.elapsed.timeInterval, status.tracesSent, status.spansSent, status.spansReceived, status.spansPerSecond,
                status.messagesRejected, status.lag, status.partitionsAssigned)
            emit(interactive ? "\r\u{1B}[2K" + line : line + "\n")
        }
        withExtendedLifetime(trap) {}
        if interactive { emit("\n") }
        print("""
            summary: \(summary.traces) traces (\(summary.errorTraces) with errors, \(summary.slowTraces) slow), \
            \(summary.spansSent) spans sent, \(summary.spansReceived) received in \(summary.distinctTraces) traces, \
            \(summary.bytesIn / 1024) KiB in, \(summary.messagesRejected) messages rejected
            """)
        if summary.spansReceived < summary.spansSent {
            print("warning: \(summary.spansSent - summary.spansReceived) spans were not consumed before the end")
        }
    }
}

/// Writes to stdout unbuffered (status lines must show at once, on a terminal or a pipe).
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}
