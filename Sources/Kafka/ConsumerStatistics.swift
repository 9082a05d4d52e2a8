import Foundation

/// The part of librdkafka's statistics (`statistics.interval.ms`) the engine exposes: consumer lag
/// and how full librdkafka's prefetch queue is.
public struct ConsumerStatistics: Sendable, Equatable {
    /// Messages between the committed/consumed position and the partition's high watermark, per
    /// assigned partition; partitions whose lag librdkafka does not know yet are absent.
    public var lag: [TopicPartition: Int64]
    /// Bytes fetched and not yet handed to the application: librdkafka's consumer queue, which it
    /// stops filling at `queued.max.messages.kbytes` (nil when no partition reported it). Every
    /// partition's `fetchq_size` names this one queue (their fetch queues forward to it), so it is
    /// their maximum, not their sum.
    public var prefetchedBytes: Int64?

    public init(lag: [TopicPartition: Int64], prefetchedBytes: Int64? = nil) {
        self.lag = lag
        self.prefetchedBytes = prefetchedBytes
    }

    /// Parses librdkafka's statistics JSON; nil when it is not that.
    public init?(json: UnsafeRawBufferPointer) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any],
            let topics = object["topics"] as? [String: Any]
        else { return nil }
        var lag: [TopicPartition: Int64] = [:]
        var prefetched: Int64?
        for (topic, value) in topics {
            guard let partitions = (value as? [String: Any])?["partitions"] as? [String: Any] else { continue }
            for (key, partitionValue) in partitions {
                guard let partition = Int32(key), partition >= 0, let fields = partitionValue as? [String: Any] else { continue }
                if let queued = (fields["fetchq_size"] as? NSNumber)?.int64Value, queued >= 0 {
                    prefetched = max(prefetched ?? 0, queued)
                }
                guard let consumerLag = (fields["consumer_lag"] as? NSNumber)?.int64Value, consumerLag >= 0 else { continue }
                lag[TopicPartition(topic, partition)] = consumerLag
            }
        }
        self.lag = lag
        self.prefetchedBytes = prefetched
    }
}
