import Dispatch
import Foundation
import OTLP
import Sampling
import SpanMetrics
import Synchronization

/// A poll's spans for one shard, with the position (lane, offset) each came from.
struct ShardWork: Sendable {
    var batch: SpanBatch
    var sequence: UInt64
    var spans: [Int32] = []
    var sources: [SourcePosition] = []
}

/// Where the delivery ledger's events wait for its owner (the ingest thread): shard threads post
/// theirs once per cycle, sink callbacks one acknowledgement at a time. The ledger accepts them in
/// any interleaving of the two (an acknowledgement may overtake its delivery).
final class DeliveryEvents: Sendable {
    private let events = Mutex<[DeliveryEvent]>([])

    func post(_ event: DeliveryEvent) { events.withLock { $0.append(event) } }
    func post(_ batch: [DeliveryEvent]) {
        guard !batch.isEmpty else { return }
        events.withLock { $0.append(contentsOf: batch) }
    }

    /// Moves everything posted so far into `ledger`, in order; the deliveries that completes go to
    /// `completed`.
    func apply(to ledger: inout DeliveryLedger, scratch: inout [DeliveryEvent], completed: inout [DeliveryLedger.Completed]) {
        events.withLock { swap(&$0, &scratch) }
        for event in scratch { if let done = ledger.apply(event) { completed.append(done) } }
        scratch.removeAll(keepingCapacity: true)
    }
}

/// One shard: a thread that owns a trace window. It inserts the spans routed to it, expires deadlines,
/// decides with the current rules, hands kept traces to the sinks, and records what that means for
/// offsets as ``DeliveryEvent``s (holds of new traces, releases of dropped ones, deliveries) for the
/// ledger's owner.
final class Shard: @unchecked Sendable {
    enum Command: Sendable {
        case spans(ShardWork)
        /// Decide now (true) or forget (false) traces whose spans all came from these (revoked) lanes.
        case revoke(Set<UInt32>, decide: Bool, DispatchSemaphore)
        /// Decide everything buffered (shutdown).
        case drain(DispatchSemaphore)
        case stop
    }

    let index: Int
    private var window: TraceWindow
    private let rules: RuleStore
    private let metrics: SamplingMetrics
    private let spanMetrics: SpanMetricsHub
    private let fanOut: KeptTraceFanOut
    private let clock: any MonotonicClock
    private let wallClock: any WallClock
    private let inbox = Mutex<[Command]>([])
    private let wake = DispatchSemaphore(value: 0)
    /// This shard's events for the ledger (posted once per cycle) and the sinks' acknowledgements.
    let outbox = DeliveryEvents()
    private let acknowledgements: DeliveryEvents
    /// The last poll in this shard's window (memory accounting of polls in flight).
    let completedSequence = Atomic<UInt64>(0)
    let underPressure = Atomic<Bool>(false)
    private let pressureTarget: Int
    private let decisionWaitOverride: Duration?
    /// Shards of the stage: each holds its share of the decision cache.
    private let shardCount: Int
    /// `--dry-run`: every trace goes to the sinks tagged with its decision (the rule file's
    /// `dry_run: true` does the same, and follows reloads).
    private let dryRunOverride: Bool
    /// Delivery tokens: the shard's index in the top bits, so shards never collide.
    private var nextToken: UInt64
    /// Events of the cycle in progress (thread-confined: the shard's thread only).
    private var events: [DeliveryEvent] = []
    /// A poll's spans ordered trace by trace (thread-confined, reused).
    private var grouping = TraceGrouping()
    private var groupedSpans: [Int32] = []
    private var groupedSources: [SourcePosition] = []

    init(
        index: Int, window: TraceWindow, rules: RuleStore, metrics: SamplingMetrics, spanMetrics: SpanMetricsHub,
        fanOut: KeptTraceFanOut, acknowledgements: DeliveryEvents, clock: any MonotonicClock, wallClock: any WallClock,
        pressureTarget: Int, decisionWaitOverride: Duration?, shardCount: Int, dryRun: Bool = false
    ) {
        self.shardCount = max(1, shardCount)
        dryRunOverride = dryRun
        self.index = index
        self.window = window
        self.rules = rules
        self.metrics = metrics
        self.spanMetrics = spanMetrics
        self.fanOut = fanOut
        self.acknowledgements = acknowledgements
        self.clock = clock
        self.wallClock = wallClock
        self.pressureTarget = pressureTarget
        self.decisionWaitOverride = decisionWaitOverride
        nextToken = UInt64(index) << 48
    }

    /// Span metrics weigh each span by its incoming adjusted count (`enable_tracestate_span_multiplier`).
    private var spanMetricsWeighted: Bool { spanMetrics.configuration.spanMultiplier == .tracestate }

    /// A kept trace's adjusted count — what it stands for in the estimate from kept traces: the
    /// adaptive rate it was kept at, or 1/p of the probability this stage kept it with (its threshold's
    /// adjusted count over the incoming one's, unless span metrics already weigh by the incoming one),
    /// else 1 (kept for its content, or by a rate limit whose probability nobody knows).
    static func adjustedCount(_ annotation: KeptAnnotation, _ trace: TraceData, weighted: Bool) -> Double {
        if let threshold = annotation.threshold {
            return weighted ? threshold.adjustedCount : threshold.adjustedCount / trace.incomingThreshold.adjustedCount
        }
        if let rate = annotation.sampleRate { return Double(max(1, rate)) }
        return 1
    }

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
                        events.append(.inserted(poll: work.sequence))
                        completed = work.sequence
                    case .revoke(let lanes, let decide, let reply):
                        if decide {
                            // Decided now with what arrived: stored, counted, committed past.
                            window.release(lanes: lanes, into: &ready)
                        } else {
                            // Not counted: the next owner replays these spans and counts them.
                            window.forget(lanes: lanes)
                        }
                        replies.append(reply)
                    case .drain(let reply):
                        window.releaseAll(into: &ready)
                        if rules.rules.configuration.settings.dropPendingTracesOnShutdown {
                            // The user chose to lose partial traces rather than decide them early.
                            counts.dropped += ready.count
                            for item in ready {
                                counts.droppedBytes += item.trace.encodedBytes
                                spanMetrics.record(item.trace, kept: false, wallClockMillis: wallClockMillis)
                                release(item)
                            }
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
            metrics.record(shard: index, .init(traces: window.traceCount, spans: window.bufferedSpans, bytes: window.residentBytes))
            outbox.post(events)
            events.removeAll(keepingCapacity: true)
            if let completed { completedSequence.store(completed, ordering: .releasing) }
            for reply in replies { reply.signal() }
        }
    }

    /// Timing and size settings follow the running rules (a reload applies them to new traces, and
    /// resizes this shard's share of the decision cache); `--decision-wait` wins over the file.
    private func applyLimits() {
        let settings = rules.rules.configuration.settings
        var limits = WindowLimits(settings)
        if let decisionWaitOverride { limits.decisionWait = decisionWaitOverride }
        if limits != window.limits { window.limits = limits }
        window.resizeCache(keptCapacity: settings.sampledCacheSize / shardCount, droppedCapacity: settings.nonSampledCacheSize / shardCount)
    }

    /// Whether the running rules (or `--dry-run`) ask for a dry run.
    private var isDryRun: Bool { dryRunOverride || rules.rules.configuration.settings.dryRun }

    private func newToken() -> DeliveryLedger.Token {
        nextToken += 1
        return DeliveryLedger.Token(nextToken)
    }

    /// Each sink's acknowledgement of `token`, straight to the ledger's owner.
    private func acknowledge(_ token: DeliveryLedger.Token) -> @Sendable (Int) -> Void {
        { [acknowledgements, clock] sink in acknowledgements.post(.acknowledge(token, sink: sink, at: clock.now())) }
    }

    private func release(_ item: ReadyTrace) {
        events.append(.release(item.firstSource))
        for source in item.otherSources ?? [] { events.append(.release(source)) }
    }

    private func insert(
        _ work: ShardWork, now: UInt64, ready: inout [ReadyTrace], counts: inout SamplingMetrics.Counts,
        spanMetrics: inout ShardSpanMetrics, wallClockMillis: Int64
    ) {
        // Each trace's spans together (messages of many traces bring each in pieces, one per
        // service), so that a new trace is sized once below; in arrival order within a trace.
        var spanIndices = work.spans
        var sources = work.sources
        if grouping.group(work.spans, in: work.batch) {
            groupedSpans.removeAll(keepingCapacity: true)
            groupedSources.removeAll(keepingCapacity: true)
            for position in grouping.order {
                groupedSpans.append(work.spans[Int(position)])
                groupedSources.append(work.sources[Int(position)])
            }
            spanIndices = groupedSpans
            sources = groupedSources
        }
        var runEnd = 0
        for (position, (spanIndex, source)) in zip(spanIndices, sources).enumerated() {
            let span = work.batch.spans[Int(spanIndex)]
            // The spans of one trace that come together (a keyed message holds a whole trace): a new
            // trace is sized for all of them at once.
            var expected: TraceRun?
            if position == runEnd {
                let measured = TraceRun.measure(spanIndices, from: position, in: work.batch)
                expected = measured.run
                runEnd = measured.end
            }
            // The span's RED series, found while its bytes are in the cache (kept with the span).
            let series = spanMetrics.seriesOnArrival(span, from: work.batch, batchGeneration: work.sequence)
            switch window.insert(
                span, from: work.batch, batchGeneration: work.sequence, source: source, now: now, ready: &ready, expected: expected,
                series: series)
            {
            case .buffered:
                break
            case .holding:
                events.append(.hold(source))
            case .late(.kept(let policy, let annotation)):
                counts.lateKept += 1
                counts.spansKept += 1
                counts.keptBytesByPolicy[policy, default: 0] += Int(span.encoded.count)
                // Held until every sink has it, like the trace it belongs to.
                let token = newToken()
                events.append(.hold(source))
                events.append(.deliver(token, source, more: nil))
                fanOut.keepLate(
                    span, from: work.batch, policy: policy, annotation: isDryRun ? KeptAnnotation() : annotation, dryRun: isDryRun ? .keep : nil,
                    acknowledged: acknowledge(token))
                spanMetrics.recordLate(span, from: work.batch, kept: true, wallClockMillis: wallClockMillis)
            case .late(.dropped):
                counts.lateDropped += 1
                spanMetrics.recordLate(span, from: work.batch, kept: false, wallClockMillis: wallClockMillis)
                if isDryRun {
                    let token = newToken()
                    events.append(.hold(source))
                    events.append(.deliver(token, source, more: nil))
                    fanOut.keepLate(span, from: work.batch, policy: "", dryRun: .drop, acknowledged: acknowledge(token))
                }
            }
        }
    }

    private func decide(
        _ ready: inout [ReadyTrace], now: UInt64, counts: inout SamplingMetrics.Counts, spanMetrics: inout ShardSpanMetrics,
        wallClockMillis: Int64
    ) {
        guard !ready.isEmpty else { return }
        let ruleSet = rules.rules
        let dryRun = dryRunOverride || ruleSet.configuration.settings.dryRun
        var tally = PolicyTally(policies: ruleSet.policies.count)
        var reasons = ReasonTally()
        defer {
            reasons.add(to: &counts.decisionsByReason)
            // Once per cycle, by name (positions change with a reload).
            for (index, policy) in ruleSet.configuration.policies.enumerated() where index < ruleSet.policies.count {
                let columns = tally.columns(of: index)
                if let sum = counts.policyDecisions[policy.name] {
                    counts.policyDecisions[policy.name] = zip(sum, columns).map(+)
                } else {
                    counts.policyDecisions[policy.name] = columns
                }
            }
        }
        // Taken out one by one, in order, not iterated: iterating copied each ready trace (a retain
        // of every buffer) and emptying the list afterwards released them again.
        ready.withUnsafeMutableBufferPointer { $0.reverse() }
        while var item = ready.popLast() {
            reasons.count(item.reason)
            counts.decisionLatencies.append(now >= item.firstSeen ? now - item.firstSeen : 0)
            // A dry run explains (the same single evaluation) so that a would-be drop can name the
            // policy that dropped it.
            var dropPolicy = ""
            let decision: TraceDecision
            var mustKeep = false
            if dryRun {
                let explanation = ruleSet.explain(item.trace, now: now)
                decision = explanation.decision
                for (index, policy) in explanation.policies.enumerated() {
                    if let own = policy.decision { tally.count(own, policy: index) }
                }
                let culprit: PolicyDecision? = explanation.rule == .dropped ? .dropped : explanation.rule == .invertNotSampled ? .invertNotSampled : nil
                if let culprit { dropPolicy = explanation.policies.first { $0.decision == culprit }?.name ?? "" }
            } else {
                decision = ruleSet.decide(item.trace, now: now, tally: &tally, mustKeep: &mustKeep)
            }
            switch decision {
            case .keep(let policy):
                // Asked once, now: an adaptive sampler hands over the rate it kept this trace at. Late
                // spans get the same from the decision cache. A trace some policy keeps for its
                // content was kept with probability 1, whichever policy is credited: it leaves with
                // its tracestate as it came and SampleRate 1 where a rate would have been written.
                var annotation = dryRun ? KeptAnnotation() : ruleSet.keptAnnotation(for: item.trace, keptBy: policy)
                if mustKeep { annotation = KeptAnnotation(threshold: nil, sampleRate: annotation.sampleRate == nil ? nil : 1) }
                spanMetrics.record(item.trace, kept: true, weight: Self.adjustedCount(annotation, item.trace, weighted: spanMetricsWeighted), wallClockMillis: wallClockMillis)
                counts.keptByPolicy[policy, default: 0] += 1
                counts.keptBytesByPolicy[policy, default: 0] += item.trace.encodedBytes
                counts.spansKept += item.trace.spans.count
                let token = newToken()
                // Noted with the decision time (+1: 0 means "not counted"): the ledger reports it back
                // when every sink has the trace, for the stored count and the store latency.
                events.append(.deliver(token, item.firstSource, more: item.otherSources, note: now + 1))
                let integrity = item.trace.integrity
                if !integrity.complete { counts.keptIncomplete += 1 }
                fanOut.keep(
                    item.trace, policy: policy, annotation: annotation, integrity: integrity, dryRun: dryRun ? .keep : nil,
                    acknowledged: acknowledge(token))
                window.remember(item.trace.traceID, kept: true, policy: policy, annotation: annotation)
            case .drop:
                spanMetrics.record(item.trace, kept: false, wallClockMillis: wallClockMillis)
                counts.dropped += 1
                counts.droppedBytes += item.trace.encodedBytes
                window.remember(item.trace.traceID, kept: false)
                if dryRun {
                    // Would be dropped; a dry run sends it anyway, tagged, and holds its offsets
                    // until the sinks have it, like a kept trace.
                    let token = newToken()
                    events.append(.deliver(token, item.firstSource, more: item.otherSources))
                    fanOut.keep(item.trace, policy: dropPolicy, integrity: item.trace.integrity, dryRun: .drop, acknowledged: acknowledge(token))
                } else {
                    release(item)
                    window.recycle(item.trace.take())
                }
            }
        }
    }
}

/// Decisions by reason within one cycle, in fields rather than a dictionary: hashing the reason for
/// every trace put SipHash on the decision path. Added to the cycle's counts once.
private struct ReasonTally {
    private var decisionWait = 0, rootReceived = 0, maxSpans = 0, memoryPressure = 0, flush = 0

    mutating func count(_ reason: DecisionReason) {
        switch reason {
        case .decisionWait: decisionWait += 1
        case .rootReceived: rootReceived += 1
        case .maxSpans: maxSpans += 1
        case .memoryPressure: memoryPressure += 1
        case .flush: flush += 1
        }
    }

    func add(to counts: inout [DecisionReason: Int]) {
        func put(_ reason: DecisionReason, _ count: Int) {
            if count > 0 { counts[reason, default: 0] += count }
        }
        put(.decisionWait, decisionWait)
        put(.rootReceived, rootReceived)
        put(.maxSpans, maxSpans)
        put(.memoryPressure, memoryPressure)
        put(.flush, flush)
    }
}
