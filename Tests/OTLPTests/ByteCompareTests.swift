@testable import OTLP
import Testing

/// `memcmpEqual` (keys, resources and scopes are told apart with it) against Swift's own array
/// equality: every length from 0 to 100 bytes, equal, and different in one byte at every position.
@Suite struct ByteCompareTests {
    @Test func agreesWithArrayEqualityAtEveryLengthAndPosition() {
        var generator = SystemRandomNumberGenerator()
        for count in 0...100 {
            let a = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var cases: [[UInt8]] = [a]
            for position in 0..<count {
                var b = a
                b[position] ^= 1 << UInt8(position % 8)
                cases.append(b)
            }
            for b in cases {
                let equal = a.withUnsafeBytes { x in
                    b.withUnsafeBytes { y in memcmpEqual(x.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, y.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count) }
                }
                #expect(equal == (a == b), "\(count) bytes")
            }
        }
    }
}
