import ArgumentParser
import Engine
import Foundation
import Synchronization
import Kafka
import OTLP
import Sampling
import SpanMetrics

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consume spans from Kafka as a consumer-group member and process them.",
        discussion: """
            Joins consumer group --group on the --topic topics, decodes every message (otlp_proto or otlp_json, \
            one trace or many per message), counts and sets aside bad input, groups spans by trace in sharded \
            windows, decides each whole trace with the rules, and commits offsets only behind what is decided. \
            SIGHUP reloads the rules (so does a change of the file). SIGTERM/SIGINT: stop fetching, decide what \
            is buffered, commit, exit 0. With --exit-on-eof it stops by itself when every assigned partition is \
            at its end and prints a JSON summary.
            """)

    @OptionGroup var input: KafkaInputOptions

    @Option(help: "Rule file: the OpenTelemetry Collector tail_sampling configuration (or a whole collector config). Without it every trace is kept.")
    var rules: String?

    @Option(help: "Decide a trace this long after its first span (overrides the rule file's decision_wait), e.g. 10s.")
    var decisionWait: String?

    @Option(help: "Buffered bytes above which consumption pauses, e.g. 512MiB, 4GiB (default: half the memory limit).")
    var bufferLimit: String?

    @Option(help: "Trace-window shards (threads); default one per core.")
    var shards: Int?

    @Option(help: "Store kept traces in this directory (the embedded file store); without it they are counted only.")
    var data: String?

    @Option(help: "Re-publish kept traces to this Kafka topic (otlp_proto, one trace per message keyed by hex trace id).")
    var outputTopic: String?

    @Option(help: "Send kept traces to this OTLP/HTTP receiver, e.g. http://tempo-distributor:4318 (path defaults to /v1/traces).")
    var otlpEndpoint: String?

    @Option(name: .customLong("otlp-header"), help: "Header for the OTLP/HTTP exporter, KEY=VALUE (repeatable; also $TAILGATE_OTLP_HEADERS as k=v,k2=v2).")
    var otlpHeaders: [String] = []

    @Option(help: "PEM file of CA certificates to trust for an https OTLP endpoint (default: the system's).")
    var otlpCaFile: String?

    @Option(help: "OTLP/HTTP body compression: gzip or none.")
    var otlpCompression: String = "gzip"

    @Option(help: "Delete stored traces older than this (e.g. 72h).")
    var retention: String = "72h"

    @Option(help: "Delete the oldest stored traces while the store is larger than this (e.g. 50GiB).")
    var retentionSize: String?

    @Option(help: "HTTP listener for /metrics, /-/healthy, /-/ready, /-/reload and the trace API (HOST:PORT).")
    var http: String = "0.0.0.0:3200"

    @Option(help: "Bearer token that enables POST /-/reload (default: $TAILGATE_ADMIN_TOKEN; unset: admin routes off).")
    var adminToken: String?

    @Option(name: .customLong("metrics-dimension"), help: "Span or resource attribute added as a label of traces_spanmetrics_* (repeatable), e.g. http.route; label name with . made _.")
    var metricsDimensions: [String] = []

    @Option(help: "Latency histogram bucket bounds, comma-separated seconds or durations (default Tempo's 0.002 × 2^k, k = 0…13), e.g. 5ms,50ms,0.5,5.")
    var metricsLatencyBuckets: String?

    @Option(help: "Series per span-derived metric family; beyond it samples fold into one __overflow__ series.")
    var metricsMaxSeries: Int = 10_000

    @Flag(help: "Decide as usual but send every trace to the sinks, each span tagged tailgate.decision=keep|drop (and tailgate.policy when kept); the metrics count what would have been kept and dropped. Also dry_run: true in the rule file (hot-reloadable).")
    var dryRun = false

    @Option(help: "How much each span counts in traces_spanmetrics_*: none, or tracestate (its incoming OTEP 235 adjusted count, 2^56/(2^56-th), as Tempo's enable_tracestate_span_multiplier).")
    var metricsSpanMultiplier: String = "none"

    @Option(name: .customLong("span-name-rewrite"), help: "Rewrite span names for metrics, PATTERN=>REPLACEMENT (repeatable, in order), e.g. '/users/[0-9]+=>/users/{id}'.")
    var spanNameRewrites: [String] = []

    @Option(help: "On SIGTERM/SIGINT, give up deciding and flushing after this long (what is not committed is replayed).")
    var shutdownTimeout: String = "30s"

    @Option(help: "At a rebalance, the buffered traces of the partitions this member loses: decide (now, with the spans that arrived: nothing is stored or counted twice) or replay (forget them: the next owner decides them whole from the committed offset; what was decided past it is decided twice).")
    var onRevoke: String = "decide"

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = logging.bootstrap(label: "tailgate")
        // glibc raises its mmap threshold each time a large block is freed, after which large buffers
        // (polls, store blocks, big traces) come from the heap and stay resident after a burst. A fixed
        // threshold hands them back to the kernel when freed (10–15 MB less at peak in the burst test).
        #if os(Linux)
        if ProcessInfo.processInfo.environment["MALLOC_MMAP_THRESHOLD_"] == nil { _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 256 << 10) }
        #endif
        var configuration = EngineConfiguration(brokers: input.brokers)
        if !input.topics.isEmpty { configuration.topics = input.topics }
        configuration.group = input.group ?? configuration.group
        configuration.encoding = input.encoding
        configuration.kafkaProperties = try input.properties()
        configuration.deadLetterTopic = input.deadLetterTopic
        configuration.exitOnEOF = input.exitOnEof
        configuration.statusInterval = try parseDuration(input.statusInterval, option: "--status-interval")
        configuration.rulesPath = rules
        configuration.decisionWait = try decisionWait.map { (text) throws(ConfigurationError) in try parseDuration(text, option: "--decision-wait") }
        configuration.bufferLimit = try bufferLimit.map { (text) throws(ConfigurationError) in try parseByteSize(text, option: "--buffer-limit") }
        if let limit = configuration.bufferLimit, limit < EngineConfiguration.minimumBufferLimit {
            throw ConfigurationError(
                "--buffer-limit \(bufferLimit ?? "") is below the minimum of 1MiB: a window needs room for whole traces (and consumption resumes only below 80% of the limit)")
        }
        #if os(Linux)
        // A thread's arena makes its heap (64 MiB of address space) writable by what one allocation
        // needs at a time, an mprotect call each: 43 765 of them in the 640 k-span harness run, one
        // or two pages apiece. With a 64 MiB pad each heap is made writable whole when created: 76
        // calls. But glibc also keeps the pad's worth of a heap's freed top resident when it shrinks,
        // so the pad is the buffer limit's share (a sixteenth, 1–64 MiB), like Kafka's prefetch; the
        // memory-return trim (malloc_trim(0), which ignores the pad) still hands freed pages back.
        if ProcessInfo.processInfo.environment["MALLOC_TOP_PAD_"] == nil {
            _ = glibcMallopt(-2 /* M_TOP_PAD */, Int32(MemoryBudget(configuredLimit: configuration.bufferLimit).heapPadBytes))
        }
        #endif
        if let shards, shards < 1 { throw ConfigurationError("--shards must be at least 1") }
        configuration.shards = shards
        configuration.httpAddress = http.isEmpty ? nil : http
        configuration.dataDirectory = data
        configuration.outputTopic = outputTopic
        configuration.otlpEndpoint = otlpEndpoint
        configuration.otlpCAFile = otlpCaFile
        guard ["gzip", "none"].contains(otlpCompression) else { throw ConfigurationError("--otlp-compression must be gzip or none") }
        configuration.otlpGzip = otlpCompression == "gzip"
        configuration.otlpHeaders = try EngineConfiguration.otlpHeaders(
            environment: ProcessInfo.processInfo.environment["TAILGATE_OTLP_HEADERS"], commandLine: otlpHeaders)
        configuration.storeOptions.retentionAge = try parseDuration(retention, option: "--retention")
        configuration.storeOptions.retentionBytes = try retentionSize.map { (text) throws(ConfigurationError) in try parseByteSize(text, option: "--retention-size") }
        // Empty (a blank flag or `TAILGATE_ADMIN_TOKEN=`) means admin routes off, not "any token".
        configuration.adminToken = (adminToken ?? ProcessInfo.processInfo.environment["TAILGATE_ADMIN_TOKEN"]).flatMap { $0.isEmpty ? nil : $0 }
        configuration.spanMetrics.dimensions = metricsDimensions
        configuration.spanMetrics.maxSeriesPerMetric = metricsMaxSeries
        configuration.dryRun = dryRun
        guard let revokePolicy = RevokePolicy(rawValue: onRevoke) else { throw ConfigurationError("--on-revoke: '\(onRevoke)' is not decide or replay") }
        configuration.revokePolicy = revokePolicy
        guard let multiplier = SpanMultiplier(rawValue: metricsSpanMultiplier) else {
            throw ConfigurationError("--metrics-span-multiplier: '\(metricsSpanMultiplier)' is not none or tracestate")
        }
        configuration.spanMetrics.spanMultiplier = multiplier
        if let metricsLatencyBuckets {
            configuration.spanMetrics.latencyBuckets = try parseBuckets(metricsLatencyBuckets)
        }
        do {
            configuration.spanMetrics.spanNameRewrites = try spanNameRewrites.map { (text) throws(SpanMetricsConfigurationError) in
                try SpanNameRewrite(parsing: text)
            }
        } catch {
            throw ConfigurationError("--span-name-rewrite: \(error.description)")
        }

        // Signals are trapped before the engine is built (opening a large store, loading rules): a
        // SIGTERM then stops it as soon as it exists, a SIGHUP then is moot (the rules are being read).
        let shutdownBound = try parseDuration(shutdownTimeout, option: "--shutdown-timeout")
        // The sinks get most of the bound; the rest is for committing and exiting.
        configuration.drainTimeout = max(.seconds(1), shutdownBound * 0.8)
        let running = Mutex<(engine: Engine?, stopRequested: Bool)>((nil, false))
        let trap = SignalTrap([SIGINT, SIGTERM, SIGHUP]) { signal in
            if signal == SIGHUP {
                running.withLock { $0.engine }?.reloadRules(reason: "SIGHUP")
                return
            }
            let (engine, again) = running.withLock { state in
                defer { state.stopRequested = true }
                return (state.engine, state.stopRequested)
            }
            if again {
                // A second Ctrl-C / SIGTERM: the operator does not want to wait for the drain.
                logger.warning("signal \(signal) again: exiting now; uncommitted work will be replayed")
                Foundation.exit(130)
            }
            logger.info("signal \(signal): stopping (deciding what is buffered, storing, committing; a second signal exits at once)")
            engine?.requestStop()
            // Bounded: a sink that stays down must not hold the pod past its grace period. Whatever is
            // not committed by then is replayed by the next owner of the partitions.
            Thread {
                Thread.sleep(forTimeInterval: shutdownBound.timeInterval)
                logger.error("shutdown took longer than \(shutdownTimeout); exiting, uncommitted work will be replayed")
                Foundation.exit(1)
            }.start()
        }

        let engine: Engine
        do {
            engine = try Engine(configuration: configuration, logger: logger)
        } catch let errors as RuleFileErrors {
            FileHandle.standardError.write(Data("tailgate: invalid rule file\n\(errors.description)\n".utf8))
            throw ExitCode(2)
        }
        let stopEarly = running.withLock { state in
            state.engine = engine
            return state.stopRequested
        }
        if stopEarly { engine.requestStop() }
        // A batch job over a topic: progress on a terminal, nothing extra otherwise.
        let progress = configuration.exitOnEOF ? ProgressLine.startIfTerminal(engine) : nil
        let summary = engine.run()
        progress?.stop()
        withExtendedLifetime(trap) {}
        printJSON(summary)
        if summary.outcome.hasPrefix("fatal") || summary.outcome == "end_of_input_unstored" { throw ExitCode.failure }
    }
}

/// Bucket bounds: seconds (`0.005`) or durations (`5ms`), comma-separated.
func parseBuckets(_ text: String) throws(ConfigurationError) -> [Double] {
    var bounds: [Double] = []
    for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
        if let seconds = Double(part) {
            bounds.append(seconds)
        } else {
            bounds.append(try parseDuration(part, option: "--metrics-latency-buckets").timeInterval)
        }
    }
    return bounds
}

#if os(Linux)
/// glibc's `mallopt` (malloc.h is not in the Glibc module).
@_silgen_name("mallopt") private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif

/// librdkafka properties from `TAILGATE_KAFKA_<PROPERTY>` (`TAILGATE_KAFKA_SASL_PASSWORD=…` sets
/// `sasl.password`, so secrets stay out of argv, which /proc shows), then the `--kafka-property`
/// flags, which win.
func kafkaPropertiesFromEnvironment(then flags: [String]) throws(KafkaError) -> KafkaProperties {
    var properties = KafkaProperties()
    for (name, value) in ProcessInfo.processInfo.environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("TAILGATE_KAFKA_") {
        let property = name.dropFirst("TAILGATE_KAFKA_".count).lowercased().replacingOccurrences(of: "_", with: ".")
        guard !property.isEmpty else { continue }
        try properties.set(assignment: "\(property)=\(value)")
    }
    for assignment in flags { try properties.set(assignment: assignment) }
    return properties
}
