/// A set of 64-bit hashes (already well mixed: FNV-1a of a summary member), open addressing with
/// linear probing over a power-of-two table. What `BlockSummary` collects per kept span, where
/// Swift's `Set` spent most of the store writer's time seeding and running SipHash.
struct HashSet64: Sendable {
    private var slots: [UInt64]
    private var mask: Int
    private var hasZero = false
    private(set) var count = 0

    init(capacity: Int = 64) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    /// Inserts `value`; true when it was not there yet.
    @discardableResult
    mutating func insert(_ value: UInt64) -> Bool {
        if value == 0 {
            defer { hasZero = true }
            if !hasZero { count += 1 }
            return !hasZero
        }
        if (count + 1) * 2 > slots.count { grow() }
        var index = Self.start(value, mask)
        while true {
            let slot = slots[index]
            if slot == value { return false }
            if slot == 0 {
                slots[index] = value
                count += 1
                return true
            }
            index = (index + 1) & mask
        }
    }

    func contains(_ value: UInt64) -> Bool {
        if value == 0 { return hasZero }
        var index = Self.start(value, mask)
        while true {
            let slot = slots[index]
            if slot == value { return true }
            if slot == 0 { return false }
            index = (index + 1) & mask
        }
    }

    /// Every member, in table order.
    func forEach(_ body: (UInt64) -> Void) {
        if hasZero { body(0) }
        for slot in slots where slot != 0 { body(slot) }
    }

    @inline(__always)
    private static func start(_ value: UInt64, _ mask: Int) -> Int {
        // FNV's low bits are its weakest: take the high bits of a multiplicative mix.
        Int(truncatingIfNeeded: (value &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    private mutating func grow() {
        let old = slots
        slots = [UInt64](repeating: 0, count: old.count * 2)
        mask = slots.count - 1
        count = hasZero ? 1 : 0
        for value in old where value != 0 {
            var index = Self.start(value, mask)
            while slots[index] != 0 { index = (index + 1) & mask }
            slots[index] = value
            count += 1
        }
    }
}

/// A map from 64-bit hashes to small non-negative integers (entry indices), open addressing like
/// ``HashSet64``; absent keys read as -1.
struct HashTable64: Sendable {
    private var keys: [UInt64] = [UInt64](repeating: 0, count: 64)
    private var values: [Int32] = [Int32](repeating: -1, count: 64)
    private var count = 0

    subscript(key: UInt64) -> Int {
        get {
            var index = Self.start(key, keys.count - 1)
            while values[index] >= 0 {
                if keys[index] == key { return Int(values[index]) }
                index = (index + 1) & (keys.count - 1)
            }
            return -1
        }
        set {
            if (count + 1) * 2 > keys.count { grow() }
            var index = Self.start(key, keys.count - 1)
            while values[index] >= 0 && keys[index] != key { index = (index + 1) & (keys.count - 1) }
            if values[index] < 0 { count += 1 }
            keys[index] = key
            values[index] = Int32(newValue)
        }
    }

    @inline(__always)
    private static func start(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    private mutating func grow() {
        let oldKeys = keys, oldValues = values
        keys = [UInt64](repeating: 0, count: oldKeys.count * 2)
        values = [Int32](repeating: -1, count: oldKeys.count * 2)
        count = 0
        for (key, value) in zip(oldKeys, oldValues) where value >= 0 { self[key] = Int(value) }
    }
}
