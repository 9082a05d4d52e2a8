#ifndef TAILGATE_CRDKAFKA_SHIM_H
#define TAILGATE_CRDKAFKA_SHIM_H
#include <stddef.h>
#include <sys/types.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* rd_kafka_producev is variadic, which Swift cannot call. This wrapper returns the error code
 * directly, so callers never read the thread-local rd_kafka_last_error(). The payload is copied
 * (RD_KAFKA_MSG_F_COPY) unless `copy` is 0: then it must stay valid until the message's delivery
 * report. On success librdkafka owns `headers` (may be NULL). The key is always copied. */
static inline rd_kafka_resp_err_t tailgate_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                   const void *key, size_t key_len, const void *value,
                                                   size_t value_len, rd_kafka_headers_t *headers,
                                                   void *opaque, int copy) {
    int flags = copy ? RD_KAFKA_MSG_F_COPY : 0;
    if (headers) {
        return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(headers),
                                 RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    }
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}
#endif
