public import Foundation
public import OTLP
import Synchronization

/// The settings of one adaptive sampler (`ema_dynamic`, `ema_throughput`, `windowed_throughput`,
/// `byte_budget`): Refinery's dynamic samplers (honeycombio/dynsampler-go) and tailgate's budget in
/// bytes, decided consistently by trace id.
public struct DynamicSamplerConfiguration: Sendable, Equatable {
    public enum Algorithm: String, Sendable, Equatable {
        /// Aims at an average sample rate over all spans (`goal_sample_rate`).
        case emaDynamic = "ema_dynamic"
        /// Aims at a number of kept spans per second (`goal_throughput_per_sec`).
        case emaThroughput = "ema_throughput"
        /// The same goal, counted over a sliding `lookback` window, split evenly over the keys.
        case windowedThroughput = "windowed_throughput"
        /// Aims at kept bytes per second, every keeping policy's included (`goal_bytes_per_sec`): the
        /// EMA table weighted by bytes, given what the other policies leave of the budget.
        case byteBudget = "byte_budget"
    }

    public var algorithm: Algorithm
    /// Span or resource attributes (or `name`, the span name) whose values make a trace's key; a
    /// `root.` prefix reads the root span only.
    public var keyFields: [String]
    /// Append the trace's span count to its key.
    public var useTraceLength = false
    public var goalSampleRate = 10
    public var goalThroughputPerSecond = 100.0
    public var initialSampleRate = 10
    /// Nanoseconds between two rate tables (the EMA samplers).
    public var adjustmentInterval: UInt64 = 15_000_000_000
    public var weight = 0.5
    /// Keys whose moving average falls below this are forgotten; nil: the weight.
    public var ageOutValue: Double?
    public var burstMultiple = 2.0
    public var burstDetectionDelay = 3
    public var maxKeys = 500
    /// The windowed sampler's window, and how often its table is recomputed (nanoseconds).
    public var lookback: UInt64 = 30_000_000_000
    public var updateInterval: UInt64 = 1_000_000_000
    /// `byte_budget`: kept bytes per second across the deployment, must-keeps included.
    public var goalBytesPerSecond = 0.0
    /// `byte_budget`: what the sampler may keep per second even when the must-keeps fill the budget
    /// (0: nothing then).
    public var floorBytesPerSecond = 0.0
    /// `byte_budget`: how many times per interval the table is planned again from what the interval
    /// has kept so far.
    public static let budgetCheckpoints = 16

    public init(algorithm: Algorithm, keyFields: [String]) {
        self.algorithm = algorithm
        self.keyFields = keyFields
    }

    /// The attribute keys the decoder must select for the key fields.
    public var attributeKeys: [String] {
        keyFields.map { $0.hasPrefix("root.") ? String($0.dropFirst(5)) : $0 }.filter { $0 != "name" }
    }
}

/// Refinery's per-key rate table as a pure state machine on an injected clock (nanoseconds): spans
/// are counted per key in the current interval; at each interval's end (or at a burst) the counts
/// fold into an exponential moving average and a new table of sample rates is computed from it.
public struct DynamicRateTable: Sendable, Equatable {
    public let configuration: DynamicSamplerConfiguration
    /// This replica's share of a throughput goal (its partitions over the topics' partitions).
    public var goalShare = 1.0

    public private(set) var rates: [String: Int] = [:]
    public private(set) var movingAverage: [String: Double] = [:]
    private(set) var counts: [String: Double] = [:]
    private(set) var haveData = false
    private var burstSum = 0.0
    private var burstThreshold = 0.0
    private var intervals = 0
    private var nextAdjustment: UInt64?
    /// The windowed sampler's buckets, oldest first: (start of the bucket, counts in it).
    private var buckets: [(start: UInt64, counts: [String: Double])] = []
    /// The byte budget's bookkeeping.
    public private(set) var budget = Budget()

    /// What a `byte_budget` sampler's interval kept and planned, in bytes per interval.
    public struct Budget: Sendable, Equatable {
        /// Bytes of kept traces another policy also kept (errors, latency, …), this interval so far.
        public var mustKeep = 0.0
        /// Bytes of traces only this sampler kept, this interval so far.
        public var own = 0.0
        /// The last finished interval's figures.
        public var lastMustKeep = 0.0
        public var lastOwn = 0.0
        /// What the sampler was given at the last interval end: the goal minus the must-keeps, at
        /// least the floor.
        public var samplerShare = 0.0
        /// How much the last interval's must-keeps alone went over the goal (0: they did not).
        public var exceeded = 0.0
        /// Intervals finished (0: no figures yet).
        public var intervals = 0
        /// Checkpoints of the current interval already planned.
        var checkpoint = 0
        /// The sampler's bytes in the plan in force (for the rest of the interval).
        public var planned = 0.0
    }

    public init(configuration: DynamicSamplerConfiguration) { self.configuration = configuration }

    public static func == (a: DynamicRateTable, b: DynamicRateTable) -> Bool {
        a.configuration == b.configuration && a.rates == b.rates && a.movingAverage == b.movingAverage && a.counts == b.counts
            && a.haveData == b.haveData
    }

    /// Keys in the table.
    public var keyCount: Int { configuration.algorithm == .windowedThroughput ? rates.count : movingAverage.count }

    /// Counts `spans` spans of `key` at `now` and returns the key's sample rate (keep 1 in N).
    public mutating func rate(for key: String, spans: Int, now: UInt64) -> Int { rate(for: key, weight: spans, now: now) }

    /// Counts `weight` (spans; bytes for `byte_budget`) of `key` at `now` and returns the key's
    /// sample rate (keep 1 in N).
    public mutating func rate(for key: String, weight count: Int, now: UInt64) -> Int {
        advance(to: now)
        let weight = Double(count)
        switch configuration.algorithm {
        case .byteBudget:
            if counts[key] != nil || counts.count < configuration.maxKeys { counts[key, default: 0] += weight }
            planIfDue(now: now)
            if !haveData { return configuration.initialSampleRate }
            // A key new since the last plan is kept whole (it is rare so far) while the plan has bytes to give.
            return rates[key] ?? (budget.planned >= 1 ? 1 : Self.nothingRate)
        case .windowedThroughput:
            if buckets.isEmpty || now >= buckets[buckets.count - 1].start + configuration.updateInterval {
                buckets.append((now, [:]))
            }
            let last = buckets.count - 1
            if buckets[last].counts[key] != nil || buckets[last].counts.count < configuration.maxKeys {
                buckets[last].counts[key, default: 0] += weight
            }
            return rates[key] ?? 1
        case .emaDynamic, .emaThroughput:
            if counts[key] != nil || counts.count < configuration.maxKeys {
                counts[key, default: 0] += weight
                burstSum += weight
            }
            if burstThreshold > 0, burstSum >= burstThreshold, intervals >= configuration.burstDetectionDelay {
                // Traffic well above the average: recompute now rather than at the interval's end.
                adjust()
                nextAdjustment = now + configuration.adjustmentInterval
            }
            if !haveData {
                return configuration.algorithm == .emaDynamic ? configuration.goalSampleRate : configuration.initialSampleRate
            }
            return rates[key] ?? 1
        }
    }

    /// The key's rate now, without counting anything.
    public func currentRate(for key: String) -> Int {
        if configuration.algorithm != .windowedThroughput && !haveData {
            return configuration.algorithm == .emaDynamic ? configuration.goalSampleRate : configuration.initialSampleRate
        }
        return rates[key] ?? 1
    }

    /// Runs the interval ends that `now` has passed.
    public mutating func advance(to now: UInt64) {
        let interval = configuration.algorithm == .windowedThroughput ? configuration.updateInterval : configuration.adjustmentInterval
        guard let next = nextAdjustment else {
            nextAdjustment = now + interval
            return
        }
        guard now >= next else { return }
        // One table per interval end; after a long idle stretch the empty ones change nothing.
        let missed = (now - next) / interval
        if configuration.algorithm == .windowedThroughput {
            recomputeWindow(now: now)
        } else if configuration.algorithm == .byteBudget {
            adjustBudget(idle: missed > 0)
        } else {
            adjust()
            intervals += 1 + Int(min(missed, 1_000))
        }
        nextAdjustment = next + (missed + 1) * interval
    }

    /// Folds the interval's counts into the moving average and computes the next table.
    private mutating func adjust() {
        // No traffic: keep the average as it is rather than let it decay through an outage.
        guard !counts.isEmpty else { return }
        foldCounts()
        burstSum = 0
        let next = movingAverage
        let total = next.values.reduce(0) { $0 + max(1, $1) }
        burstThreshold = configuration.burstMultiple > 0 ? total * configuration.burstMultiple : 0
        let goal: Double
        switch configuration.algorithm {
        case .emaDynamic: goal = total / Double(max(1, configuration.goalSampleRate))
        default: goal = configuration.goalThroughputPerSecond * goalShare * Double(configuration.adjustmentInterval) / 1e9
        }
        rates = Self.logShareRates(goal: goal, counts: next)
        haveData = true
    }

    /// The interval's counts into the moving average (`new = weight × count + (1 − weight) × old`;
    /// keys below `age_out_value` forgotten), and a fresh interval.
    private mutating func foldCounts() {
        let alpha = configuration.weight
        let ageOut = configuration.ageOutValue ?? configuration.weight
        var next: [String: Double] = [:]
        for (key, average) in movingAverage {
            let updated = (counts[key] ?? 0) * alpha + (1 - alpha) * average
            if updated >= ageOut { next[key] = updated }
        }
        for (key, count) in counts where movingAverage[key] == nil {
            let updated = count * alpha
            if updated >= ageOut { next[key] = updated }
        }
        movingAverage = next
        counts = [:]
    }

    // MARK: The byte budget

    /// The goal for one interval, in bytes (this member's share of the deployment's).
    public var goalBytesPerInterval: Double {
        configuration.goalBytesPerSecond * goalShare * Double(configuration.adjustmentInterval) / 1e9
    }

    private var floorBytesPerInterval: Double {
        configuration.floorBytesPerSecond * goalShare * Double(configuration.adjustmentInterval) / 1e9
    }

    /// A kept trace's bytes: `mustKeep` when another policy kept it too (it would be kept anyway),
    /// else this sampler's own keep.
    public mutating func account(keptBytes: Int, mustKeep: Bool, now: UInt64) {
        advance(to: now)
        if mustKeep { budget.mustKeep += Double(keptBytes) } else { budget.own += Double(keptBytes) }
    }

    /// An interval's end: the must-keeps it saw decide what the next interval leaves to the sampler.
    private mutating func adjustBudget(idle: Bool) {
        budget.lastMustKeep = idle ? 0 : budget.mustKeep
        budget.lastOwn = idle ? 0 : budget.own
        budget.mustKeep = 0
        budget.own = 0
        budget.checkpoint = 0
        budget.intervals += 1
        let goal = goalBytesPerInterval
        budget.exceeded = max(0, budget.lastMustKeep - goal)
        budget.samplerShare = max(floorBytesPerInterval, goal - budget.lastMustKeep)
        if !counts.isEmpty { foldCounts() }
        budget.planned = budget.samplerShare
        guard !movingAverage.isEmpty else { return }
        rates = Self.budgetRates(goal: budget.samplerShare, counts: movingAverage)
        haveData = true
    }

    /// Plans the rest of the interval again at each of its checkpoints: the bytes left of the goal,
    /// after what was kept so far and the must-keeps expected at their pace so far, shared over each
    /// key's bytes expected at its pace so far. So a surge of errors shrinks the sampler's keeps
    /// within the interval, not one interval late.
    private mutating func planIfDue(now: UInt64) {
        guard let next = nextAdjustment, configuration.adjustmentInterval > 0 else { return }
        let interval = configuration.adjustmentInterval
        let start = next > interval ? next - interval : 0
        guard now > start else { return }
        let checkpoints = UInt64(Self.budgetCheckpointCount)
        let reached = Int(min(checkpoints - 1, (now - start) * checkpoints / interval))
        guard reached > budget.checkpoint, !counts.isEmpty else { return }
        budget.checkpoint = reached
        let elapsed = Double(now - start) / Double(interval)
        let rest = 1 - elapsed
        let expectedMustKeep = budget.mustKeep / elapsed * rest
        let left = goalBytesPerInterval - budget.mustKeep - budget.own - expectedMustKeep
        let goal = max(floorBytesPerInterval * rest, left)
        budget.planned = goal
        rates = Self.budgetRates(goal: goal, counts: counts.mapValues { $0 / elapsed * rest })
        haveData = true
    }

    static var budgetCheckpointCount: Int { DynamicSamplerConfiguration.budgetCheckpoints }

    /// The rate of a key with nothing to give: one trace in a trillion (2^40).
    static let nothingRate = 1 << 40

    /// ``logShareRates(goal:counts:)`` in bytes; with nothing to give, every key gets ``nothingRate``.
    static func budgetRates(goal: Double, counts: [String: Double]) -> [String: Int] {
        guard goal >= 1 else { return counts.mapValues { _ in nothingRate } }
        return logShareRates(goal: goal, counts: counts)
    }

    /// The windowed sampler: the lookback window's counts, the goal split evenly over its keys.
    private mutating func recomputeWindow(now: UInt64) {
        buckets.removeAll { $0.start + configuration.lookback <= now }
        var window: [String: Double] = [:]
        for bucket in buckets { window.merge(bucket.counts, uniquingKeysWith: +) }
        guard !window.isEmpty else {
            rates = [:]
            return
        }
        let perKey = configuration.goalThroughputPerSecond * goalShare * Double(configuration.lookback) / 1e9 / Double(window.count)
        rates = window.mapValues { count in perKey > 0 ? max(1, Int(count / perKey)) : 1 }
        haveData = true
    }

    /// Refinery's allocation: every key gets a share of `goal` kept spans proportional to the log10
    /// of its count (at least one); a key with fewer spans than its share is kept whole (rate 1) and
    /// its unused share goes to the keys after it, taken in sorted order so the result repeats.
    public static func logShareRates(goal: Double, counts: [String: Double]) -> [String: Int] {
        let logSum = counts.values.reduce(0) { $0 + log10(max(1, $1)) }
        let ratio = logSum > 0 ? goal / logSum : .infinity
        var rates: [String: Int] = [:]
        var remaining = counts.count
        var extra = 0.0
        for key in counts.keys.sorted() {
            let count = max(1, counts[key]!)
            var share = max(1, log10(count) * ratio)
            let passed = extra / Double(remaining)
            share += passed
            extra -= passed
            remaining -= 1
            if count <= share {
                rates[key] = 1
                extra += share - count
            } else {
                let rate = (count / share).rounded(.up)
                rates[key] = rate.isFinite ? Int(rate) : 1
                extra += share - count / Double(rates[key]!)
            }
        }
        return rates
    }

    /// The table's state worth keeping over a restart.
    public struct Snapshot: Codable, Sendable, Equatable {
        public var rates: [String: Int]
        public var movingAverage: [String: Double]
        public init(rates: [String: Int], movingAverage: [String: Double]) {
            self.rates = rates
            self.movingAverage = movingAverage
        }
    }

    public var snapshot: Snapshot { Snapshot(rates: rates, movingAverage: movingAverage) }

    /// Starts from a saved table, as Refinery's LoadState does: its rates apply at once.
    public mutating func restore(_ snapshot: Snapshot) {
        rates = snapshot.rates
        movingAverage = snapshot.movingAverage
        haveData = !snapshot.rates.isEmpty
    }
}

/// A trace's sampling key: per key field, the distinct values across the trace's spans (or its root
/// span's, for `root.` fields) in sorted order joined by `•`, the fields joined by `,`; with
/// `use_trace_length`, the span count last.
public enum SamplerKey {
    public static func make(_ trace: TraceData, fields: [(key: AttributeKeyID?, rootOnly: Bool, spanName: Bool)], useTraceLength: Bool) -> String {
        var parts: [String] = []
        parts.reserveCapacity(fields.count + 1)
        for field in fields {
            var values = Set<String>()
            for span in trace.spans where !field.rootOnly || !span.parentSpanID.isValid {
                if field.spanName {
                    values.insert(trace.string(trace.name(of: span)))
                    continue
                }
                guard let key = field.key else { continue }
                for attribute in trace.attributes(of: span) where attribute.key == key {
                    if let text = text(attribute.value, trace) { values.insert(text) }
                    break
                }
            }
            parts.append(values.sorted().joined(separator: "•"))
        }
        if useTraceLength { parts.append(String(trace.spans.count)) }
        return parts.joined(separator: ",")
    }

    static func text(_ value: TraceAttributeValue, _ trace: TraceData) -> String? {
        switch value {
        case .string(let range): trace.string(range)
        case .int(let int): String(int)
        case .double(let double): String(double)
        case .bool(let bool): bool ? "true" : "false"
        case .other: nil
        }
    }
}

/// One adaptive sampler, shared by the shards: its rate table behind a lock taken once per decision.
/// Decisions are consistent by trace id: a trace at rate N is kept when its OTEP 235 randomness R
/// reaches the threshold of probability 1/N, never by a random draw, so a replay or a second stage
/// decides the same.
public final class DynamicSampler: Sendable {
    public let configuration: DynamicSamplerConfiguration
    let fields: [(key: AttributeKeyID?, rootOnly: Bool, spanName: Bool)]
    private let table: Mutex<DynamicRateTable>
    /// The rate each recently kept trace was kept at, for its `ot=th` and `SampleRate`.
    private let keptRates = Mutex<[TraceID: Int]>([:])

    init(configuration: DynamicSamplerConfiguration, selection: AttributeSelection) {
        self.configuration = configuration
        fields = configuration.keyFields.map { field in
            let rootOnly = field.hasPrefix("root.")
            let name = rootOnly ? String(field.dropFirst(5)) : field
            return (name == "name" ? nil : selection.id(of: name), rootOnly, name == "name")
        }
        table = Mutex(DynamicRateTable(configuration: configuration))
    }

    /// The trace's key and rate (counting its spans) and whether it is kept.
    func decide(_ trace: TraceData, now: UInt64) -> (key: String, rate: Int, kept: Bool) {
        let key = SamplerKey.make(trace, fields: fields, useTraceLength: configuration.useTraceLength)
        let weight = configuration.algorithm == .byteBudget ? trace.encodedBytes : trace.spans.count
        let rate = table.withLock { $0.rate(for: key, weight: weight, now: now) }
        let kept = Self.threshold(rate: rate).keeps(trace.samplingRandomness)
        if kept {
            keptRates.withLock { rates in
                if rates.count > 100_000 { rates.removeAll(keepingCapacity: true) }
                rates[trace.traceID] = rate
            }
        }
        return (key, rate, kept)
    }

    /// A kept trace's bytes, for a `byte_budget` sampler (see ``DynamicRateTable/account(keptBytes:mustKeep:now:)``).
    public func account(keptBytes: Int, mustKeep: Bool, now: UInt64) {
        table.withLock { $0.account(keptBytes: keptBytes, mustKeep: mustKeep, now: now) }
    }

    /// A `byte_budget` sampler's figures (nil for the others).
    public var budget: (configuration: DynamicSamplerConfiguration, goalPerInterval: Double, budget: DynamicRateTable.Budget)? {
        guard configuration.algorithm == .byteBudget else { return nil }
        return table.withLock { ($0.configuration, $0.goalBytesPerInterval, $0.budget) }
    }

    /// The trace's key and the rate it would get now, counting nothing (`eval --explain`).
    public func peek(_ trace: TraceData) -> (key: String, rate: Int) {
        let key = SamplerKey.make(trace, fields: fields, useTraceLength: configuration.useTraceLength)
        return (key, table.withLock { $0.currentRate(for: key) })
    }

    /// Runs the interval ends `now` has passed (a snapshot then holds every finished interval).
    public func advance(to now: UInt64) { table.withLock { $0.advance(to: now) } }

    /// The rate a kept trace was kept at (taken once: the kept trace's annotation asks for it).
    public func keptRate(_ traceID: TraceID) -> Int? { keptRates.withLock { $0.removeValue(forKey: traceID) } }

    /// Forgets the rate of a trace this sampler kept but another policy decided.
    func forgetKeptRate(_ traceID: TraceID) {
        keptRates.withLock { rates in if !rates.isEmpty { rates[traceID] = nil } }
    }

    /// Traces whose kept rate waits to be taken (0 once every kept trace is annotated).
    public var pendingKeptRates: Int { keptRates.withLock { $0.count } }

    /// The sampling threshold of rate N: probability 1/N.
    public static func threshold(rate: Int) -> SamplingThreshold { SamplingThreshold(probability: 1 / Double(max(1, rate))) }

    /// This replica's share of a throughput goal.
    public func setGoalShare(_ share: Double) { table.withLock { $0.goalShare = share } }
    public var goalShare: Double { table.withLock { $0.goalShare } }

    /// Keys tracked, and the rates of the `limit` keys with the most spans.
    public func summary(limit: Int) -> (keys: Int, top: [(key: String, rate: Int)]) {
        table.withLock { table in
            let weights = table.configuration.algorithm == .windowedThroughput
                ? table.rates.mapValues(Double.init) : table.movingAverage
            let top = weights.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(limit)
            return (table.keyCount, top.map { ($0.key, table.currentRate(for: $0.key)) })
        }
    }

    public var snapshot: DynamicRateTable.Snapshot { table.withLock { $0.snapshot } }
    public func restore(_ snapshot: DynamicRateTable.Snapshot) { table.withLock { $0.restore(snapshot) } }
}

/// The adaptive samplers' tables, saved beside the store (`DIR/samplers.json`) so a restart decides
/// with what was learned instead of from cold. A table is restored only into a policy of the same
/// name and the same settings.
public struct DynamicSamplerSnapshots: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var settings: String
        public var table: DynamicRateTable.Snapshot
    }
    public var policies: [String: Entry] = [:]

    public init() {}

    /// The tables of `rules`' adaptive samplers.
    public init(of rules: RuleSet) {
        for (name, sampler) in RuleSet.namedSamplers(rules) {
            policies[name] = Entry(settings: "\(sampler.configuration)", table: sampler.snapshot)
        }
    }

    /// Restores the saved tables into `rules`' samplers; returns the names restored.
    @discardableResult
    public func restore(into rules: RuleSet) -> [String] {
        var restored: [String] = []
        for (name, sampler) in RuleSet.namedSamplers(rules) {
            guard let entry = policies[name], entry.settings == "\(sampler.configuration)" else { continue }
            sampler.restore(entry.table)
            restored.append(name)
        }
        return restored
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> DynamicSamplerSnapshots {
        try JSONDecoder().decode(DynamicSamplerSnapshots.self, from: data)
    }
}
