internal import CZstd

/// zstd compression with reused contexts: the file store compresses blocks of kept spans with it.
/// Not thread-safe; give each writer its own.
public final class ZstdCodec {
    // The C contexts are owned here and freed in deinit; they never leave this type.
    private let compressionContext: OpaquePointer
    private let decompressionContext: OpaquePointer
    /// 1 (fast) … 19 (small); 3 is zstd's default and a good trade for span data.
    public let level: Int32

    public init(level: Int32 = 3) {
        self.level = level
        compressionContext = ZSTD_createCCtx()
        decompressionContext = ZSTD_createDCtx()
        // A content checksum per frame: a flipped bit on disk is an error, never silently wrong spans.
        _ = ZSTD_CCtx_setParameter(compressionContext, ZSTD_c_compressionLevel, level)
        _ = ZSTD_CCtx_setParameter(compressionContext, ZSTD_c_checksumFlag, 1)
    }

    deinit {
        ZSTD_freeCCtx(compressionContext)
        ZSTD_freeDCtx(decompressionContext)
    }

    /// Compresses `input` into one zstd frame (content size recorded, for exact decompression).
    public func compress(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        return [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
            let written = ZSTD_compress2(compressionContext, buffer.baseAddress, bound, input.baseAddress, input.count)
            // Compression into a buffer of compressBound size cannot fail for valid levels.
            count = ZSTD_isError(written) == 0 ? written : 0
        }
    }

    public func compress(_ input: [UInt8]) -> [UInt8] { input.withUnsafeBytes { compress($0) } }

    /// Decompresses one frame; refuses frames without a content size or larger than `limit`.
    public func decompress(_ frame: UnsafeRawBufferPointer, limit: Int = 1 << 30) throws(StorageError) -> [UInt8] {
        let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two largest UInt64 values.
        guard size < UInt64.max - 1 else { throw StorageError(message: "zstd: not a zstd frame with a recorded size") }
        guard size <= UInt64(limit) else { throw StorageError(message: "zstd: frame of \(size) bytes exceeds the \(limit)-byte limit") }
        var failure: String?
        let output = [UInt8](unsafeUninitializedCapacity: Int(size)) { buffer, count in
            let written = ZSTD_decompressDCtx(decompressionContext, buffer.baseAddress, Int(size), frame.baseAddress, frame.count)
            if ZSTD_isError(written) != 0 {
                failure = String(cString: ZSTD_getErrorName(written))
                count = 0
            } else {
                count = written
            }
        }
        if let failure { throw StorageError(message: failure) }
        guard output.count == Int(size) else { throw StorageError(message: "zstd: frame decoded to \(output.count) bytes, header says \(size)") }
        return output
    }

    public func decompress(_ frame: [UInt8], limit: Int = 1 << 30) throws(StorageError) -> [UInt8] {
        let result: Result<[UInt8], StorageError> = frame.withUnsafeBytes { raw in
            do throws(StorageError) { return .success(try decompress(raw, limit: limit)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// The libzstd version linked, e.g. `1.5.4`.
    public static var libraryVersion: String { String(cString: ZSTD_versionString()) }
}
