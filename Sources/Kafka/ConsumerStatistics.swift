import Foundation

/// The part of librdkafka's statistics (`statistics.interval.ms`) the engine exposes: consumer lag.
public struct ConsumerStatistics: Sendable, Equatable {
    /// Messages between the committed/consumed position and the partition's high watermark, per
    /// assigned partition; partitions whose lag librdkafka does not know yet are absent.
    public var lag: [TopicPartition: Int64]

    public init(lag: [TopicPartition: Int64]) { self.lag = lag }

    /// Parses librdkafka's statistics JSON; nil when it is not that.
    public init?(json: UnsafeRawBufferPointer) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any],
            let topics = object["topics"] as? [String: Any]
        else { return nil }
        var lag: [TopicPartition: Int64] = [:]
        for (topic, value) in topics {
            guard let partitions = (value as? [String: Any])?["partitions"] as? [String: Any] else { continue }
            for (key, partitionValue) in partitions {
                guard let partition = Int32(key), partition >= 0,
                    let fields = partitionValue as? [String: Any],
                    let consumerLag = (fields["consumer_lag"] as? NSNumber)?.int64Value, consumerLag >= 0
                else { continue }
                lag[TopicPartition(topic, partition)] = consumerLag
            }
        }
        self.lag = lag
    }
}
