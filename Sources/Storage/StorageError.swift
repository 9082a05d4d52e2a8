/// Every failure the Storage module reports — the file store, zstd, the OTLP exporter's and the
/// Kafka sink's configuration — as one type, with a message that names the file, endpoint or flag.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }

    public init(message: String) {
        self.message = message
    }
}
