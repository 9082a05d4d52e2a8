#ifndef TAILGATE_CZSTD_SHIM_H
#define TAILGATE_CZSTD_SHIM_H
#include <zstd.h>
#endif
