import Foundation
public import HTTP
public import Ingest
public import Kafka
public import Sampling
public import SpanMetrics
public import Sinks
public import Storage
public import Logging
public import OTLP
import Synchronization

/// Everything `tailgate run` is told (flags and, later, the config file).
public struct EngineConfiguration: Sendable {
    public var brokers: String
    public var topics: [String] = ["otlp_spans"]
    public var group = "tailgate"
    public var encoding = OTLPEncoding.otlpProto
    public var kafkaProperties = KafkaProperties()
    public var exitOnEOF = false
    /// Copy refused messages here (nil: count and log only).
    public var deadLetterTopic: String?
    /// How often a status line is logged.
    public var statusInterval: Duration = .seconds(10)
    /// How often librdkafka reports consumer lag.
    public var statisticsInterval: Duration = .seconds(5)
    /// The rule file (collector tail_sampling syntax); nil keeps every trace.
    public var rulesPath: String?
    /// The rules when no rule file is given.
    public var fallbackRules: RuleSet = Engine.keepEverything
    /// Overrides the rule file's `decision_wait`.
    public var decisionWait: Duration?
    /// `--dry-run`: every trace goes to the sinks, each span tagged `tailgate.decision`; the metrics
    /// count what would have been kept and dropped.
    public var dryRun = false
    /// How long the stop waits for the sinks to acknowledge what was kept (the rest is replayed).
    public var drainTimeout: Duration = .seconds(30)
    /// `--on-revoke`: decide the revoked partitions' traces now, or forget them for the next owner.
    public var revokePolicy = RevokePolicy.decide
    /// Bytes of buffered traces above which consumption pauses; nil: half the memory limit.
    public var bufferLimit: Int?
    /// Trace-window shards (threads); nil: one per core.
    public var shards: Int?
    /// The file store of kept traces; nil: not stored there.
    public var dataDirectory: String?
    /// Re-publish kept traces to this Kafka topic (otlp_proto, keyed by hex trace id).
    public var outputTopic: String?
    /// Send kept traces to this OTLP/HTTP receiver (`http://host:port[/path]`).
    public var otlpEndpoint: String?
    /// Headers for the OTLP/HTTP exporter (e.g. `Authorization`).
    public var otlpHeaders: [(String, String)] = []
    /// gzip OTLP/HTTP bodies.
    public var otlpGzip = true
    /// CA certificates (PEM) to trust for an https OTLP endpoint instead of the system's.
    public var otlpCAFile: String?
    /// Store retention and segment settings.
    public var storeOptions = TraceStoreOptions()
    /// The HTTP listener (`HOST:PORT`); nil: none.
    public var httpAddress: String?
    /// Bearer token for admin routes (`POST /-/reload`); nil disables them over HTTP.
    public var adminToken: String?
    /// RED and service-graph metrics: buckets, dimensions, series limit, span-name rewrites.
    public var spanMetrics = SpanMetricsConfiguration()

    public init(brokers: String) { self.brokers = brokers }

    /// The smallest `--buffer-limit`: a window needs room for whole traces, and consumption resumes
    /// only below 80% of the limit.
    public static let minimumBufferLimit = 1 << 20

    /// The exporter's headers from `TAILGATE_OTLP_HEADERS` (`k=v,k2=v2`) and `--otlp-header KEY=VALUE`
    /// flags: a flag replaces the environment's header of the same name (names compare
    /// case-insensitively, as HTTP's do), so `Authorization` is never sent twice.
    public static func otlpHeaders(environment: String?, commandLine: [String]) throws(ConfigurationError) -> [(String, String)] {
        func parse(_ header: String) throws(ConfigurationError) -> (String, String) {
            guard let equals = header.firstIndex(of: "="), equals != header.startIndex else {
                throw ConfigurationError("--otlp-header expects KEY=VALUE, got '\(header)'")
            }
            return (String(header[..<equals]).trimmingCharacters(in: .whitespaces), String(header[header.index(after: equals)...]))
        }
        var fromEnvironment: [(String, String)] = []
        for header in (environment ?? "").split(separator: ",").map(String.init) where !header.isEmpty {
            fromEnvironment.append(try parse(header))
        }
        var fromFlags: [(String, String)] = []
        for header in commandLine { fromFlags.append(try parse(header)) }
        let overridden = Set(fromFlags.map { $0.0.lowercased() })
        let headers = fromEnvironment.filter { !overridden.contains($0.0.lowercased()) } + fromFlags
        return headers
    }

    /// Checks what librdkafka cannot: names and combinations. Errors name the option and the fix.
    public func validate() throws(ConfigurationError) {
        guard !brokers.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ConfigurationError("--brokers is required: the Kafka bootstrap servers, e.g. --brokers kafka-0.kafka:9092")
        }
        guard !topics.isEmpty, topics.allSatisfy({ !$0.isEmpty }) else {
            throw ConfigurationError("--topic: give at least one non-empty topic name")
        }
        guard !group.isEmpty else { throw ConfigurationError("--group: the consumer group id must not be empty") }
        if let outputTopic, topics.contains(outputTopic) {
            throw ConfigurationError("--output-topic \(outputTopic) is also an input topic; kept traces would be sampled again forever")
        }
        do {
            try spanMetrics.validate()
        } catch {
            throw ConfigurationError(error.description)
        }
        if let deadLetterTopic, topics.contains(deadLetterTopic) {
            throw ConfigurationError("--dead-letter-topic \(deadLetterTopic) is also an input topic; refused messages would come back forever")
        }
    }
}

/// What a run did, printed as JSON by `tailgate run` when it ends.
public struct RunSummary: Sendable, Codable, Equatable {
    public var outcome: String
    public var messages: Int
    public var bytes: Int
    public var spans: Int
    public var messagesRejected: [String: Int]
    public var spansRejected: [String: Int]
    public var deadLettered: Int
    public var tracesKept: Int
    /// Kept traces every sink acknowledged (durable): what `tracesKept` became.
    public var tracesStored: Int
    public var tracesDropped: Int
    public var keptByPolicy: [String: Int]
    public var lateSpans: Int
    /// Spans read twice because the consumer went back for an offset gap (processed once).
    public var spansReread: Int = 0
    /// Seconds from the first message to everything decided and stored (without the group join).
    public var processingSeconds: Double?
    /// From a kept trace's decision to its spans durable in every sink: p50 and p99, seconds.
    public var keptStoreLatencyP50: Double?
    public var keptStoreLatencyP99: Double?
    /// The process's peak resident memory, bytes (what the buffer limit is meant to bound).
    public var peakResidentBytes: Int?
}

/// The engine's lifecycle: ingest (consume, decode, account for bad input), the sampling stage
/// (trace windows, rules, decisions), and offsets committed behind what is decided.
public final class Engine: Sendable {
    public let configuration: EngineConfiguration
    public let metrics: IngestMetrics
    private let searches = SearchGate(limit: 1)
    /// The sampling stage (nil when an ingest-only sink was given).
    public let sampling: SamplingStage?
    private let loop: IngestLoop
    private let logger: Logger
    private let httpAddress = Mutex<String?>(nil)
    private let sinks = Mutex<KeptTraceFanOut?>(nil)
    /// Estimated against true RED per service over the last five minutes (from the engine's start).
    private let fidelity = Mutex(SampleFidelityWindow(start: 0))
    private let fidelityOrigin = ContinuousClock.now

    /// The file store, when `dataDirectory` is set.
    public var store: TraceStore? {
        sinks.withLock { $0?.sinks.lazy.compactMap { $0 as? StoreWriter }.first?.store }
    }

    /// Where the HTTP listener is bound once ``run()`` started it.
    public var boundHTTPAddress: String? { httpAddress.withLock { $0 } }

    /// The rules used when no rule file is given: keep every trace (nothing is lost by default).
    public static let keepEverything = RuleSet(
        configuration: RuleConfiguration(policies: [PolicySpec(name: "keep-all", kind: .alwaysSample)]), hash: "builtin")

    /// The full engine. Throws ``ConfigurationError``, `RuleFileErrors` (invalid rules: exit 2) or
    /// `KafkaError`.
    /// - Parameters:
    ///   - kept: replaces the configured sinks (tests); nil uses them.
    ///   - observeKept: sees every kept trace (on a shard thread) before the sinks do.
    public convenience init(
        configuration: EngineConfiguration, kept: (any TraceSink)? = nil,
        observeKept: (@Sendable (TraceData, String) -> Void)? = nil, logger: Logger
    ) throws {
        try configuration.validate()
        let shards = configuration.shards ?? max(1, ProcessInfo.processInfo.activeProcessorCount)
        let samplingMetrics = SamplingMetrics(shards: shards)
        if configuration.rulesPath == nil && configuration.fallbackRules === Engine.keepEverything {
            logger.warning("no --rules given: every trace is kept (write a rule file to sample)")
        }
        let rules = try RuleStore(
            path: configuration.rulesPath, metrics: samplingMetrics, logger: logger, fallback: configuration.fallbackRules,
            requiredKeys: configuration.spanMetrics.attributeKeys)
        var sinks: [any TraceSink] = []
        if let directory = configuration.dataDirectory {
            let store = try TraceStore(directory: URL(fileURLWithPath: directory), options: configuration.storeOptions)
            sinks.append(StoreWriter(store: store, logger: logger))
            Engine.restoreSamplerTables(into: rules.rules, directory: directory, logger: logger)
        }
        if let endpoint = configuration.otlpEndpoint {
            var options = OTLPHTTPExporter.Options()
            options.headers = configuration.otlpHeaders
            options.gzip = configuration.otlpGzip
            options.caFile = configuration.otlpCAFile
            do {
                sinks.append(try OTLPHTTPExporter(endpoint: try OTLPEndpoint(endpoint), options: options, logger: logger))
            } catch {
                throw ConfigurationError(error.message)
            }
        }
        if let topic = configuration.outputTopic {
            // A span too large for the output topic even alone goes to the dead-letter topic, if set.
            var deadLetter: KafkaTraceSink.DeadLetter?
            if let deadLetterTopic = configuration.deadLetterTopic {
                let copies = try DeadLetterTopic(
                    topic: deadLetterTopic, bootstrapServers: configuration.brokers, properties: configuration.kafkaProperties.producerShare,
                    logger: logger)
                deadLetter = { traceID, request, reason, copied in
                    copies.sendOversizeSpan(traceID: traceID, request: request, reason: reason, outputTopic: topic).whenAcknowledged(copied)
                }
            }
            sinks.append(
                try KafkaTraceSink(
                    topic: topic, bootstrapServers: configuration.brokers, properties: configuration.kafkaProperties.producerShare,
                    deadLetter: deadLetter, logger: logger))
        }
        if let kept { sinks = [kept] }
        let fanOut = KeptTraceFanOut(
            sinks: sinks, redactor: { rules.rules.redactor }, observer: observeKept,
            logger: logger)
        let stage = SamplingStage(
            rules: rules, metrics: samplingMetrics, shardCount: shards,
            bufferLimit: configuration.bufferLimit ?? MemoryLimit.defaultBufferLimit, fanOut: fanOut,
            decisionWaitOverride: configuration.decisionWait, spanMetrics: configuration.spanMetrics, dryRun: configuration.dryRun,
            logger: logger)
        stage.drainTimeout = configuration.drainTimeout
        stage.revokePolicy = configuration.revokePolicy
        try self.init(configuration: configuration, sink: stage, sampling: stage, logger: logger)
        self.sinks.withLock { $0 = fanOut }
        // Weakly: the loop holds the stage (its sink), which holds this handler.
        stage.onPressure { [weak loop = self.loop] paused in loop?.setPaused(paused) }
    }

    /// Ingest only: every decoded batch goes to `sink` (tests, benchmarks, the bare-consumer baseline).
    public convenience init(configuration: EngineConfiguration, sink: any IngestSink, logger: Logger) throws {
        try configuration.validate()
        try self.init(configuration: configuration, sink: sink, sampling: nil, logger: logger)
    }

    private init(configuration: EngineConfiguration, sink: any IngestSink, sampling: SamplingStage?, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.sampling = sampling
        metrics = IngestMetrics()
        var deadLetter: DeadLetterTopic?
        if let topic = configuration.deadLetterTopic {
            deadLetter = try DeadLetterTopic(
                topic: topic, bootstrapServers: configuration.brokers, properties: configuration.kafkaProperties.producerShare, logger: logger)
        }
        // Under a buffer limit, Kafka's prefetch and the polls take their share of it (unless the
        // user set the prefetch explicitly).
        // The user's properties serve every client here; the consumer takes all but the producers' own.
        var properties = configuration.kafkaProperties.consumerShare
        let budget = sampling.map { MemoryBudget(bufferLimit: $0.bufferLimit) }
        if let budget, properties["queued.max.messages.kbytes"] == nil {
            properties["queued.max.messages.kbytes"] = String(budget.prefetchKiB)
        }
        let consumer = KafkaConsumerConfiguration(
            bootstrapServers: configuration.brokers, groupID: configuration.group, topics: configuration.topics,
            properties: properties, statisticsInterval: configuration.statisticsInterval)
        loop = try IngestLoop(
            consumer: consumer, encoding: configuration.encoding, sink: sink, deadLetter: deadLetter, metrics: metrics,
            exitOnEOF: configuration.exitOnEOF, logger: logger)
        if let budget { loop.maxBytesPerPoll = budget.pollBytes }
    }

    /// What a status line shows of the sampling stage, read without reaching into it.
    public struct Glance: Sendable {
        public var decisions = SamplingMetrics.Counts()
        public var bufferedTraces = 0
        public var bufferedBytes = 0
        /// Series of `traces_spanmetrics_*` and edges of the service graph.
        public var redSeries = 0
        public var serviceGraphEdges = 0
    }

    /// Decisions, buffer and series so far (zeros for an ingest-only engine).
    public var glance: Glance {
        guard let sampling else { return Glance() }
        let buffered = sampling.metrics.buffered
        return Glance(
            decisions: sampling.metrics.snapshot, bufferedTraces: buffered.traces, bufferedBytes: buffered.bytes,
            redSeries: sampling.spanMetrics.registry.seriesCount(.spanMetrics),
            serviceGraphEdges: sampling.spanMetrics.registry.seriesCount(.serviceGraph))
    }

    /// Stop fetching, decide what is buffered, commit, leave the group; ``run()`` then returns.
    public func requestStop() { loop.requestStop() }

    /// Backpressure switch (used by the buffer limit and the sinks).
    public func setPaused(_ paused: Bool) { loop.setPaused(paused) }

    /// Reloads the rule file now (SIGHUP, `POST /-/reload`); false if it was refused.
    @discardableResult
    public func reloadRules(reason: String) -> Bool { sampling?.rules.reload(reason: reason) ?? false }

    // MARK: Adaptive samplers' tables

    static let samplerTablesFile = "samplers.json"

    /// Starts the adaptive samplers from the tables saved in `directory` (same policy name and settings).
    static func restoreSamplerTables(into rules: RuleSet, directory: String, logger: Logger) {
        guard rules.policies.contains(where: { !$0.allSamplers.isEmpty }) else { return }
        let url = URL(fileURLWithPath: directory).appendingPathComponent(samplerTablesFile)
        guard let data = try? Data(contentsOf: url) else { return }
        do {
            let restored = try DynamicSamplerSnapshots.decode(data).restore(into: rules)
            if !restored.isEmpty { logger.info("adaptive samplers start from their saved tables", metadata: ["policies": "\(restored.joined(separator: ","))"]) }
        } catch {
            logger.warning("\(url.path): not a sampler table file (\(error)); the adaptive samplers start from cold")
        }
    }

    /// Saves the adaptive samplers' tables beside the store (every 15 s and at the end of `run`).
    public func saveSamplerTables() {
        guard let directory = configuration.dataDirectory, let rules = sampling?.rules.rules,
            rules.policies.contains(where: { !$0.allSamplers.isEmpty })
        else { return }
        let url = URL(fileURLWithPath: directory).appendingPathComponent(Self.samplerTablesFile)
        do {
            try DynamicSamplerSnapshots(of: rules).encoded().write(to: url, options: .atomic)
        } catch {
            logger.warning("could not save the adaptive samplers' tables to \(url.path): \(error)")
        }
    }

    /// Every metric in the Prometheus text format.
    public func prometheusText() -> String { metricsText(format: .prometheus) }

    /// Every metric — span metrics, service graph, self-metrics — in `format`.
    public func metricsText(format: MetricsFormat) -> String {
        var out = MetricsWriter(format: format)
        sampling?.spanMetrics.write(into: &out)
        metrics.write(into: &out)
        if let sampling {
            sampling.metrics.write(into: &out, bufferLimit: sampling.bufferLimit)
            out.gauge("tailgate_sink_queued_bytes", "Bytes of kept traces waiting in the sinks (they count toward the buffer limit).", sampling.queuedBytes)
            let gaps = sampling.offsetGaps
            out.family(
                "tailgate_kafka_offset_gaps_total", .counter,
                "Offsets the consumer did not deliver before a later one: refetched (the client skipped them; read again), accepted (they do not exist: compacted or transactional topic).")
            out.sample("tailgate_kafka_offset_gaps_total", [("resolution", "refetched")], gaps.refetched)
            out.sample("tailgate_kafka_offset_gaps_total", [("resolution", "accepted")], gaps.accepted)
            writeSamplerMetrics(into: &out, rules: sampling.rules.rules, share: sampling.currentGoalShare)
            out.counter(
                "tailgate_spans_reread_total",
                "Spans of messages delivered again after the consumer went back for an offset gap; already processed, so skipped (tailgate_spans_received_total counts them again).",
                sampling.rereadSpans)
            let ledger = sampling.ledgerSize
            out.family(
                "tailgate_delivery_ledger_entries", .gauge,
                "What holds uncommitted offsets: held offsets, deliveries awaiting a sink, early acknowledgements, polls in flight (flat when nothing is pending).")
            out.sample("tailgate_delivery_ledger_entries", [("kind", "held_offsets")], ledger.heldOffsets)
            out.sample("tailgate_delivery_ledger_entries", [("kind", "deliveries")], ledger.deliveries)
            out.sample("tailgate_delivery_ledger_entries", [("kind", "early_acknowledgements")], ledger.earlyAcknowledgements)
            out.sample("tailgate_delivery_ledger_entries", [("kind", "polls_in_flight")], ledger.pollsInFlight)
            out.counter(
                "tailgate_delivery_anomalies_total",
                "Events the delivery ledger found naming nothing it knew (a duplicate or stray sink acknowledgement, a release of an offset not held); should stay 0.",
                sampling.ledgerAnomalies)
            out.gauge("tailgate_kafka_offset_gaps_pending", "Gaps the consumer was sent back for and that are not settled yet (their offsets are held).", gaps.pending)
        }
        sinks.withLock { $0 }?.write(into: &out)
        writeFidelityMetrics(into: &out)
        if let store {
            let index = store.indexSize
            out.gauge("tailgate_store_index_entries", "(trace, block) pairs in the file store's in-memory index.", index.entries)
            out.gauge("tailgate_store_index_bytes", "Memory the file store's index holds (12 bytes a pair once a segment is sealed; not part of the buffer limit).", index.bytes)
            out.gauge("tailgate_store_segments", "Segment files the file store keeps.", store.segmentPaths.count)
        }
        if let sampling {
            let dryRun = configuration.dryRun || sampling.rules.rules.configuration.settings.dryRun
            out.gauge("tailgate_dry_run", "1 while every trace goes to the sinks tagged with its decision (--dry-run or dry_run: true).", dryRun ? 1 : 0)
        }
        out.family("tailgate_build_info", .gauge, "Build information (always 1).")
        out.sample("tailgate_build_info", [("version", HTTPRoutes.version), ("librdkafka", librdkafkaVersion)], 1)
        out.finish()
        return out.text
    }

    /// Runs until stopped, at the end of the input (`exitOnEOF`), or a fatal Kafka error. Blocking:
    /// the ingest loop gets its own thread; this one logs status.
    public func run() -> RunSummary {
        var http: HTTPServer?
        if let address = configuration.httpAddress {
            do {
                http = try HTTPServer(address: address, routes: HTTPRoutes(backend: self, adminToken: configuration.adminToken), logger: logger)
                httpAddress.withLock { $0 = http?.boundAddress }
            } catch {
                logger.error("\(error)")
            }
        }
        defer { http?.shutdown() }
        let outcome = Mutex<IngestLoop.Outcome?>(nil)
        let finished = DispatchSemaphore(value: 0)
        let loop = self.loop
        let thread = Thread {
            let result = loop.run()
            outcome.withLock { $0 = result }
            finished.signal()
        }
        thread.name = "tailgate-ingest"
        thread.start()
        sampling?.rules.watch()
        // The effective configuration, secrets masked.
        var startup = configuration.loggableMetadata
        startup["librdkafka"] = "\(librdkafkaVersion)"
        logger.info("consuming", metadata: startup)
        var previous = metrics.snapshot
        var previousAt = ContinuousClock.now
        // A one-second tick: the status line every statusInterval, freed memory back after bursts.
        let tick = min(1, configuration.statusInterval.timeInterval)
        var nextStatus = ContinuousClock.now + configuration.statusInterval
        var memoryReturn = MemoryReturnPolicy()
        var nextSnapshot = ContinuousClock.now + .seconds(15)
        var nextFidelitySample = ContinuousClock.now + .seconds(10)
        defer { saveSamplerTables() }
        while finished.wait(timeout: .now() + tick) == .timedOut {
            if ContinuousClock.now >= nextSnapshot {
                saveSamplerTables()
                nextSnapshot = ContinuousClock.now + .seconds(15)
            }
            if ContinuousClock.now >= nextFidelitySample {
                _ = sampleFidelity()
                nextFidelitySample = ContinuousClock.now + .seconds(10)
            }
            if let sampling, memoryReturn.shouldReturn(held: sampling.metrics.buffered.bytes + sampling.queuedBytes, now: .now) {
                let (before, after) = returnFreedMemory()
                logger.info("returned freed memory to the kernel", metadata: ["resident_before": "\(before)", "resident_after": "\(after)"])
            }
            guard ContinuousClock.now >= nextStatus else { continue }
            nextStatus = ContinuousClock.now + configuration.statusInterval
            let now = metrics.snapshot
            let lag = metrics.consumerLag.values.reduce(0, +)
            var status: Logger.Metadata = [
                "spans": "\(now.spansReceived)",
                "spans_per_s": "\(Int(Double(now.spansReceived - previous.spansReceived) / max(0.001, (ContinuousClock.now - previousAt).timeInterval)))",
                "messages": "\(now.messagesReceived)", "rejected": "\(now.totalMessagesRejected)", "lag": "\(lag)",
            ]
            if let sampling {
                let decisions = sampling.metrics.snapshot
                status["kept"] = "\(decisions.kept)"
                status["dropped"] = "\(decisions.dropped)"
                status["buffered_traces"] = "\(sampling.metrics.buffered.traces)"
            }
            logger.info("status", metadata: status)
            if let rules = sampling?.rules.rules {
                for (name, sampler) in RuleSet.namedSamplers(rules) {
                    guard let figures = Engine.budgetFigures(sampler), figures.exceeded > 0 else { continue }
                    logger.warning(
                        "byte budget exceeded by what other policies must keep: the sampler keeps nothing extra",
                        metadata: [
                            "policy": "\(name)", "goal_bytes_per_s": "\(Int(figures.goal))", "must_keep_bytes_per_s": "\(Int(figures.mustKeep))",
                            "over_bytes_per_s": "\(Int(figures.exceeded))",
                        ])
                }
            }
            previous = now
            previousAt = .now
        }
        // The ingest thread holds the Kafka client until it has exited; let it, so that the client
        // is gone when whoever called run() releases the engine.
        while !thread.isFinished { Thread.sleep(forTimeInterval: 0.001) }
        // Everything received decided and acknowledged by every sink: what "end of input" promises.
        let settled = sampling?.isSettled ?? true
        sampling?.stop()
        sampling?.rules.stop()
        sinks.withLock { $0 }?.stop(timeout: .seconds(5))
        let result = outcome.withLock { $0 } ?? .stopped
        let totals = metrics.snapshot
        let decisions = sampling?.metrics.snapshot ?? SamplingMetrics.Counts()
        let outcomeText: String
        switch result {
        case .stopped: outcomeText = "stopped"
        case .reachedEnd: outcomeText = settled ? "end_of_input" : "end_of_input_unstored"
        case .fatal(let error): outcomeText = "fatal: \(error)"
        }
        return RunSummary(
            outcome: outcomeText, messages: totals.messagesReceived, bytes: totals.bytesReceived, spans: totals.spansReceived,
            messagesRejected: Dictionary(uniqueKeysWithValues: totals.messagesRejected.map { ($0.key.rawValue, $0.value) }),
            spansRejected: Dictionary(uniqueKeysWithValues: totals.spansRejected.map { ($0.key.rawValue, $0.value) }),
            deadLettered: totals.messagesDeadLettered, tracesKept: decisions.kept,
            tracesStored: sampling?.storedTraces ?? 0, tracesDropped: decisions.dropped,
            keptByPolicy: decisions.keptByPolicy, lateSpans: decisions.lateKept + decisions.lateDropped,
            spansReread: sampling?.rereadSpans ?? 0,
            processingSeconds: loop.processingTime.map { $0.timeInterval },
            keptStoreLatencyP50: sampling?.metrics.keptTraceStoreLatency(quantile: 0.5),
            keptStoreLatencyP99: sampling?.metrics.keptTraceStoreLatency(quantile: 0.99),
            peakResidentBytes: Self.peakResidentBytes)
    }

    /// The process's peak resident set so far (`getrusage`'s `ru_maxrss`, in KiB on Linux).
    static var peakResidentBytes: Int? {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return nil }
        return Int(usage.ru_maxrss) * 1024
    }
}


extension Engine: HTTPBackend {
    public func storedTrace(_ id: TraceID) throws -> [UInt8]? {
        try store?.trace(id)
    }

    public func searchSummaries() throws -> [BlockSummary]? {
        guard let store else { return nil }
        return try searches.run { () throws(StorageError) in try store.allSummaries() }
    }

    public func search(_ request: TraceSearchRequest) throws -> TraceSearchResponse? {
        // (runs on a listener worker thread, never on the event loop or the ingest/shard threads)
        guard let store else { return nil }
        return try searches.run { () throws(StorageError) in try store.search(request) }
    }

    /// Ready = partitions assigned and every sink working; otherwise the reason (a sink that keeps
    /// failing — a full or vanished store directory, a receiver that is down — is named with its error).
    public func readiness() -> (ready: Bool, reason: String) {
        guard metrics.partitionsAssigned > 0 else { return (false, "no partitions assigned yet (joining the consumer group)") }
        if let failing = sinkFailure { return (false, failing) }
        return (true, "")
    }

    /// The first sink whose latest attempt failed, with why ("store failing: …"); nil when all work.
    public var sinkFailure: String? {
        guard let sinks = sinks.withLock({ $0 })?.sinks else { return nil }
        for sink in sinks {
            if let failing = sink.statistics.failing { return "\(sink.name) failing: \(failing)" }
        }
        return nil
    }

    /// Read when the console asks (a browser polling), never kept up to date on the ingest path.
    public func consoleState() -> ConsoleState {
        var state = ConsoleState(role: "run", store: store != nil, dryRun: configuration.dryRun)
        if let sampling {
            let rules = sampling.rules.rules
            state.dryRun = state.dryRun || rules.configuration.settings.dryRun
            state.rules = ConsoleState.Rules(
                path: sampling.rules.path, hash: rules.hash, source: rules.source, lastError: sampling.rules.lastError,
                policies: rules.configuration.policies.map(\.name))
            state.samplers = RuleSet.namedSamplers(rules).map { name, sampler in
                let summary = sampler.summary(limit: 20)
                return ConsoleState.Sampler(policy: name, keys: summary.keys, rates: summary.top.map { ConsoleState.Sampler.Rate(key: $0.key, rate: $0.rate) })
            }
        }
        if let sinks = sinks.withLock({ $0 })?.sinks {
            state.sinks = sinks.map { ConsoleState.Sink(name: $0.name, failing: $0.statistics.failing) }
        }
        return state
    }

    public func reloadRules() -> String? {
        guard let sampling else { return "this engine runs without rules" }
        guard sampling.rules.path != nil else { return "no --rules file to reload" }
        return sampling.rules.reload(reason: "POST /-/reload") ? nil : (sampling.rules.lastError ?? "refused")
    }
}

extension Engine {
    /// Keys per adaptive sampler, the rates of its busiest keys (a bounded number of series), and
    /// this member's share of the throughput goals.
    func writeSamplerMetrics(into out: inout MetricsWriter, rules: RuleSet, share: Double) {
        let samplers = RuleSet.namedSamplers(rules)
        guard !samplers.isEmpty else { return }
        out.family("tailgate_sampler_keys", .gauge, "Keys in an adaptive sampler's rate table.")
        var tops: [(String, [(key: String, rate: Int)])] = []
        for (name, sampler) in samplers {
            let summary = sampler.summary(limit: Engine.samplerRateSeries)
            out.sample("tailgate_sampler_keys", [("policy", name)], summary.keys)
            tops.append((name, summary.top))
        }
        out.family("tailgate_sampler_rate", .gauge, "Sample rate (keep 1 in N) of an adaptive sampler's busiest keys (at most \(Engine.samplerRateSeries) per policy).")
        for (name, top) in tops {
            for entry in top { out.sample("tailgate_sampler_rate", [("policy", name), ("key", entry.key)], entry.rate) }
        }
        out.family("tailgate_sampler_goal_share", .gauge, "This member's share of throughput goals: its partitions over its topics' partitions.")
        out.sample("tailgate_sampler_goal_share", [], share)
        let budgets = samplers.compactMap { name, sampler in Engine.budgetFigures(sampler).map { (name, $0) } }
        guard !budgets.isEmpty else { return }
        let families: [(String, String, KeyPath<BudgetFigures, Double>)] = [
            ("tailgate_budget_goal_bytes_per_second", "A byte_budget policy's goal: kept bytes per second, every policy's keeps included (this member's share).", \.goal),
            ("tailgate_budget_must_keep_bytes_per_second", "Bytes per second of kept traces another policy also kept (errors, latency, …), over the last interval.", \.mustKeep),
            ("tailgate_budget_sampler_share_bytes_per_second", "What the goal left to the sampler for this interval: the goal minus the last interval's must-keeps, at least the floor.", \.share),
            ("tailgate_budget_sampler_bytes_per_second", "Bytes per second of traces only the sampler kept, over the last interval.", \.own),
            ("tailgate_budget_kept_bytes_per_second", "Bytes per second kept in all (must-keeps and the sampler's), over the last interval.", \.kept),
            ("tailgate_budget_forecast_bytes_per_day", "The day's kept bytes at the last interval's pace (this member).", \.forecastPerDay),
            ("tailgate_budget_exceeded_bytes_per_second", "How far the must-keeps alone went over the goal in the last interval (0: within it).", \.exceeded),
        ]
        for (family, help, value) in families {
            out.family(family, .gauge, help)
            for (name, figures) in budgets { out.sample(family, [("policy", name)], figures[keyPath: value]) }
        }
    }

    /// A `byte_budget` sampler's figures, per second, over its last interval.
    public struct BudgetFigures: Sendable, Codable, Equatable {
        public var goal: Double
        public var mustKeep: Double
        public var own: Double
        public var share: Double
        public var exceeded: Double
        /// Intervals finished (0: the figures above are not in yet).
        public var intervals: Int
        public var kept: Double { mustKeep + own }
        public var forecastPerDay: Double { kept * 86_400 }
    }

    /// How representative the kept traces are, per service, busiest first: the calls, errors and
    /// latency quantiles counted from every span against those estimated from the kept traces alone,
    /// over the last five minutes (less just after the start: `coverage` says how many seconds).
    public func sampleFidelity() -> (coverage: Double, services: [ServiceFidelity])? {
        guard let sampling else { return nil }
        let current = SampleFidelity.services(sampling.spanMetrics.totals())
        let now = UInt64((ContinuousClock.now - fidelityOrigin).timeInterval * 1e9)
        let bounds = sampling.spanMetrics.configuration.latencyBuckets
        return fidelity.withLock { window in
            window.observe(current, at: now)
            return (window.coverage(at: now), window.report(current: current, at: now, bounds: bounds))
        }
    }

    /// Services with a fidelity series (the busiest; the rest are left out of the exposition).
    static let fidelitySeries = 50

    func writeFidelityMetrics(into out: inout MetricsWriter) {
        guard let (coverage, services) = sampleFidelity(), !services.isEmpty else { return }
        let shown = services.prefix(Engine.fidelitySeries)
        out.gauge("tailgate_sample_fidelity_window_seconds", "Seconds the sample fidelity figures cover (five minutes once running that long).", coverage)
        out.family("tailgate_sample_fidelity_calls_ratio", .gauge, "Calls estimated from the kept traces alone (each span weighted by its trace's adjusted count) over the calls counted from every span, per service, in the window: 1 is exact.")
        for entry in shown { out.sample("tailgate_sample_fidelity_calls_ratio", [("service", entry.service)], entry.estimatedCalls / entry.calls) }
        out.family("tailgate_sample_fidelity_errors_ratio", .gauge, "Error calls estimated from the kept traces over those counted from every span, per service with errors in the window.")
        for entry in shown where entry.errors > 0 { out.sample("tailgate_sample_fidelity_errors_ratio", [("service", entry.service)], entry.estimatedErrors / entry.errors) }
        for (name, quantile) in [("p50", 0.5), ("p99", 0.99)] {
            let family = "tailgate_sample_fidelity_latency_\(name)_ratio"
            out.family(family, .gauge, "The latency \(name) estimated from the kept traces over the one from every span (same histogram buckets), per service.")
            for entry in shown {
                let (truth, estimate) = quantile == 0.5 ? (entry.p50, entry.estimatedP50) : (entry.p99, entry.estimatedP99)
                if let truth, let estimate, truth > 0 { out.sample(family, [("service", entry.service)], estimate / truth) }
            }
        }
        out.family("tailgate_sample_fidelity_kept_traces", .gauge, "Kept traces touching the service in the window: the sample its estimates come from.")
        for entry in shown { out.sample("tailgate_sample_fidelity_kept_traces", [("service", entry.service)], entry.keptTraces) }
        out.family("tailgate_sample_fidelity_sample_too_small", .gauge, "1 when fewer than 30 kept traces touch the service in the window: too few to estimate its RED from.")
        for entry in shown { out.sample("tailgate_sample_fidelity_sample_too_small", [("service", entry.service)], entry.tooSmall ? 1 : 0) }
    }

    /// Each `byte_budget` policy's figures.
    public var budgets: [(policy: String, figures: BudgetFigures)] {
        guard let rules = sampling?.rules.rules else { return [] }
        return RuleSet.namedSamplers(rules).compactMap { name, sampler in Engine.budgetFigures(sampler).map { (name, $0) } }
    }

    static func budgetFigures(_ sampler: DynamicSampler) -> BudgetFigures? {
        guard let (configuration, goal, budget) = sampler.budget else { return nil }
        let seconds = Double(configuration.adjustmentInterval) / 1e9
        return BudgetFigures(
            goal: goal / seconds, mustKeep: budget.lastMustKeep / seconds, own: budget.lastOwn / seconds,
            share: budget.samplerShare / seconds, exceeded: budget.exceeded / seconds, intervals: budget.intervals)
    }

    /// Series of `tailgate_sampler_rate` per policy.
    static let samplerRateSeries = 20
}
