/*
 * The write floor for `tailgate route`: a bare librdkafka producer that writes the messages of a file
 * (made by `bare_consumer ... DUMP`: the router's own output, key and value as it wrote them) to a
 * topic and waits for every delivery report. Nothing is decoded or encoded: the time it takes is what
 * writing those bytes to this cluster costs any router, before it reads or does anything else.
 *
 *   cc -O2 -o bare_producer bare_producer.c $(pkg-config --cflags --libs rdkafka)
 *   ./bare_producer BROKERS TOPIC FILE [property=value ...]
 *
 * Defaults are the router's at-least-once producer (acks=all, idempotence, murmur2_random, linger.ms=5,
 * lz4); the properties override them. Prints one JSON line: messages, bytes, seconds from the first
 * produce to the last delivery report.
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static uint64_t delivered = 0, failed = 0;
static double last = 0;

static void on_delivery(rd_kafka_t *producer, const rd_kafka_message_t *message, void *opaque) {
    (void)producer;
    (void)opaque;
    if (message->err) failed++; else delivered++;
    last = now();
}

static uint32_t read_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s BROKERS TOPIC FILE [property=value ...]\n", argv[0]);
        return 2;
    }
    FILE *file = fopen(argv[3], "rb");
    if (!file) { perror(argv[3]); return 1; }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    uint8_t *data = malloc(size > 0 ? size : 1);
    if (fread(data, 1, size, file) != (size_t)size) { fprintf(stderr, "short read\n"); return 1; }
    fclose(file);

    char error[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[1]);
    set(conf, "client.id", "bare-producer");
    set(conf, "acks", "all");
    set(conf, "enable.idempotence", "true");
    set(conf, "partitioner", "murmur2_random");
    set(conf, "linger.ms", "5");
    set(conf, "compression.codec", "lz4");
    set(conf, "message.max.bytes", "16777216");
    for (int i = 4; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) { fprintf(stderr, "%s: expected property=value\n", argv[i]); return 2; }
        *eq = 0;
        set(conf, argv[i], eq + 1);
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    if (!producer) { fprintf(stderr, "%s\n", error); return 1; }
    rd_kafka_topic_t *topic = rd_kafka_topic_new(producer, argv[2], NULL);

    // Connect and learn the topic's partitions before the clock starts, as a router has by then.
    const struct rd_kafka_metadata *metadata;
    if (rd_kafka_metadata(producer, 0, topic, &metadata, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "no metadata for %s\n", argv[2]);
        return 1;
    }
    rd_kafka_metadata_destroy(metadata);

    // Side by side with a bare read (route.sh's last floor): start when its first message arrives.
    const char *start_signal = getenv("START_AFTER_FILE");
    if (start_signal) {
        struct timespec pause = {0, 100000};
        for (double deadline = now() + 60; access(start_signal, F_OK) != 0; nanosleep(&pause, NULL)) {
            if (now() > deadline) { fprintf(stderr, "%s never appeared\n", start_signal); return 1; }
        }
    }
    uint64_t messages = 0, bytes = 0;
    double first = now();
    for (long at = 0; at + 8 <= size;) {
        uint32_t key_length = read_u32(data + at);
        const uint8_t *key = data + at + 4;
        uint32_t value_length = read_u32(data + at + 4 + key_length);
        const uint8_t *value = data + at + 8 + key_length;
        at += 8 + (long)key_length + value_length;
        // No copy: the file's bytes outlive every delivery.
        while (rd_kafka_produce(topic, RD_KAFKA_PARTITION_UA, 0, (void *)value, value_length, key, key_length, NULL) != 0) {
            if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "produce: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
                return 1;
            }
            rd_kafka_poll(producer, 10);
        }
        rd_kafka_poll(producer, 0);
        messages++;
        bytes += value_length;
    }
    while (delivered + failed < messages) rd_kafka_poll(producer, 50);
    // first and last on CLOCK_MONOTONIC too, comparable with another process's (see bare_consumer.c).
    printf("{\"messages\":%llu,\"bytes\":%llu,\"seconds\":%.3f,\"failed\":%llu,\"first\":%.6f,\"last\":%.6f}\n",
           (unsigned long long)messages, (unsigned long long)bytes, last - first, (unsigned long long)failed, first, last);
    rd_kafka_topic_destroy(topic);
    rd_kafka_destroy(producer);
    free(data);
    return failed ? 1 : 0;
}
