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

    @Option(help: "Rule file (default: the built-in rules, as pipelines/default.yaml).")
    var rules: String?

    @Option(help: "How long a trace waits for its spans before it is decided.")
    var decisionWait: String = "2s"

    @Option(help: "Store kept traces in this directory (open them with `tailgate query` or the trace API).")
    var data: String?

    @Option(help: "Serve /metrics and Tempo's trace API here (HOST:PORT; empty: no listener).")
    var http: String = "127.0.0.1:3200"

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        var logging = self.logging
        if logging.logLevel == .info { logging.logLevel = .warning }  // the status display is the output
        let logger = logging.bootstrap(label: "tailgate.demo")
        var options = DemoSession.Options()
        options.duration = try parseDuration(duration, option: "--duration")
        options.rate = rate
        options.rulesPath = rules
        options.decisionWait = try parseDuration(decisionWait, option: "--decision-wait")
        options.dataDirectory = data
        options.httpAddress = http.isEmpty ? nil : http
        let demo = DemoSession(options: options, logger: logger)
        let trap = SignalTrap([SIGINT, SIGTERM]) { _ in demo.requestStop() }
        let interactive = isatty(STDOUT_FILENO) == 1
        emit("tailgate demo: embedded Kafka (librdkafka mock cluster) + DogBook traffic at \(Int(rate)) traces/s for \(duration)\n")
        var announced = false
        let summary = try demo.run { status in
            if !announced, let address = status.httpAddress {
                announced = true
                emit("open: http://\(address)/metrics   http://\(address)/-/ready" + (data != nil ? "   http://\(address)/api/v2/traces/<id>" : "") + "\n")
            }
            let line = String(
                format: "%4.0fs  in %7d traces %8d spans %7.0f spans/s | kept %6d dropped %7d waiting %5d | rejected %d lag %lld partitions %d",
                status.elapsed.timeInterval, status.tracesSent, status.spansReceived, status.spansPerSecond,
                status.tracesKept, status.tracesDropped, status.bufferedTraces, status.messagesRejected, status.lag,
                status.partitionsAssigned)
            emit(interactive ? "\r\u{1B}[2K" + line : line + "\n")
        }
        withExtendedLifetime(trap) {}
        if interactive { emit("\n") }
        let kept = summary.keptByPolicy.values.reduce(0, +)
        let byPolicy = summary.keptByPolicy.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let reduction = summary.bytesIn > 0 ? 100 * (1 - Double(summary.bytesKept) / Double(summary.bytesIn)) : 0
        print("""

            summary
              traffic   \(summary.traces) traces, \(summary.spansSent) spans (\(summary.errorTraces) traces with errors, \(summary.slowTraces) slow)
              received  \(summary.spansReceived) spans in \(summary.distinctTraces) traces, \(summary.messagesRejected) messages rejected
              kept      \(kept) traces (\(byPolicy.isEmpty ? "none" : byPolicy)), dropped \(summary.tracesDropped)
              errors    \(summary.errorTracesKept) of \(summary.errorTraces) error traces kept
              storage   \(summary.bytesIn / 1024) KiB in, \(summary.bytesKept / 1024) KiB kept: \(String(format: "%.1f", reduction))% less to store
            """)
        if let id = summary.exampleErrorTrace {
            if let data { print("  open one  tailgate query --data \(data) \(id)") }
        }
        if summary.spansReceived < summary.spansSent {
            print("warning: \(summary.spansSent - summary.spansReceived) spans were not consumed before the end")
        }
    }
}

/// Writes to stdout unbuffered (status lines must show at once, on a terminal or a pipe).
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}
