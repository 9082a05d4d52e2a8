public import OTLP

/// Puts the spans of each trace next to each other, for a window about to take one poll's spans.
///
/// A keyed message holds one trace, so a poll of keyed messages already brings each trace's spans
/// together, and the window sizes a new trace once for all of them (``TraceRun``). A message of many
/// traces — an exporter without `partition_traces_by_id`, an SDK batch — groups its spans by service,
/// so each trace comes in pieces, one per service, and its buffers grew piece by piece: a regrowth,
/// a copy and slack per piece, and memory touched for the first time twice over (callgrind and
/// `perf`, session 19: regrowth was 31 % of the page faults of the unkeyed run).
///
/// ``group(_:in:)`` orders the spans so that each trace's are consecutive: stable (a trace's spans in
/// the order they came, traces in the order of their first span), and only when some trace comes in
/// more than one piece — a poll of keyed messages costs a comparison per span and a table probe per
/// trace. Pure; reuses its buffers.
public struct TraceGrouping: Sendable {
    private var pieces = TraceIDTable()
    private var groupOfPosition: [Int32] = []
    private var next: [Int32] = []
    /// After ``group(_:in:)`` returned true: positions in its `indices`, each trace's consecutive.
    public private(set) var order: [Int32] = []

    public init() {}

    /// Whether the spans of `batch` at `indices` need reordering to bring each trace's together; if
    /// so, ``order`` holds the order.
    public mutating func group(_ indices: [Int32], in batch: SpanBatch) -> Bool {
        pieces.removeAll()
        let scattered = indices.withUnsafeBufferPointer { indices in
            batch.spans.withUnsafeBufferPointer { spans in scatteredTrace(indices, spans) }
        }
        guard scattered else { return false }
        // Every trace a group number, in the order of its first span; then a counting sort by group.
        pieces.removeAll()
        groupOfPosition.removeAll(keepingCapacity: true)
        var groups: Int32 = 0
        batch.spans.withUnsafeBufferPointer { spans in
            var previous = TraceID.zero
            var group: Int32 = -1
            for index in indices {
                let id = spans[Int(index)].traceID
                if group < 0 || id != previous {
                    if let known = pieces[id] {
                        group = known
                    } else {
                        group = groups
                        pieces[id] = groups
                        groups += 1
                    }
                    previous = id
                }
                groupOfPosition.append(group)
            }
        }
        next.removeAll(keepingCapacity: true)
        next.append(contentsOf: repeatElement(0, count: Int(groups) + 1))
        for group in groupOfPosition { next[Int(group) + 1] += 1 }
        for group in 1..<next.count { next[group] += next[group - 1] }
        order.removeAll(keepingCapacity: true)
        order.append(contentsOf: repeatElement(0, count: indices.count))
        for (position, group) in groupOfPosition.enumerated() {
            order[Int(next[Int(group)])] = Int32(position)
            next[Int(group)] += 1
        }
        return true
    }

    /// Whether some trace's spans come in more than one piece (a run of its spans, then others, then
    /// its again).
    private mutating func scatteredTrace(_ indices: UnsafeBufferPointer<Int32>, _ spans: UnsafeBufferPointer<SpanRecord>) -> Bool {
        var previous = TraceID.zero
        var first = true
        for index in indices {
            let id = spans[Int(index)].traceID
            guard first || id != previous else { continue }
            if pieces[id] != nil { return true }
            pieces[id] = 0
            previous = id
            first = false
        }
        return false
    }
}
