#ifndef TAILGATE_CZLIB_SHIM_H
#define TAILGATE_CZLIB_SHIM_H
#include <zlib.h>
/* deflateInit2 is a macro; Swift calls this instead. windowBits 31 = gzip framing. */
static inline int tailgate_deflate_init_gzip(z_stream *stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
}
static inline int tailgate_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 31);
}
#endif
