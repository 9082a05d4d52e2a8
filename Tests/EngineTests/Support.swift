import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Foundation
import Kafka
import Logging
import Synchronization
import Engine
import Traffic
import OTLP
import TestSupport
import Storage

/// Runs the built `tailgate` executable; every process started is terminated when the test ends.
final class Processes: @unchecked Sendable {
    private var started: [Process] = []
    /// Each started process's standard error, in a file: what a process that died says (a Swift
    /// runtime failure names its file and line there) is read back when a test finds it exited badly.
    private var errorLogs: [ObjectIdentifier: URL] = [:]
    static let errorLogDirectory: URL = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-test-stderr-\(getpid())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }()

    /// The end of what `process` wrote to standard error (empty when it wrote nothing).
    func errorOutput(of process: Process, last characters: Int = 2_000) -> String {
        guard let url = errorLogs[ObjectIdentifier(process)], let data = try? Data(contentsOf: url) else { return "" }
        return String(String(decoding: data, as: UTF8.self).suffix(characters))
    }

    static var executable: URL {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [here, here.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("tailgate")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return URL(fileURLWithPath: ".build/debug/tailgate")
    }

    /// Starts `tailgate args…` with stdout piped (`environment`: added to this process's own).
    func start(_ arguments: [String], environment: [String: String] = [:]) throws -> (Process, Pipe) {
        let process = Process()
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        // TAILGATE_TEST_RUN_EXECUTABLE: run members from another build (to see a fault test fail on it).
        let other = ProcessInfo.processInfo.environment["TAILGATE_TEST_RUN_EXECUTABLE"].flatMap { $0.isEmpty ? nil : $0 }
        process.executableURL = arguments.first == "run" && other != nil ? URL(fileURLWithPath: other!) : Self.executable
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        let errorLog = Self.errorLogDirectory.appendingPathComponent("\(arguments.first ?? "tailgate")-\(UUID().uuidString).log")
        if FileManager.default.createFile(atPath: errorLog.path, contents: nil), let handle = FileHandle(forWritingAtPath: errorLog.path) {
            process.standardError = handle
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        started.append(process)
        errorLogs[ObjectIdentifier(process)] = errorLog
        return (process, output)
    }

    /// Runs to completion within `timeout`; returns exit status and stdout. Kills it on timeout.
    func run(_ arguments: [String], timeout: Duration) throws -> (status: Int32, output: String) {
        let (process, pipe) = try start(arguments)
        let reader = Mutex(Data())
        let done = DispatchSemaphore(value: 0)
        Thread {
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            reader.withLock { $0 = data }
            done.signal()
        }.start()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw TimeoutError(command: arguments.joined(separator: " "))
        }
        _ = done.wait(timeout: .now() + 5)
        return (process.terminationStatus, String(decoding: reader.withLock { $0 }, as: UTF8.self))
    }

    /// The first line a process prints (e.g. the dev broker's bootstrap list).
    func firstLine(of pipe: Pipe, timeout: Duration) -> String? {
        let line = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            var bytes = Data()
            while true {
                let chunk = pipe.fileHandleForReading.readData(ofLength: 1)
                if chunk.isEmpty || chunk == Data("\n".utf8) { break }
                bytes.append(chunk)
            }
            line.withLock { $0 = String(decoding: bytes, as: UTF8.self) }
            done.signal()
        }.start()
        _ = done.wait(timeout: .now() + timeout.timeInterval)
        return line.withLock { $0 }
    }

    deinit {
        for process in started where process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

struct TimeoutError: Error, CustomStringConvertible {
    var command: String
    var description: String { "timed out: tailgate \(command)" }
}

extension Duration {
    var timeInterval: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}


/// Produces DogBook traffic to `topic` on `cluster` (as `tailgate loadgen` does) and returns what was sent.
@discardableResult
func produceTraffic(
    to topic: String, on cluster: KafkaMockCluster, traces: Int, errorRate: Double = 0.02, slowRate: Double = 0.03,
    seed: UInt64 = 1, encoding: OTLPEncoding = .otlpProto, tracesPerMessage: Int = 1, rootlessRate: Double = 0
) throws -> TrafficProducer.Totals {
    let generator = try TrafficProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
    var options = TrafficProducer.Options()
    options.topic = topic
    options.traces = traces
    options.errorRate = errorRate
    options.slowRate = slowRate
    options.seed = seed
    options.encoding = encoding
    options.tracesPerMessage = tracesPerMessage
    options.rootlessRate = rootlessRate
    return try generator.run(options)
}

/// An engine running on its own thread, as `tailgate run` runs it.
final class RunningEngine: Sendable {
    let engine: Engine
    private let done = DispatchSemaphore(value: 0)
    private let result = Mutex<RunSummary?>(nil)

    init(_ engine: Engine) {
        self.engine = engine
        Thread { [self] in
            let summary = engine.run()
            result.withLock { $0 = summary }
            done.signal()
        }.start()
    }

    /// Asks it to stop (decide, store, commit) and waits up to `timeout` for `run()` to return; its
    /// summary, or nil if it did not return in time.
    @discardableResult
    func stop(timeout: Duration = .seconds(60)) -> RunSummary? {
        engine.requestStop()
        if let summary = result.withLock({ $0 }) { return summary }  // already returned
        guard done.wait(timeout: .now() + timeout.timeInterval) == .success else { return nil }
        return result.withLock { $0 }
    }
}

/// One unlabelled sample of a process's `/metrics` on 127.0.0.1:`port` (nil: no answer, or no such sample).
func metric(_ port: UInt16, _ name: String) -> Double? {
    guard let text = try? prometheusGET(port: port, "/metrics") else { return nil }
    return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
}

/// The sum of every sample of `name` (labelled or not) on 127.0.0.1:`port`'s `/metrics` (nil: no answer).
func metricSum(_ port: UInt16, _ name: String) -> Double? {
    guard let text = try? prometheusGET(port: port, "/metrics") else { return nil }
    return text.split(separator: "\n")
        .filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        .reduce(0, +)
}

/// The sum of `group`'s committed offsets over `topic`'s `partitions` partitions, read from the broker
/// by a consumer that does not join the group (0: nothing committed). A kill -9 test waits for this to
/// be positive before the kill: the victim worked, so the restart has something to resume from.
func committedMessages(bootstrap: String, group: String = "tailgate", topic: String = "otlp_spans", partitions: Int) -> Int64 {
    guard let reader = try? KafkaConsumer(
        configuration: KafkaConsumerConfiguration(bootstrapServers: bootstrap, groupID: group, topics: [], statisticsInterval: nil),
        logger: quietLogger)
    else { return 0 }
    defer { reader.close() }
    return reader.committedOffsets((0..<partitions).map { TopicPartition(topic, Int32($0)) }).values.reduce(0, +)
}


/// Every stored span of `traces`: `SampleRate` = N ≥ 1, and for N > 1 an `ot=th` for 1/N (to 0.1 %)
/// that its trace id's randomness (the low 56 bits) reaches; at N = 1 the tracestate left as it came
/// (DogBook's spans come without one). Read from the store, checked by hand, not by the sampler.
func checkSampleRates(_ store: TraceStore, traces: [TraceID]) throws -> (spans: Int, sampledAbove1: Int, wrong: [String]) {
    var spans = 0, sampledAbove1 = 0
    var wrong: [String] = []
    for id in traces {
        guard let request = try store.trace(id, policyAttribute: false) else {
            wrong.append("\(id.hex): not stored")
            continue
        }
        var batch = SpanBatch(selection: AttributeSelection(keys: ["SampleRate"]))
        _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
        for span in batch.spans {
            spans += 1
            guard case .int(let rate) = batch.value(of: AttributeKeyID(rawValue: 0), for: span), rate >= 1 else {
                wrong.append("\(id.hex): no SampleRate")
                continue
            }
            let traceState = batch.string(span.traceState)
            if rate == 1 {
                if !traceState.isEmpty { wrong.append("\(id.hex): rate 1 changed the tracestate to '\(traceState)'") }
                continue
            }
            sampledAbove1 += 1
            guard let th = traceState.split(separator: ";").first(where: { $0.hasPrefix("ot=th:") || $0.contains("th:") })
                .flatMap({ $0.components(separatedBy: "th:").last }),
                let threshold = UInt64(th.padding(toLength: 14, withPad: "0", startingAt: 0), radix: 16)
            else {
                wrong.append("\(id.hex): tracestate '\(traceState)'")
                continue
            }
            // th encodes the rejection threshold T = (1 − 1/N) × 2^56 (to its precision).
            let probability = 1 - Double(threshold) / Double(UInt64(1) << 56)
            if abs(probability - 1 / Double(rate)) > 0.001 { wrong.append("\(id.hex): th:\(th) for SampleRate \(rate)") }
            let randomness = id.low & 0x00FF_FFFF_FFFF_FFFF
            if randomness < threshold { wrong.append("\(id.hex): randomness below th:\(th)") }
        }
    }
    return (spans, sampledAbove1, wrong)
}

/// DogBook traffic produced on its own thread (`options.traces = 0`: until stopped), as `tailgate
/// loadgen` produces it. ``stop(timeout:)`` returns what was sent (nil if the producer failed); the
/// traffic stops at the latest when this goes away.
final class BackgroundTraffic: @unchecked Sendable {
    let options: TrafficProducer.Options
    private let producer: TrafficProducer
    private final class Outcome: Sendable {
        let sent = Mutex<TrafficProducer.Totals?>(nil)
        let done = DispatchSemaphore(value: 0)
    }
    private let outcome = Outcome()
    private let finished = Atomic<Bool>(false)

    init(on cluster: KafkaMockCluster, _ options: TrafficProducer.Options) throws {
        self.options = options
        producer = try TrafficProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        Thread { [producer, outcome] in
            let totals = try? producer.run(options)
            outcome.sent.withLock { $0 = totals }
            outcome.done.signal()
        }.start()
    }

    /// Stops the traffic and waits for the producer to flush; what was sent.
    @discardableResult
    func stop(timeout: Duration = .seconds(30)) -> TrafficProducer.Totals? {
        if !finished.exchange(true, ordering: .relaxed) {
            producer.requestStop()
            _ = outcome.done.wait(timeout: .now() + timeout.timeInterval)
        }
        return outcome.sent.withLock { $0 }
    }

    deinit { stop() }
}
