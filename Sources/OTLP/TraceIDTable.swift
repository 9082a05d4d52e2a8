/// A map from trace id to a slot number, by open addressing: linear probing over one flat array,
/// backward-shift deletion (no tombstones), load at most 1/2. The window's index and the router's
/// trace groups: looked up once per span, so it skips `Dictionary`'s per-lookup SipHash (trace ids
/// are mixed once with SplitMix64, the routing hash: ``TraceID/mixed``) and its per-entry metadata.
/// Inlinable: the window's hot path is in another module.
public struct TraceIDTable: Sendable {
    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var id: TraceID
        /// Slot + 1; 0 marks an empty bucket.
        @usableFromInline var value: UInt32

        @inlinable init(id: TraceID, value: UInt32) {
            self.id = id
            self.value = value
        }
    }

    @usableFromInline var buckets: [Entry]
    @usableFromInline var mask: Int
    @usableFromInline var entries = 0
    /// Ids in the table.
    public var count: Int { entries }

    public init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        buckets = Array(repeating: Entry(id: .zero, value: 0), count: size)
        mask = size - 1
    }

    @inlinable @inline(__always)
    func home(_ id: TraceID) -> Int { Int(truncatingIfNeeded: id.mixed) & mask }

    @inlinable
    public subscript(id: TraceID) -> Int32? {
        get {
            var i = home(id)
            while true {
                let entry = buckets[i]
                if entry.value == 0 { return nil }
                if entry.id == id { return Int32(entry.value - 1) }
                i = (i + 1) & mask
            }
        }
        set {
            if let newValue { insert(id, newValue) } else { remove(id) }
        }
    }

    @inlinable
    mutating func insert(_ id: TraceID, _ slot: Int32) {
        if (entries + 1) * 2 > buckets.count { grow() }
        var i = home(id)
        while buckets[i].value != 0 {
            if buckets[i].id == id {
                buckets[i].value = UInt32(slot) + 1
                return
            }
            i = (i + 1) & mask
        }
        buckets[i] = Entry(id: id, value: UInt32(slot) + 1)
        entries += 1
    }

    @inlinable
    mutating func remove(_ id: TraceID) {
        var i = home(id)
        while true {
            if buckets[i].value == 0 { return }
            if buckets[i].id == id { break }
            i = (i + 1) & mask
        }
        // Backward shift: pull later entries of the run into the hole when their home allows it.
        var hole = i
        var j = (i + 1) & mask
        while buckets[j].value != 0 {
            let h = home(buckets[j].id)
            // Movable when its home is not in (hole, j] cyclically.
            let distanceToJ = (j - h) & mask
            let distanceToHole = (j - hole) & mask
            if distanceToJ >= distanceToHole {
                buckets[hole] = buckets[j]
                hole = j
            }
            j = (j + 1) & mask
        }
        buckets[hole] = Entry(id: .zero, value: 0)
        entries -= 1
    }

    /// Empties the table, keeping its buckets.
    @inlinable
    public mutating func removeAll() {
        guard entries > 0 else { return }
        for i in buckets.indices { buckets[i].value = 0 }
        entries = 0
    }

    @usableFromInline
    mutating func grow() {
        let old = buckets
        buckets = Array(repeating: Entry(id: .zero, value: 0), count: old.count * 2)
        mask = buckets.count - 1
        entries = 0
        for entry in old where entry.value != 0 { insert(entry.id, Int32(entry.value - 1)) }
    }
}
