import Foundation
import Storage
import Testing

@Suite struct ZstdCodecTests {
    let sample: [UInt8] = Array(String(repeating: "GET /feed feed-service dogbook.Feed/GetFeed postgres ", count: 400).utf8)

    @Test func roundTripCompressesSpanLikeText() throws {
        let codec = ZstdCodec()
        let frame = codec.compress(sample)
        #expect(frame.count < sample.count / 10)
        #expect(try codec.decompress(frame) == sample)
        // The context is reusable.
        #expect(try codec.decompress(codec.compress([1, 2, 3])) == [1, 2, 3])
    }

    @Test func corruptOrTruncatedFramesAreErrors() {
        let codec = ZstdCodec()
        var frame = codec.compress(sample)
        #expect(throws: StorageError.self) { _ = try codec.decompress(Array(frame.prefix(frame.count / 2))) }
        frame[frame.count / 2] ^= 0xFF
        frame[frame.count / 2 + 1] ^= 0xFF
        #expect(throws: StorageError.self) { _ = try codec.decompress(frame) }
        #expect(throws: StorageError.self) { _ = try codec.decompress(Array("not zstd".utf8)) }
    }

    @Test func sizeLimitIsEnforced() {
        let codec = ZstdCodec()
        #expect(throws: StorageError.self) { _ = try codec.decompress(codec.compress(sample), limit: 100) }
    }
}
