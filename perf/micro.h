/* micro.h — bodies of the micro benchmarks (micro.c), registered by micro_shim.cc.
 * They call plain malloc/free so that LD_PRELOAD decides which allocator is measured. */
#ifndef CGC_PERF_MICRO_H
#define CGC_PERF_MICRO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* iters times: malloc(size), touch, free. */
void micro_pairs(size_t size, long iters);

/* iters times: allocate n blocks of `size`, then free them (in allocation order). */
void micro_batch(size_t size, size_t n, long iters);

/* A second thread frees what this thread allocates: `items` blocks of `size` pass through
 * a single-producer/single-consumer ring.  Returns when all are freed. */
void micro_prodcons(size_t size, long items);

/* iters times: grow one buffer from 0 to `limit` bytes by `step` bytes with realloc. */
void micro_realloc_grow(size_t step, size_t limit, long iters);

#ifdef __cplusplus
}
#endif
#endif
