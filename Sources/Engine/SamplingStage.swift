import Dispatch
import Foundation
public import Kafka
public import Logging
public import OTLP
public import Sampling
public import SpanMetrics
import Synchronization

/// Where kept traces go. Called on shard threads; must not block for long. `stored` is called (on
/// any thread) once the trace is durable: only then may the offsets of its spans be committed.
public protocol KeptTraceSink: Sendable {
    /// A whole kept trace, with the policy that kept it.
    func keep(_ trace: TraceData, policy: String, stored: @escaping @Sendable () -> Void)
    /// A span that arrived after its trace was kept.
    func keepLate(_ span: SpanRecord, from batch: SpanBatch, stored: @escaping @Sendable () -> Void)
    /// Writes out what is queued and returns when it is stored (shutdown).
    func flush()
    /// Bytes waiting in the sink: they count toward the buffer limit.
    var queuedBytes: Int { get }
}

extension KeptTraceSink {
    public func flush() {}
    public var queuedBytes: Int { 0 }
}

/// Counts kept traces and spans and lets them go (no storage configured).
public final class KeptTraceCounter: KeptTraceSink {
    private let traces = Atomic<Int>(0)
    private let spans = Atomic<Int>(0)
    public init() {}
    public func keep(_ trace: TraceData, policy: String, stored: @escaping @Sendable () -> Void) {
        traces.add(1, ordering: .relaxed)
        spans.add(trace.spans.count, ordering: .relaxed)
        stored()
    }
    public func keepLate(_ span: SpanRecord, from batch: SpanBatch, stored: @escaping @Sendable () -> Void) {
        spans.add(1, ordering: .relaxed)
        stored()
    }
    public var keptTraces: Int { traces.load(ordering: .relaxed) }
    public var keptSpans: Int { spans.load(ordering: .relaxed) }
}

/// A monotonic clock in nanoseconds (injected so tests can drive time).
public protocol MonotonicClock: Sendable {
    func now() -> UInt64
}

/// Wall-clock time in Unix milliseconds (exemplar timestamps), injected like the monotonic clock.
public protocol WallClock: Sendable {
    func unixMillis() -> Int64
}

/// The system's wall clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func unixMillis() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}

/// The process's monotonic clock.
public struct SystemMonotonicClock: MonotonicClock {
    public init() {}
    public func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}

/// The sampling stage: routes each decoded span to the shard that owns its trace (a well-mixed hash
/// of the trace id), where a single thread holds the trace window, expires deadlines, decides with
/// the current rules and hands kept traces on. Work crosses threads in whole polls; nothing on the
/// per-span path takes a shared lock. Offsets become committable once every trace holding spans
/// from them is decided (a per-partition watermark).
public final class SamplingStage: IngestSink, @unchecked Sendable {
    public let rules: RuleStore
    public let metrics: SamplingMetrics
    public let bufferLimit: Int
    /// RED and service-graph metrics of every decided trace.
    public let spanMetrics: SpanMetricsHub
    private let shards: [Shard]
    private let kept: any KeptTraceSink
    private let logger: Logger

    // Ingest-thread state (the polling thread only).
    private var partitionIndex: [TopicPartition: UInt32] = [:]
    private var partitions: [TopicPartition] = []
    private var sequence: UInt64 = 0
    private var pending: [(sequence: UInt64, next: [UInt32: Int64], bytes: Int)] = []
    private var completedNext: [UInt32: Int64] = [:]
    private var paused = false
    private let pressureHandler: Mutex<(@Sendable (Bool) -> Void)?> = Mutex(nil)

    public init(
        rules: RuleStore, metrics: SamplingMetrics, shardCount: Int, bufferLimit: Int, kept: any KeptTraceSink,
        decisionWaitOverride: Duration? = nil, spanMetrics: SpanMetricsConfiguration = SpanMetricsConfiguration(),
        clock: any MonotonicClock = SystemMonotonicClock(), wallClock: any WallClock = SystemWallClock(), logger: Logger
    ) {
        self.rules = rules
        self.metrics = metrics
        self.bufferLimit = bufferLimit
        self.kept = kept
        self.logger = logger
        let hub = SpanMetricsHub(configuration: spanMetrics, selection: rules.rules.selection, shards: max(1, shardCount))
        self.spanMetrics = hub
        let settings = rules.rules.configuration.settings
        let perShardCache = DecisionCache(
            keptCapacity: settings.sampledCacheSize / max(1, shardCount),
            droppedCapacity: settings.nonSampledCacheSize / max(1, shardCount))
        shards = (0..<max(1, shardCount)).map { index in
            Shard(
                index: index, window: TraceWindow(limits: WindowLimits(settings), cache: perShardCache), rules: rules,
                metrics: metrics, spanMetrics: hub, kept: kept, clock: clock, wallClock: wallClock,
                pressureTarget: bufferLimit / max(1, shardCount),
                decisionWaitOverride: decisionWaitOverride)
        }
        for shard in shards { shard.start() }
    }

    /// Called with true to pause Kafka consumption (buffer full), false to resume.
    public func onPressure(_ handler: @escaping @Sendable (Bool) -> Void) { pressureHandler.withLock { $0 = handler } }

    public var attributeSelection: AttributeSelection { rules.rules.selection }

    /// Bytes waiting in the kept-trace sinks.
    public var queuedBytes: Int { kept.queuedBytes }

    public var headroom: Int? { max(0, bufferLimit - heldBytes) }

    /// What the buffer limit weighs: buffered traces, kept traces queued in sinks, and polls handed to
    /// the shards but not yet in their windows (a lagging shard must not hide them from the limit).
    private var heldBytes: Int {
        let completed = shards.map { $0.published.completedSequence }.min() ?? 0
        let inFlight = pending.reduce(0) { $1.sequence > completed ? $0 + $1.bytes : $0 }
        return metrics.buffered.bytes + kept.queuedBytes + inFlight
    }

    public func ingest(_ batch: SpanBatch, messages: [IngestedMessage]) {
        sequence += 1
        var perShard = Array(repeating: ShardWork(batch: batch, generation: sequence, sequence: sequence), count: shards.count)
        var next: [UInt32: Int64] = [:]
        for message in messages {
            let partition = index(of: message.partition)
            next[partition] = max(next[partition] ?? 0, message.offset + 1)
            for spanIndex in message.spans {
                let shard = TraceRouting.shard(of: batch.spans[spanIndex].traceID, count: shards.count)
                perShard[shard].spans.append(Int32(spanIndex))
                perShard[shard].sources.append(SourcePosition(partition: partition, offset: message.offset))
            }
        }
        pending.append((sequence, next, batch.bytes.count))
        // Every shard gets the poll (empty or not), so that "all shards finished poll N" is known.
        for (shard, work) in zip(shards, perShard) { shard.send(.spans(work)) }
        applyPressure()
    }

    public func committableOffsets() -> [TopicPartition: Int64] {
        applyPressure()
        let published = shards.map { $0.published }
        let completed = published.map(\.completedSequence).min() ?? 0
        while let first = pending.first, first.sequence <= completed {
            completedNext.merge(first.next) { max($0, $1) }
            pending.removeFirst()
        }
        var result: [TopicPartition: Int64] = [:]
        for (partition, next) in completedNext {
            let held = published.compactMap { $0.held[partition] }.min()
            result[partitions[Int(partition)]] = min(next, held ?? .max)
        }
        return result
    }

    public func assigned(_ partitions: [TopicPartition]) {}

    public func revoke(_ revoked: [TopicPartition]) -> [TopicPartition: Int64] {
        let safe = committableOffsets().filter { revoked.contains($0.key) }
        let indices = Set(revoked.compactMap { partitionIndex[$0] })
        guard !indices.isEmpty else { return safe }
        let done = DispatchSemaphore(value: 0)
        for shard in shards { shard.send(.revoke(indices, done)) }
        for _ in shards { done.wait() }
        for index in indices { completedNext[index] = nil }
        for i in pending.indices { for index in indices { pending[i].next[index] = nil } }
        logger.info("released buffered traces of revoked partitions; their next owner replays from the committed offset",
                    metadata: ["partitions": "\(revoked.map(\.description).joined(separator: ","))"])
        return safe
    }

    public func drain() {
        let done = DispatchSemaphore(value: 0)
        for shard in shards { shard.send(.drain(done)) }
        for _ in shards { done.wait() }
        // Store what was just kept, then let every shard take the acknowledgements in, so the final
        // commit covers it.
        kept.flush()
        for shard in shards { shard.send(.drain(done)) }
        for _ in shards { done.wait() }
    }

    /// Stops the shard threads (after ``drain()``).
    public func stop() {
        for shard in shards { shard.send(.stop) }
    }

    private func index(of partition: TopicPartition) -> UInt32 {
        if let index = partitionIndex[partition] { return index }
        let index = UInt32(partitions.count)
        partitions.append(partition)
        partitionIndex[partition] = index
        return index
    }

    /// Pauses consumption above the buffer limit, resumes below 80% of it; far above it (a giant
    /// trace, or fetches in flight), shards decide their heaviest traces early.
    private let pressureLog = LogThrottle(interval: .seconds(60))

    private func applyPressure() {
        let buffered = metrics.buffered
        let bytes = heldBytes
        // `num_traces` bounds the count as the byte limit bounds memory: both pause, neither drops.
        let maxTraces = rules.rules.configuration.settings.numTraces
        if !paused && buffered.traces >= maxTraces {
            paused = true
            pressureHandler.withLock { $0 }?(true)
            logger.warning("num_traces reached: pausing consumption", metadata: ["buffered_traces": "\(buffered.traces)"])
            return
        }
        if paused && buffered.traces >= maxTraces / 10 * 8 { return }
        if !paused && bytes > bufferLimit {
            paused = true
            pressureHandler.withLock { $0 }?(true)
            // Under sustained load this is the steady state (pause, drain, resume): said once a minute.
            pressureLog.log(
                logger, level: .warning, key: "pause", "buffer limit reached: pausing consumption",
                metadata: ["buffered_bytes": "\(bytes)", "limit": "\(bufferLimit)"])
        } else if paused && bytes < bufferLimit / 10 * 8 {
            paused = false
            pressureHandler.withLock { $0 }?(false)
            pressureLog.log(logger, level: .info, key: "resume", "buffer below 80% of its limit: resuming consumption", metadata: ["buffered_bytes": "\(bytes)"])
        }
        let overloaded = bytes > bufferLimit + bufferLimit / 4
        for shard in shards { shard.underPressure.store(overloaded, ordering: .relaxed) }
    }
}

struct ShardWork: Sendable {
    var batch: SpanBatch
    var generation: UInt64
    var sequence: UInt64
    var spans: [Int32] = []
    var sources: [SourcePosition] = []
}

/// One shard: a thread that owns a trace window.
final class Shard: @unchecked Sendable {
    enum Command: Sendable {
        case spans(ShardWork)
        case revoke(Set<UInt32>, DispatchSemaphore)
        case drain(DispatchSemaphore)
        case stop
    }

    struct Published: Sendable {
        var completedSequence: UInt64 = 0
        var held: [UInt32: Int64] = [:]
    }

    let index: Int
    private var window: TraceWindow
    private let rules: RuleStore
    private let metrics: SamplingMetrics
    private let spanMetrics: SpanMetricsHub
    private let kept: any KeptTraceSink
    private let clock: any MonotonicClock
    private let wallClock: any WallClock
    private let inbox = Mutex<[Command]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let publishedState = Mutex(Published())
    let underPressure = Atomic<Bool>(false)
    private let pressureTarget: Int
    private var acks = AckTracker()
    private let storedTokens = Mutex<[UInt64]>([])

    private let decisionWaitOverride: Duration?

    init(
        index: Int, window: TraceWindow, rules: RuleStore, metrics: SamplingMetrics, spanMetrics: SpanMetricsHub,
        kept: any KeptTraceSink, clock: any MonotonicClock, wallClock: any WallClock, pressureTarget: Int,
        decisionWaitOverride: Duration?
    ) {
        self.spanMetrics = spanMetrics
        self.wallClock = wallClock
        self.decisionWaitOverride = decisionWaitOverride
        self.index = index
        self.window = window
        self.rules = rules
        self.metrics = metrics
        self.kept = kept
        self.clock = clock
        self.pressureTarget = pressureTarget
    }

    var published: Published { publishedState.withLock { $0 } }

    func send(_ command: Command) {
        inbox.withLock { $0.append(command) }
        wake.signal()
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "tailgate-shard-\(index)"
        thread.start()
    }

    private func run() {
        var ready: [ReadyTrace] = []
        var commands: [Command] = []
        var stopping = false
        while !stopping {
            // Wake on work, or every 10 ms for deadlines (the wheel's tick).
            _ = wake.wait(timeout: .now() + .milliseconds(10))
            inbox.withLock { swap(&$0, &commands) }
            let stored = storedTokens.withLock { tokens -> [UInt64] in
                defer { tokens.removeAll(keepingCapacity: true) }
                return tokens
            }
            acks.acknowledge(stored)
            var counts = SamplingMetrics.Counts()
            var replies: [DispatchSemaphore] = []
            var completed: UInt64?
            let now = clock.now()
            let wallClockMillis = wallClock.unixMillis()
            applyLimits()
            // The span metrics are this shard's alone; the lock is for scrapes, taken once per cycle.
            spanMetrics.withShard(index) { spanMetrics in
                for command in commands {
                    switch command {
                    case .spans(let work):
                        insert(work, now: now, ready: &ready, counts: &counts, spanMetrics: &spanMetrics, wallClockMillis: wallClockMillis)
                        completed = work.sequence
                    case .revoke(let partitions, let reply):
                        // Not counted: the next owner replays these spans and counts them.
                        window.forget(partitions: partitions)
                        replies.append(reply)
                    case .drain(let reply):
                        window.releaseAll(into: &ready)
                        if rules.rules.configuration.settings.dropPendingTracesOnShutdown {
                            // The user chose to lose partial traces rather than decide them early.
                            counts.dropped += ready.count
                            for item in ready { spanMetrics.record(item.trace, kept: false, wallClockMillis: wallClockMillis) }
                            ready.removeAll(keepingCapacity: true)
                        }
                        replies.append(reply)
                    case .stop:
                        stopping = true
                    }
                }
                commands.removeAll(keepingCapacity: true)
                window.expire(now: now, into: &ready)
                if underPressure.load(ordering: .relaxed) {
                    window.releaseHeaviest(until: pressureTarget / 10 * 8, now: now, into: &ready)
                }
                decide(&ready, now: now, counts: &counts, spanMetrics: &spanMetrics, wallClockMillis: wallClockMillis)
            }
            metrics.add(counts)
            metrics.record(shard: index, .init(traces: window.traceCount, spans: window.bufferedSpans, bytes: window.bufferedBytes))
            var held = window.lowestHeldOffsets()
            // Kept traces not yet stored hold their offsets too.
            for (partition, offset) in acks.lowestPending() { held[partition] = min(held[partition] ?? .max, offset) }
            publishedState.withLock { state in
                state.held = held
                if let completed { state.completedSequence = completed }
            }
            for reply in replies { reply.signal() }
        }
    }

    /// Called by the sink (any thread) when a kept trace is durable; handled on the next cycle.
    private func storedCallback(_ token: UInt64, decidedAt: UInt64? = nil) -> @Sendable () -> Void {
        { [self] in
            if let decidedAt {
                let now = clock.now()
                metrics.recordStored(afterSeconds: Double(now > decidedAt ? now - decidedAt : 0) / 1e9)
            }
            storedTokens.withLock { $0.append(token) }
            wake.signal()
        }
    }

    /// Timing and size settings follow the running rules (a reload applies them to new traces);
    /// `--decision-wait` wins over the file.
    private func applyLimits() {
        var limits = WindowLimits(rules.rules.configuration.settings)
        if let decisionWaitOverride { limits.decisionWait = decisionWaitOverride }
        if limits != window.limits { window.limits = limits }
    }

    private func insert(
        _ work: ShardWork, now: UInt64, ready: inout [ReadyTrace], counts: inout SamplingMetrics.Counts,
        spanMetrics: inout ShardSpanMetrics, wallClockMillis: Int64
    ) {
        for (spanIndex, source) in zip(work.spans, work.sources) {
            let span = work.batch.spans[Int(spanIndex)]
            switch window.insert(span, from: work.batch, batchGeneration: work.generation, source: source, now: now, ready: &ready) {
            case .buffered:
                break
            case .late(.kept):
                counts.lateKept += 1
                counts.spansKept += 1
                let token = acks.register([source])
                kept.keepLate(span, from: work.batch, stored: storedCallback(token))
                spanMetrics.recordLate(span, from: work.batch, kept: true, wallClockMillis: wallClockMillis)
            case .late(.dropped):
                counts.lateDropped += 1
                spanMetrics.recordLate(span, from: work.batch, kept: false, wallClockMillis: wallClockMillis)
            }
        }
    }

    private func decide(
        _ ready: inout [ReadyTrace], now: UInt64, counts: inout SamplingMetrics.Counts, spanMetrics: inout ShardSpanMetrics,
        wallClockMillis: Int64
    ) {
        guard !ready.isEmpty else { return }
        let ruleSet = rules.rules
        for item in ready {
            counts.decisionsByReason[item.reason, default: 0] += 1
            counts.decisionLatencies.append(now >= item.firstSeen ? now - item.firstSeen : 0)
            let decision = ruleSet.decide(item.trace, now: now)
            switch decision {
            case .keep(let policy):
                spanMetrics.record(item.trace, kept: true, wallClockMillis: wallClockMillis)
                counts.keptByPolicy[policy, default: 0] += 1
                counts.spansKept += item.trace.spans.count
                let token = acks.register(item.sources)
                kept.keep(item.trace, policy: policy, stored: storedCallback(token, decidedAt: now))
                window.remember(item.trace.traceID, kept: true)
            case .drop:
                spanMetrics.record(item.trace, kept: false, wallClockMillis: wallClockMillis)
                counts.dropped += 1
                window.remember(item.trace.traceID, kept: false)
                window.recycle(item.trace)
            }
        }
        ready.removeAll(keepingCapacity: true)
    }
}

/// Kept traces handed to a sink and not yet stored, with the offsets they hold; acknowledged roughly
/// in order, so a FIFO per partition with lazy removal finds the lowest pending offset cheaply.
struct AckTracker {
    private var next: UInt64 = 1
    private var pending: [UInt32: RingQueue<(offset: Int64, token: UInt64)>] = [:]
    private var done = Set<UInt64>()
    private var outstanding = Set<UInt64>()

    mutating func register(_ sources: [SourcePosition]) -> UInt64 {
        let token = next
        next += 1
        outstanding.insert(token)
        for source in sources { pending[source.partition, default: RingQueue()].append((source.offset, token)) }
        return token
    }

    mutating func acknowledge(_ tokens: [UInt64]) {
        for token in tokens where outstanding.remove(token) != nil { done.insert(token) }
    }

    /// The lowest offset per partition still held by an unstored kept trace.
    mutating func lowestPending() -> [UInt32: Int64] {
        var result: [UInt32: Int64] = [:]
        for partition in Array(pending.keys) {
            while let front = pending[partition]!.first, done.contains(front.token) {
                _ = pending[partition]!.popFirst()
            }
            if let front = pending[partition]!.first {
                result[partition] = pending[partition]!.minimum(\.offset, liveWhere: { !done.contains($0.token) }) ?? front.offset
            } else {
                pending[partition] = nil
            }
        }
        if pending.isEmpty { done.removeAll(keepingCapacity: true) }
        return result
    }

    var unstored: Int { outstanding.count }
}
