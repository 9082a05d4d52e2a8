import Synchronization

/// A token bucket on an injected clock (nanoseconds): `rate` tokens per second, at most `capacity`.
/// Shared by the shards that decide in parallel, hence the lock — taken once per decision, never
/// per span.
final class TokenBucket: Sendable {
    private struct State {
        var tokens: Double
        var last: UInt64?
    }

    let rate: Double
    let capacity: Double
    private let state: Mutex<State>

    init(rate: Double, capacity: Double) {
        self.rate = rate
        self.capacity = capacity
        state = Mutex(State(tokens: capacity, last: nil))
    }

    /// Takes `cost` tokens if there are that many; returns whether it did.
    func take(_ cost: Double, now: UInt64) -> Bool {
        state.withLock { state in
            if let last = state.last, now > last {
                state.tokens = min(capacity, state.tokens + Double(now - last) / 1e9 * rate)
            }
            state.last = max(now, state.last ?? now)
            guard state.tokens >= cost else { return false }
            state.tokens -= cost
            return true
        }
    }
}

/// The composite policy's per-second span budgets, as the collector counts them: every sub-policy
/// has its allocation, the counters restart each second of the (injected) clock.
final class CompositeBudget: Sendable {
    private struct State {
        var second: UInt64 = .max
        var used: [Int64]
    }

    let allocated: [Int64]
    let maxTotal: Int64
    private let state: Mutex<State>

    init(allocated: [Int64], maxTotal: Int64) {
        self.allocated = allocated
        self.maxTotal = maxTotal
        state = Mutex(State(used: Array(repeating: 0, count: allocated.count)))
    }

    /// Whether sub-policy `index` may take `spans` more this second (and takes them if so).
    func take(_ spans: Int64, for index: Int, now: UInt64) -> Bool {
        state.withLock { state in
            let second = now / 1_000_000_000
            if state.second != second {
                state.second = second
                for i in state.used.indices { state.used[i] = 0 }
            }
            let wouldBe = state.used[index] + spans
            guard wouldBe <= allocated[index], wouldBe <= maxTotal else { return false }
            state.used[index] = wouldBe
            return true
        }
    }
}

/// Remembers regex results for attribute values (the collector's `cache_max_size`), bounded, with
/// the oldest entries forgotten first.
final class RegexResultCache: Sendable {
    private struct State {
        var results: [String: Bool] = [:]
        var order: [String] = []
        var next = 0
    }

    private let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = max(1, capacity) }

    func result(for value: String, compute: () -> Bool) -> Bool {
        if let known = state.withLock({ $0.results[value] }) { return known }
        let result = compute()
        state.withLock { state in
            if state.order.count < capacity {
                state.order.append(value)
            } else {
                state.results[state.order[state.next]] = nil
                state.order[state.next] = value
                state.next = (state.next + 1) % capacity
            }
            state.results[value] = result
        }
        return result
    }
}
