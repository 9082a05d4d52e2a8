internal import Crdkafka

/// A partition of a topic.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }

    public static func < (a: TopicPartition, b: TopicPartition) -> Bool {
        (a.topic, a.partition) < (b.topic, b.partition)
    }
}

/// Builds and reads `rd_kafka_topic_partition_list_t`; the list never leaves this room.
enum PartitionList {
    /// A new list the caller destroys with `rd_kafka_topic_partition_list_destroy`.
    static func make(_ entries: [(TopicPartition, Int64?)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(max(entries.count, 1)))!
        for (partition, offset) in entries {
            let element = rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)!
            if let offset { element.pointee.offset = offset }
        }
        return list
    }

    static func partitions(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>?) -> [TopicPartition] {
        guard let list, let elements = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { TopicPartition(String(cString: elements[$0].topic), elements[$0].partition) }
    }

    /// Entries that carry an error, as (partition, error).
    static func errors(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [(TopicPartition, KafkaError)] {
        guard let elements = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).compactMap { i in
            let element = elements[i]
            guard element.err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
            let partition = TopicPartition(String(cString: element.topic), element.partition)
            return (partition, KafkaError(element.err, "\(partition)"))
        }
    }
}
