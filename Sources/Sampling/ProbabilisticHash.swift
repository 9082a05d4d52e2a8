public import OTLP

/// The collector's probabilistic policy, bit for bit: FNV-1a 64 over the salt's bytes then the 16
/// trace-id bytes, kept when the hash ≤ MaxUint64 × percentage / 100 — the threshold computed as Go's
/// `big.Float` does (64-bit mantissa, round to nearest even, then truncation), so a fleet mixing
/// tailgate and collectors keeps the same traces.
public enum ProbabilisticHash {
    public static let defaultSalt = "default-hash-seed"

    public static func hash(salt: String, traceID: TraceID) -> UInt64 {
        hash(seed: seed(salt: salt), traceID: traceID)
    }

    /// The hash's state after the salt: what a policy computes once, at load.
    public static func seed(salt: String) -> UInt64 {
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in salt.utf8 {
            hash ^= UInt64(byte)
            hash &*= 1_099_511_628_211
        }
        return hash
    }

    /// ``hash(salt:traceID:)`` from the salt's ``seed(salt:)``.
    public static func hash(seed: UInt64, traceID: TraceID) -> UInt64 {
        var hash = seed
        for shift in stride(from: 56, through: 0, by: -8) {
            hash ^= (traceID.high >> UInt64(shift)) & 0xFF
            hash &*= 1_099_511_628_211
        }
        for shift in stride(from: 56, through: 0, by: -8) {
            hash ^= (traceID.low >> UInt64(shift)) & 0xFF
            hash &*= 1_099_511_628_211
        }
        return hash
    }

    /// `uint64(MaxUint64 × ratio)` as computed with Go's big.Float at 64-bit precision.
    public static func threshold(samplingPercentage: Double) -> UInt64 {
        let ratio = samplingPercentage / 100
        guard ratio > 0, ratio.isFinite else { return 0 }
        guard ratio < 1 else { return .max }
        // ratio = significand × 2^exponent, significand an integer below 2^53.
        let significand = UInt128(ratio.significandBitPattern | (ratio.isNormal ? 1 << 52 : 0))
        let exponent = Int(ratio.exponent) - 52
        var product = UInt128(UInt64.max) * significand  // exact, < 2^117
        // Round to 64 significant bits, nearest even (big.Float's default mode).
        let width = 128 - product.leadingZeroBitCount
        if width > 64 {
            let shift = width - 64
            let remainder = product & ((1 << UInt128(shift)) - 1)
            let half = UInt128(1) << UInt128(shift - 1)
            product >>= UInt128(shift)
            if remainder > half || (remainder == half && product & 1 == 1) { product += 1 }
            product <<= UInt128(shift)
        }
        // Truncate toward zero (big.Float.Uint64).
        let value = exponent < 0 ? product >> UInt128(-exponent) : product << UInt128(exponent)
        return value > UInt128(UInt64.max) ? .max : UInt64(value)
    }
}
