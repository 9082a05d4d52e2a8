#ifndef TAILGATE_CRDKAFKA_SHIM_H
#define TAILGATE_CRDKAFKA_SHIM_H
#include <stddef.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#endif
