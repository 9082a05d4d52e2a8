import Engine
import Foundation
import Kafka
import OTLP
import Synchronization
import TestSupport
import Testing
import Traffic

/// The console in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`)
/// driven by Selenium from `Tests/Console/console_check.py`, against an engine fed DogBook traffic
/// over the dev broker. Expected values come from the traffic generator's truth and from a trace
/// built here by hand; screenshots land in `TAILGATE_CONSOLE_SCREENSHOTS` (default: a temporary
/// directory; the README's come from here).
@Suite(.serialized) struct ConsoleBrowserTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Console/console_check.py")

    /// A hand-made trace whose every free-text field is markup: its root's name, a service's name, an
    /// attribute's value (a header, as a string array) and an event's name.
    struct Hostile {
        static let spanName = "<img src=x onerror=alert(1)><script>alert(2)</script>"
        static let service = "<svg onload=alert(3)>"
        static let attributeValue = "\"><img src=x onerror=window.__xss=1>"
        static let eventName = "</pre><b>alert(4)</b>"
        static let childName = "GET <b>/evil</b>"

        static func request(_ id: TraceID, startNanos: UInt64) -> [UInt8] {
            var w = ProtoWriter()
            func span(
                _ s: inout ProtoWriter, id spanID: UInt64, parent: UInt64, name: String, kind: SpanKind, offset: UInt64, duration: UInt64,
                error: Bool, body: (inout ProtoWriter) -> Void = { _ in }
            ) {
                s.writeNested(2) { span in
                    span.writeBytesField(1, id.bytes)
                    span.writeBytesField(2, SpanID(rawValue: spanID).bytes)
                    if parent != 0 { span.writeBytesField(4, SpanID(rawValue: parent).bytes) }
                    span.writeStringField(5, name)
                    span.writeVarintField(6, UInt64(kind.rawValue))
                    span.writeFixed64Field(7, startNanos + offset)
                    span.writeFixed64Field(8, startNanos + offset + duration)
                    body(&span)
                    if error {
                        span.writeNested(15) { status in
                            status.writeStringField(2, "HTTP 500")
                            status.writeVarintField(3, 2)
                        }
                    }
                }
            }
            func resource(_ rs: inout ProtoWriter, service: String) {
                rs.writeNested(1) { r in
                    r.writeNested(1) { kv in
                        kv.writeStringField(1, "service.name")
                        kv.writeNested(2) { $0.writeStringField(1, service) }
                    }
                }
            }
            w.writeNested(1) { rs in
                resource(&rs, service: "frontend")
                rs.writeNested(2) { ss in
                    ss.writeNested(1) { $0.writeStringField(1, "dogbook") }
                    span(&ss, id: 0xA1, parent: 0, name: spanName, kind: .server, offset: 0, duration: 40_000_000, error: true)
                    span(&ss, id: 0xA2, parent: 0xA1, name: childName, kind: .client, offset: 2_000_000, duration: 30_000_000, error: true) { span in
                        span.writeNested(9) { kv in
                            kv.writeStringField(1, "http.request.header.x-evil")
                            kv.writeNested(2) { any in any.writeNested(5) { array in array.writeNested(1) { $0.writeStringField(1, attributeValue) } } }
                        }
                    }
                }
            }
            w.writeNested(1) { rs in
                resource(&rs, service: service)
                rs.writeNested(2) { ss in
                    ss.writeNested(1) { $0.writeStringField(1, "dogbook") }
                    span(&ss, id: 0xA3, parent: 0xA2, name: "handle", kind: .server, offset: 4_000_000, duration: 25_000_000, error: true) { span in
                        span.writeNested(11) { event in
                            event.writeFixed64Field(1, startNanos + 10_000_000)
                            event.writeStringField(2, eventName)
                        }
                    }
                }
            }
            return w.bytes
        }
    }

    static let rules = """
        # The console's browser test: every error, a tenth of the rest.
        decision_wait: 500ms
        policies:
          - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
          - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}

        """

    /// `python3` as the shell finds it (where `scripts/setup --tests` installed Selenium).
    static func python() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/python3" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs one phase of the browser script; its output (what it checked, or why it failed).
    static func browse(_ arguments: [String], timeout: Duration) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python()!)
        process.arguments = [script.path] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let collected = Mutex(Data())
        let drained = DispatchSemaphore(value: 0)
        try process.run()
        Thread {
            let data = output.fileHandleForReading.readDataToEndOfFile()
            collected.withLock { $0 = data }
            drained.signal()
        }.start()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.1) }
        if process.isRunning {
            // Selenium's Chromium and driver are its children: ask it to quit them first.
            process.interrupt()
            Thread.sleep(forTimeInterval: 2)
            if process.isRunning { process.terminate() }
        }
        process.waitUntilExit()
        _ = drained.wait(timeout: .now() + 10)
        let text = String(decoding: collected.withLock { $0 }, as: UTF8.self)
        return (process.terminationReason == .uncaughtSignal ? -1 : process.terminationStatus, text)
    }

    @Test func theConsoleShowsWhatTheSamplerKeepsInARealBrowser() throws {
        for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            try #require(FileManager.default.isExecutableFile(atPath: binary), "\(binary) is missing: scripts/setup --tests installs chromium and chromium-driver")
        }
        try #require(Self.python() != nil, "python3 is missing: scripts/setup --tests installs it")
        let screenshots = ProcessInfo.processInfo.environment["TAILGATE_CONSOLE_SCREENSHOTS"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-console-\(UUID().uuidString)").path
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-console-data-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }

        let cluster = try KafkaMockCluster(topics: [("spans", 4)], logger: quietLogger)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.rulesPath = try writeRules(Self.rules)
        configuration.dataDirectory = data.appendingPathComponent("store").path
        configuration.httpAddress = "127.0.0.1:0"
        configuration.statusInterval = .seconds(60)
        let running = RunningEngine(try Engine(configuration: configuration, logger: quietLogger))
        let engine = running.engine
        defer { running.stop(timeout: .seconds(30)) }
        #expect(waitUntil(.seconds(30)) { engine.boundHTTPAddress != nil })
        let url = "http://\(try #require(engine.boundHTTPAddress))"

        // The hand-made trace first, then DogBook traffic that flows while the overview is watched.
        let hostileID = TraceID(high: 0x0bad_c0de_0bad_c0de, low: 0x1234_5678_9abc_def0)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        let hostileStart = UInt64(UnixTime.nowNanoseconds())
        let hostilePayload = Hostile.request(hostileID, startNanos: hostileStart)
        try producer.send(topic: "spans", key: Array(hostileID.hex.utf8), value: hostilePayload)
        try producer.flush(timeout: .seconds(10))
        var options = TrafficProducer.Options()
        options.topic = "spans"
        options.traces = 0
        options.rate = 150
        options.errorRate = 0.1
        options.seed = 29
        let traffic = try BackgroundTraffic(on: cluster, options)

        let overview = try Self.browse(["overview", url, screenshots], timeout: .seconds(120))
        #expect(overview.status == 0, "the overview in Chromium:\n\(overview.output)")
        print(overview.output)

        // Stop the traffic; the truth is the generator's first `traces` traces.
        let totals = try #require(traffic.stop(), "the traffic producer failed")
        #expect(totals.traces > 200, "traffic flowed while the overview was watched: \(totals.traces) traces")
        var generator = DogBookTraffic(seed: options.seed, errorRate: options.errorRate, slowRate: options.slowRate)
        let generated = (0..<totals.traces).map { _ in generator.nextTrace(startUnixNano: 1) }
        #expect(generated.reduce(0) { $0 + $1.spanCount } == totals.spans, "the regenerated traces are the ones sent")
        // Everything consumed, decided and stored before the pages are read.
        let expectedSpans = Double(totals.spans + 3)
        #expect(waitUntil(.seconds(60)) {
            let text = engine.prometheusText()
            return Self.sample(text, "tailgate_spans_received_total") == expectedSpans && Self.sample(text, "tailgate_buffer_traces") == 0
                && Self.sample(text, "tailgate_sink_pending_traces{sink=\"store\"}") == 0
        }, "every span consumed and every trace decided and stored")

        // What the overview's saving is made of, against the Span messages' lengths read here: the
        // errors policy kept every error trace (and the hand-made one); kept and dropped add up to all.
        let text = engine.prometheusText()
        let errorTraceBytes = generated.filter { $0.spanSummaries.contains(where: \.isError) }
            .reduce(Self.spanMessageBytes(hostilePayload)) { $0 + Self.spanMessageBytes(DogBookTraffic.protobuf([$1])) }
        let allBytes = generated.reduce(Self.spanMessageBytes(hostilePayload)) { $0 + Self.spanMessageBytes(DogBookTraffic.protobuf([$1])) }
        #expect(Self.sample(text, "tailgate_kept_bytes_total{policy=\"errors\"}") == Double(errorTraceBytes))
        let keptAndDropped = ["tailgate_kept_bytes_total{policy=\"errors\"}", "tailgate_kept_bytes_total{policy=\"baseline\"}", "tailgate_dropped_bytes_total"]
            .map { Self.sample(text, $0) ?? -1 }.reduce(0, +)
        #expect(keptAndDropped == Double(allBytes), "kept and dropped bytes add up to every span's bytes")

        let service = DogBookService.photo.rawValue
        let errorTraces = generated.filter { trace in trace.spanSummaries.contains { $0.service == service && $0.isError } }
        let known = try #require(generated.filter { $0.isError }.max { $0.spanCount < $1.spanCount })
        let spans = known.spanSummaries
        let parents = Dictionary(uniqueKeysWithValues: spans.map { ($0.spanID, $0.parentSpanID) })
        func depth(_ id: SpanID) -> Int {
            var depth = 0, current = id
            while let parent = parents[current], parent.isValid, parents[parent] != nil {
                depth += 1
                current = parent
            }
            return depth
        }
        var edges = Set<String>(), services = Set<String>()
        for trace in generated {
            let summaries = trace.spanSummaries
            let byID = Dictionary(uniqueKeysWithValues: summaries.map { ($0.spanID, $0) })
            for span in summaries where span.kind == .server {
                guard let parent = byID[span.parentSpanID], parent.kind == .client else { continue }
                edges.insert("\(parent.service)→\(span.service)")
                services.formUnion([parent.service, span.service])
            }
        }
        edges.insert("frontend→\(Hostile.service)")
        let expectations: [String: Any] = [
            "rulesSource": Self.rules,
            "policies": ["errors", "baseline"],
            "service": service,
            "errorTraceIDs": errorTraces.map(\.traceID.hex),
            "knownTrace": [
                "id": known.traceID.hex,
                "spans": spans.map { ["id": $0.spanID.hex, "parent": $0.parentSpanID.isValid ? $0.parentSpanID.hex : "", "depth": depth($0.spanID)] },
                "errorSpans": spans.filter(\.isError).count,
            ] as [String: Any],
            "hostile": [
                "id": hostileID.hex, "spanName": Hostile.spanName, "service": Hostile.service, "attributeValue": Hostile.attributeValue,
                "eventName": Hostile.eventName,
            ],
            "services": services.sorted(),
            "spanServices": Set(generated.flatMap { $0.spanSummaries.map(\.service) }).sorted(),
            "edges": edges.sorted(),
        ]
        let expectFile = data.appendingPathComponent("expect.json")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: expectations, options: [.prettyPrinted]).write(to: expectFile)
        #expect(errorTraces.count > 20, "enough error traces of \(service) to search for: \(errorTraces.count)")

        let pages = try Self.browse(["pages", url, screenshots, expectFile.path], timeout: .seconds(240))
        #expect(pages.status == 0, "the pages in Chromium:\n\(pages.output)")
        print(pages.output)

        // A second member without --data (its own group, the same topic): no search, the rest works.
        var storeless = EngineConfiguration(brokers: cluster.bootstrapServers)
        storeless.topics = ["spans"]
        storeless.group = "console-without-store"
        storeless.rulesPath = configuration.rulesPath
        storeless.httpAddress = "127.0.0.1:0"
        storeless.statusInterval = .seconds(60)
        let second = RunningEngine(try Engine(configuration: storeless, logger: quietLogger))
        defer { second.stop(timeout: .seconds(30)) }
        #expect(waitUntil(.seconds(30)) { second.engine.boundHTTPAddress != nil })
        let withoutStore = try Self.browse(["nostore", "http://\(try #require(second.engine.boundHTTPAddress))", screenshots], timeout: .seconds(120))
        #expect(withoutStore.status == 0, "without a store, in Chromium:\n\(withoutStore.output)")
        print(withoutStore.output)
        print("console screenshots in \(screenshots)")
    }

    /// The lengths of the `Span` messages in an `ExportTraceServiceRequest` (resource spans → scope
    /// spans → spans), read with a walk of the wire format written for this test.
    static func spanMessageBytes(_ request: [UInt8]) -> Int {
        func fields(_ bytes: ArraySlice<UInt8>) -> [(field: UInt64, value: ArraySlice<UInt8>)] {
            var out: [(UInt64, ArraySlice<UInt8>)] = []
            var i = bytes.startIndex
            func varint() -> UInt64 {
                var value: UInt64 = 0, shift: UInt64 = 0
                while i < bytes.endIndex {
                    let byte = bytes[i]
                    i += 1
                    value |= UInt64(byte & 0x7f) << shift
                    if byte < 0x80 { break }
                    shift += 7
                }
                return value
            }
            while i < bytes.endIndex {
                let key = varint()
                switch key & 7 {
                case 0: _ = varint()
                case 1: i += 8
                case 5: i += 4
                case 2:
                    let length = Int(varint())
                    out.append((key >> 3, bytes[i..<(i + length)]))
                    i += length
                default: return out
                }
            }
            return out
        }
        var total = 0
        for resourceSpans in fields(request[...]) where resourceSpans.field == 1 {
            for scopeSpans in fields(resourceSpans.value) where scopeSpans.field == 2 {
                for span in fields(scopeSpans.value) where span.field == 2 { total += span.value.count }
            }
        }
        return total
    }

    /// One sample's value in a Prometheus text exposition (`name` with its labels, as written).
    static func sample(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }
}
