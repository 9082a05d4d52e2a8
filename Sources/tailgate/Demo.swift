import ArgumentParser
import Engine
import Foundation
import Sampling
import SpanMetrics
import Synchronization

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "See tailgate work with nothing installed but itself: embedded Kafka, DogBook traffic, the engine.",
        discussion: """
            Starts librdkafka's mock cluster, produces DogBook traffic into it and consumes it with the engine and \
            the default rules (pipelines/default.yaml), storing kept traces and serving /metrics and Tempo's trace \
            API; shows live status every second; stops after --duration or Ctrl-C (exit 0) and prints a summary.
            """)

    @Option(help: "How long to run (e.g. 30s, 2m).")
    var duration: String = "30s"

    @Option(help: "Traces per second of generated traffic.")
    var rate: Double = 300

    @Option(help: "Rule file (default: the built-in rules, as pipelines/default.yaml).")
    var rules: String?

    @Option(help: "How long a trace waits for its spans before it is decided.")
    var decisionWait: String = "2s"

    @Option(help: "Store kept traces in this directory (default: a new directory under the system's temporary directory).")
    var data: String?

    @Option(help: "Serve /metrics and Tempo's trace API here (HOST:PORT; empty: no listener).")
    var http: String = "127.0.0.1:3200"

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        var logging = self.logging
        if logging.logLevel == .info { logging.logLevel = .warning }  // the status display is the output
        let logger = logging.bootstrap(label: "tailgate.demo")
        let dataDirectory = data ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("tailgate-demo-\(Int(Date().timeIntervalSince1970))-\(getpid())").path
        var options = DemoSession.Options()
        options.duration = try parseDuration(duration, option: "--duration")
        options.rate = rate
        options.rulesPath = rules
        options.decisionWait = try parseDuration(decisionWait, option: "--decision-wait")
        options.dataDirectory = dataDirectory
        options.httpAddress = http.isEmpty ? nil : http
        let demo = DemoSession(options: options, logger: logger)
        let signals = Atomic<Int>(0)
        let trap = SignalTrap([SIGINT, SIGTERM]) { _ in
            // The first Ctrl-C stops and summarises (a few seconds); a second one exits at once.
            if signals.add(1, ordering: .relaxed).newValue > 1 {
                emit("\nstopped without a summary\n")
                Foundation.exit(130)
            }
            emit("\nstopping (Ctrl-C again to exit at once)…\n")
            demo.requestStop()
        }
        let interactive = isatty(STDOUT_FILENO) == 1
        emit("""
            tailgate demo — embedded Kafka (librdkafka mock cluster, 6 partitions), DogBook traffic at \(Int(rate)) traces/s, \
            rules: \(rules ?? "default (pipelines/default.yaml)"), for \(duration) (Ctrl-C stops)
            kept traces are stored in \(dataDirectory)

            """)
        var drawn = 0
        var announced = false
        let summary = try demo.run { status in
            if !announced, let address = status.httpAddress {
                announced = true
                let open = "console   http://\(address)/   (live overview, rules, trace search and waterfalls, service graph)\n"
                    + "open      http://\(address)/metrics   http://\(address)/api/v2/traces/<trace id>\n"
                if interactive { drawn = 0 }
                emit(open)
            }
            let lines = DemoDisplay.lines(status, total: duration)
            if interactive {
                // Redraw the block in place: up over the previous one, clear each line.
                var text = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
                for line in lines { text += "\r\u{1B}[2K" + line + "\n" }
                emit(text)
                drawn = lines.count
            } else {
                emit(DemoDisplay.plainLine(status) + "\n")
            }
        }
        withExtendedLifetime(trap) {}
        let kept = summary.keptByPolicy.values.reduce(0, +)
        let reduction = summary.bytesIn > 0 ? 100 * (1 - Double(summary.bytesKept) / Double(summary.bytesIn)) : 0
        var text = """

            summary
              traffic   \(summary.traces) traces, \(summary.spansSent) spans (\(summary.errorTraces) traces with errors, \(summary.slowTraces) slow)
              received  \(summary.spansReceived) spans in \(summary.distinctTraces) traces, \(summary.messagesRejected) messages rejected
              kept      \(kept) traces (\(DemoDisplay.byPolicy(summary.keptByPolicy))), dropped \(summary.tracesDropped)
              errors    \(summary.errorTracesKept) of \(summary.errorTraces) error traces kept
              storage   \(DemoDisplay.bytes(summary.bytesIn)) of spans in, \(DemoDisplay.bytes(summary.bytesKept)) kept: \(String(format: "%.1f", reduction))% less to store
            """
        if let stored = summary.bytesStored, stored > 0 {
            text += "\n            \(DemoDisplay.bytes(stored)) on disk after zstd, \(String(format: "%.0f", Double(summary.bytesIn) / Double(stored)))× less than what came in"
        }
        for (policy, budget) in summary.budgets.sorted(by: { $0.key < $1.key }) {
            guard budget.intervals > 0 else {
                text += "\n  budget    \(policy): a \(DemoDisplay.bytes(Int(budget.goal)))/s goal; no adjustment interval finished yet (run longer to see it kept)"
                continue
            }
            text += "\n  budget    \(policy): kept \(DemoDisplay.bytes(Int(budget.kept)))/s of a \(DemoDisplay.bytes(Int(budget.goal)))/s goal"
                + " (must-keeps \(DemoDisplay.bytes(Int(budget.mustKeep)))/s, the sampler \(DemoDisplay.bytes(Int(budget.own)))/s), \(DemoDisplay.bytes(Int(budget.forecastPerDay))) a day at that pace"
                + (budget.exceeded > 0 ? "; the must-keeps alone exceed it by \(DemoDisplay.bytes(Int(budget.exceeded)))/s" : "")
        }
        if !summary.fidelity.isEmpty {
            let sized = summary.fidelity.filter { !$0.tooSmall }
            let close = sized.filter { abs($0.estimatedCalls - $0.calls) <= 0.1 * $0.calls }
            let exactErrors = summary.fidelity.allSatisfy { $0.estimatedErrors == $0.errors }
            text += "\n  fidelity  calls estimated from the kept traces alone within 10% of the truth for \(close.count) of \(sized.count) services"
                + (sized.count < summary.fidelity.count ? " (\(summary.fidelity.count - sized.count) more with too few kept traces)" : "")
                + (exactErrors ? "; errors exact" : "")
        }
        text += "\n  stored    \(summary.tracesStored) of \(kept) kept traces durable, \(summary.keptIncomplete) incomplete (no root, or a parent missing: { span.tailgate.trace.complete = false })"
        text += "\n  metrics   \(summary.redSeries) RED series, \(summary.serviceGraphEdges) service-graph edges, from every span (before sampling)"
        print(text)
        if let id = summary.exampleErrorTrace, summary.tracesStored > 0 {
            print("  open one  tailgate query --data \(dataDirectory) \(id)")
        }
        if summary.spansReceived < summary.spansSent {
            print("warning: \(summary.spansSent - summary.spansReceived) spans were not consumed before the end")
        }
        if summary.tracesStored < kept {
            print("error: \(kept - summary.tracesStored) kept traces were not stored\(summary.sinkFailure.map { " (\($0))" } ?? "")")
            throw ExitCode.failure
        }
    }
}

/// How the demo's status reads.
enum DemoDisplay {
    static func lines(_ status: DemoSession.Status, total: String) -> [String] {
        [
            String(format: "%5.0fs of %@", status.elapsed.timeInterval, total),
            "in        \(count(Int(status.spansPerSecond))) spans/s · \(count(status.spansReceived)) spans · \(count(status.tracesSent)) traces sent · lag \(status.lag) · partitions \(status.partitionsAssigned) · rejected \(status.messagesRejected)",
            "decided   kept \(count(status.tracesKept)) (\(byPolicy(status.keptByPolicy))) · dropped \(count(status.tracesDropped))",
            "buffer    \(count(status.bufferedTraces)) traces waiting for a decision, \(bytes(status.bufferedBytes))",
            "metrics   \(status.redSeries) RED series · \(status.serviceGraphEdges) service-graph edges" + (status.exampleErrorTrace.map { " · a kept error trace: \($0)" } ?? ""),
            "sinks     " + (status.sinkFailure.map { "FAILING — \($0) (kept traces wait; offsets are not committed)" } ?? "ok"),
        ]
    }

    static func plainLine(_ status: DemoSession.Status) -> String {
        String(
            format: "%4.0fs in %d spans (%.0f/s) lag %lld | kept %d (%@) dropped %d waiting %d | red_series %d edges %d",
            status.elapsed.timeInterval, status.spansReceived, status.spansPerSecond, status.lag, status.tracesKept,
            byPolicy(status.keptByPolicy), status.tracesDropped, status.bufferedTraces, status.redSeries, status.serviceGraphEdges)
            + (status.sinkFailure.map { " | FAILING \($0)" } ?? "")
    }

    static func byPolicy(_ kept: [String: Int]) -> String {
        kept.isEmpty ? "none yet" : kept.sorted { $0.key < $1.key }.map { "\($0.key) \(count($0.value))" }.joined(separator: " · ")
    }

    /// 12 345 678 → "12 345 678" (thin grouping that reads at a glance).
    static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out += " " }
            out.append(digit)
        }
        return (value < 0 ? "-" : "") + out
    }

    static func bytes(_ value: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024 && unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : String(format: "%.1f %@", amount, units[unit])
    }
}

/// Writes to stdout unbuffered (status lines must show at once, on a terminal or a pipe).
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}
