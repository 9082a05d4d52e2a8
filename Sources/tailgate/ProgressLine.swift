import Engine
import Foundation
import Synchronization

/// The refreshing line `run --exit-on-eof` shows on a terminal: messages read of what there was to
/// read (read so far plus the consumer's lag, once librdkafka's statistics report it), spans/s,
/// kept so far, and the time left at the current pace. Only when standard error is a terminal:
/// piped or logged, nothing extra is written (the logs and the JSON summary stay as they are).
final class ProgressLine: Sendable {
    private let engine: Engine
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    /// Starts refreshing twice a second when standard error is a terminal; nil otherwise.
    static func startIfTerminal(_ engine: Engine) -> ProgressLine? {
        guard isatty(STDERR_FILENO) == 1 else { return nil }
        let line = ProgressLine(engine: engine)
        Thread { line.loop() }.start()
        return line
    }

    private init(engine: Engine) { self.engine = engine }

    private func loop() {
        let started = ContinuousClock.now
        while !stopped.load(ordering: .relaxed) {
            Thread.sleep(forTimeInterval: 0.5)
            if stopped.load(ordering: .relaxed) { break }
            let counts = engine.metrics.snapshot
            let lag = engine.metrics.consumerLag.values.reduce(0, +)
            let kept = engine.sampling?.metrics.snapshot.kept ?? 0
            let text = Self.text(
                read: counts.messagesReceived, lag: engine.metrics.consumerLag.isEmpty ? nil : Int(lag), spans: counts.spansReceived,
                kept: kept, elapsed: (ContinuousClock.now - started).timeInterval)
            FileHandle.standardError.write(Data("\r\(text)\u{1B}[K".utf8))
        }
        done.signal()
    }

    /// Stops and clears the line (the summary follows on a clean line).
    func stop() {
        stopped.store(true, ordering: .relaxed)
        done.wait()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }

    /// `read 120 412 of 600 000 messages (20%) · 352 k spans/s · kept 1 234 traces · 0:42 left`.
    static func text(read: Int, lag: Int?, spans: Int, kept: Int, elapsed: Double) -> String {
        let rate = elapsed > 0 ? Double(spans) / elapsed : 0
        var parts: [String] = []
        if let lag {
            let total = read + lag
            let percent = total > 0 ? Int(Double(read) / Double(total) * 100) : 100
            parts.append("read \(grouped(read)) of \(grouped(total)) messages (\(percent)%)")
        } else {
            parts.append("read \(grouped(read)) messages")
        }
        parts.append(rate >= 10_000 ? "\(Int(rate / 1000)) k spans/s" : "\(Int(rate)) spans/s")
        parts.append("kept \(grouped(kept)) traces")
        if let lag, read > 0, elapsed > 0 {
            let seconds = Int((Double(lag) / (Double(read) / elapsed)).rounded(.up))
            parts.append("\(seconds / 60):\(String(format: "%02d", seconds % 60)) left")
        }
        return parts.joined(separator: " · ")
    }

    private static func grouped(_ value: Int) -> String {
        var digits = Array(String(value))
        var index = digits.count - 3
        while index > 0 {
            digits.insert(" ", at: index)
            index -= 3
        }
        return String(digits)
    }
}
