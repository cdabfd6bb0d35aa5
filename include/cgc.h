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

/* ---- collected heap ---------------------------------------------------------------------
 * Memory is zeroed and never passed to free(). An object stays alive while a pointer to
 * it (or into it) is held in a root: a registered thread's stack or registers or static
 * TLS, a range added with cgc_add_roots, the data/bss of a loaded module (CGC_ROOTS=auto,
 * the default), or another live collected object's pointer words.
 * THE ROOTS RULE: memory from malloc() is not scanned. A collected pointer kept only in a
 * malloc'd block (or in memory from mmap) is invisible to the collector: register that memory
 * with cgc_add_roots, or keep the pointer in collected memory.
 * Every thread that touches the collected heap must be registered (cgc_thread_register);
 * the main thread, and the thread that first uses the collector, are registered for you. */
CGC_API CGC_MALLOC_ATTR void *cgc_alloc(size_t n);      /* scanned conservatively */
CGC_API CGC_MALLOC_ATTR void *cgc_alloc_leaf(size_t n); /* holds no pointers; never scanned */
typedef struct cgc_type {
    size_t size;            /* bytes of one object */
    size_t nwords;          /* words covered by ptrmap */
    const uint64_t *ptrmap; /* bit i set: word i holds a pointer */
    const char *name;       /* for traces and error messages; may be NULL */
} cgc_type;
/* Typed objects: only the words set in the type's pointer map are scanned. The type must
 * outlive every object of that type. */
CGC_API CGC_MALLOC_ATTR void *cgc_alloc_typed(const cgc_type *t);
CGC_API CGC_MALLOC_ATTR void *cgc_alloc_array(const cgc_type *elem, size_t count);

/* roots and threads */
CGC_API void cgc_add_roots(void *start, size_t len);
CGC_API void cgc_remove_roots(void *start);
CGC_API int cgc_thread_register(void); /* 0 on success (also if already registered) */
CGC_API void cgc_thread_unregister(void);
CGC_API void cgc_blocking_enter(void); /* about to block: the collector scans without a signal */
CGC_API void cgc_blocking_leave(void);
CGC_API void cgc_safepoint(void);

/* write barrier: every pointer store into collected memory or a registered root range goes
 * through cgc_store / CGC_STORE (inline fast path in <cgc/barrier.h>, included below);
 * cgc_memmove copies memory that may hold such pointers (n bytes, overlap allowed). */
CGC_API void cgc_store(void **slot, void *value);
#define CGC_STORE(lvalue, value) cgc_store((void **)&(lvalue), (void *)(value))
CGC_API void *cgc_memmove(void *dst, const void *src, size_t n);

/* control */
CGC_API void cgc_collect(void);               /* full cycle; returns when it is done */
CGC_API int cgc_set_gc_percent(int pct);      /* returns previous; < 0 disables automatic cycles */
CGC_API size_t cgc_set_memory_limit(size_t bytes); /* returns previous; SIZE_MAX = none */

/* finalizers and weak handles */
CGC_API void cgc_set_finalizer(void *obj, void (*fn)(void *obj, void *arg), void *arg);
CGC_API int cgc_run_finalizers(void); /* runs queued finalizers; returns how many */
typedef struct cgc_weak cgc_weak;
CGC_API cgc_weak *cgc_weak_new(void *obj); /* the handle is itself collected */
CGC_API void *cgc_weak_get(const cgc_weak *w);

/* ---- statistics ----------------------------------------------------------------------- */
#define CGC_STATS_VERSION 4
#define CGC_STATS_PAUSES 256
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
    /* collected heap (version 2) */
    uint64_t gc_cycles;        /* completed collections */
    uint64_t gc_heap_bytes;    /* bytes in collected objects' slots (live + not yet swept) */
    uint64_t gc_live_bytes;    /* bytes marked by the last collection */
    uint64_t gc_goal_bytes;    /* heap size at which the next cycle starts */
    uint64_t gc_freed_objects; /* objects reclaimed by the last collection */
    uint64_t gc_freed_total;   /* objects reclaimed since start */
    uint64_t gc_pause_total_ns;/* sum of all stops of the world (each: from the request to
                                  the restart, i.e. time-to-stop + stopped time) */
    uint64_t gc_pause_max_ns;  /* longest stop */
    uint64_t gc_pauses_ns[CGC_STATS_PAUSES]; /* last stops, ring: [gc_stops % 256] is next */
    uint64_t gc_finalizers_run;
    /* concurrent collector (version 3) */
    uint64_t gc_stops;             /* stops of the world (one per concurrent cycle — stop 1
                                      is a handshake, counted in gc_hold_max_ns —, one in
                                      stop-the-world mode, more if mark termination retried) */
    uint64_t gc_stop_wait_total_ns;/* part of gc_pause_total_ns spent waiting for threads to stop */
    uint64_t gc_stop_wait_max_ns;
    uint64_t gc_hold_max_ns;       /* longest single-thread hold (stack scan, handshake) */
    uint64_t gc_assist_ns;         /* time allocating threads spent marking (assists) */
    uint64_t gc_worker_ns;         /* time the background worker spent marking */
    /* leak mode, CGC_LEAKS (version 3) */
    uint64_t leak_cycles;          /* leak checks completed */
    uint64_t leak_lost_blocks;     /* blocks found lost by the last check */
    uint64_t leak_lost_bytes;      /* their bytes (as requested) */
    uint64_t leak_freed_blocks;    /* lost blocks freed since start (CGC_LEAKS=collect) */
    uint64_t leak_freed_bytes;
    uint64_t leak_cycles_given_up; /* checks abandoned (a thread could not be stopped) */
    /* version 4 */
    uint64_t gc_hold_held_max_ns;  /* longest part of a hold after the thread answered: what
                                      a held thread itself lost (gc_hold_max_ns includes the
                                      wait for it to run its handler) */
} cgc_stats;
CGC_API void cgc_get_stats(cgc_stats *out);
/* Print the statistics (one block of lines) to stderr. CGC_STATS=1 does this at exit. */
CGC_API void cgc_print_stats(void);

#ifdef __cplusplus
}
#endif
#include "cgc/barrier.h"
#endif /* CGC_H */
