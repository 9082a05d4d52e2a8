/*
 * The baseline of the end-to-end harness: a bare librdkafka consumer-group member that reads a topic
 * to its end and does nothing with the messages but count them and touch every byte (a checksum),
 * with the same fetch settings and the same batch API (rd_kafka_consume_batch_queue) as tailgate.
 * The time it takes is the Kafka-bound floor tailgate is measured against.
 *
 *   cc -O2 -o bare_consumer bare_consumer.c $(pkg-config --cflags --libs rdkafka)
 *   ./bare_consumer BROKERS TOPIC GROUP [DUMP]
 *
 * With DUMP, every message's key and value are also written to that file (little-endian u32 length,
 * bytes; key then value) for `bare_producer` to write again: the route benchmark's write floor.
 *
 * Prints one JSON line: messages, bytes, seconds from the first message to the end of every partition.
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char error[512];
    if (rd_kafka_conf_set(conf, key, value, error, sizeof error) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", key, error);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s BROKERS TOPIC GROUP [DUMP]\n", argv[0]);
        return 2;
    }
    FILE *dump = NULL;
    if (argc == 5 && !(dump = fopen(argv[4], "wb"))) {
        perror(argv[4]);
        return 1;
    }
    char error[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[1]);
    set(conf, "group.id", argv[3]);
    set(conf, "client.id", "bare-consumer");
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "enable.auto.commit", "true");
    set(conf, "enable.auto.offset.store", "true");
    set(conf, "enable.partition.eof", "true");
    set(conf, "fetch.wait.max.ms", "100");
    set(conf, "queued.max.messages.kbytes", "65536");
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    if (!consumer) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, argv[2], RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(consumer);

    enum { batch = 2048 };
    rd_kafka_message_t *messages[batch];
    uint64_t count = 0, bytes = 0, checksum = 0;
    int partitions = -1, at_end = 0;
    double first = 0, last = 0;
    while (partitions < 0 || at_end < partitions) {
        // rd_kafka_consume_batch_queue returns when the batch is full or the wait is over: with a
        // long wait the last, partial batch of the topic sat out the whole wait before it was timed
        // (a 500 ms wait added ~0.5 s to every bare read here until 2026-12-03, and with few large
        // messages it timed only the checksum loop). 10 ms bounds that error to 10 ms.
        ssize_t n = rd_kafka_consume_batch_queue(queue, 10, messages, batch);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *message = messages[i];
            if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                at_end++;
                if (partitions < 0) {
                    rd_kafka_topic_partition_list_t *assigned = NULL;
                    rd_kafka_assignment(consumer, &assigned);
                    partitions = assigned ? assigned->cnt : 0;
                    if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
                }
            } else if (!message->err) {
                if (!first) {
                    first = now();
                    // For the write floor read side by side: tells a waiting bare producer to start.
                    const char *signal = getenv("FIRST_MESSAGE_FILE");
                    if (signal) {
                        FILE *file = fopen(signal, "w");
                        if (file) fclose(file);
                    }
                }
                const uint8_t *payload = message->payload;
                for (size_t j = 0; j < message->len; j += 64) checksum += payload[j];
                count++;
                bytes += message->len;
                if (dump) {
                    uint32_t lengths[2] = {(uint32_t)message->key_len, (uint32_t)message->len};
                    fwrite(&lengths[0], 4, 1, dump);
                    fwrite(message->key, 1, message->key_len, dump);
                    fwrite(&lengths[1], 4, 1, dump);
                    fwrite(message->payload, 1, message->len, dump);
                }
                last = now();
            }
            rd_kafka_message_destroy(message);
        }
    }
    // first and last on CLOCK_MONOTONIC too, comparable with another process's (see bare_producer.c).
    printf("{\"messages\":%llu,\"bytes\":%llu,\"seconds\":%.3f,\"checksum\":%llu,\"first\":%.6f,\"last\":%.6f}\n",
           (unsigned long long)count, (unsigned long long)bytes, last - first, (unsigned long long)checksum, first, last);
    if (dump) fclose(dump);
    rd_kafka_queue_destroy(queue);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    return 0;
}
