/* cgc.h — the public interface of cgc, a concurrent garbage-collected allocator.
 *
 * Two heaps share one allocator:
 *   - the explicit-free heap: cgc_malloc & co. behave exactly like the C library's
 *     functions (errno, alignment, NULL on failure). Loaded with LD_PRELOAD, libcgc.so
 *     also provides malloc/free/... under their standard names.
 *   - the collected heap (cgc_alloc & co.): declared here, implemented by the collector.
 *
 * Everything not declared in this file (and <cgc/barrier.h>) is internal.
 * Thread safety: every function may be called from any thread at any time, including
 * before cgc_init() (which then runs implicitly).
 */
#ifndef CGC_H
#define CGC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CGC_API __attribute__((visibility("default")))
#define CGC_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#else
#define CGC_API
#define CGC_MALLOC_ATTR
#endif

/* ---- lifecycle ------------------------------------------------------------------------ */
CGC_API void cgc_init(void); /* idempotent; implicit on first use */

/* ---- explicit-free heap (same semantics as the C library) ----------------------------- */
CGC_API CGC_MALLOC_ATTR void *cgc_malloc(size_t n);
CGC_API CGC_MALLOC_ATTR void *cgc_calloc(size_t count, size_t n);
CGC_API void *cgc_realloc(void *p, size_t n);
CGC_API void *cgc_reallocarray(void *p, size_t count, size_t n);
CGC_API void cgc_free(void *p);
CGC_API int cgc_posix_memalign(void **out, size_t align, size_t n);
CGC_API CGC_MALLOC_ATTR void *cgc_aligned_alloc(size_t align, size_t n);
CGC_API CGC_MALLOC_ATTR void *cgc_memalign(size_t align, size_t n);
CGC_API size_t cgc_usable_size(const void *p); /* 0 for NULL or a pointer cgc does not own */

/* Return every free page to the OS now (instead of after the decay interval).
 * Returns the number of bytes released by this call. */
CGC_API size_t cgc_release_memory(void);

/* ---- statistics ----------------------------------------------------------------------- */
#define CGC_STATS_VERSION 1
typedef struct cgc_stats {
    uint32_t version;          /* CGC_STATS_VERSION of the library that filled it */
    uint32_t size;             /* sizeof(cgc_stats) of the library that filled it */
    uint64_t mapped_bytes;     /* address space reserved from the OS (arenas) */
    uint64_t committed_bytes;  /* mapped minus released: what may be resident */
    uint64_t released_bytes;   /* free pages returned to the OS (madvise) and not reused */
    uint64_t span_bytes;       /* bytes in spans in use (small-object spans + large) */
    uint64_t free_page_bytes;  /* bytes in free page runs (released or not) */
    uint64_t large_bytes;      /* bytes in large-object spans */
    uint64_t malloc_count;     /* allocations served (all threads, approximate while running) */
    uint64_t free_count;       /* frees served */
    uint64_t remote_free_count;/* frees of blocks owned by another thread's cache */
    uint64_t large_count;      /* large allocations */
    uint64_t threads;          /* thread caches created */
    uint64_t scavenged_bytes;  /* total bytes ever released by the scavenger */
    uint64_t errors;           /* double/invalid frees reported */
} cgc_stats;
CGC_API void cgc_get_stats(cgc_stats *out);
/* Print the statistics (one block of lines) to stderr. CGC_STATS=1 does this at exit. */
CGC_API void cgc_print_stats(void);

#ifdef __cplusplus
}
#endif
#endif /* CGC_H */
