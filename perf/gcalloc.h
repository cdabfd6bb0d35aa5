/* gcalloc.h — the allocator layer of the GC benchmarks (gcbench.c, binarytrees.c, gclive.c).
 *
 * The same benchmark source is compiled three ways; exactly one macro picks the heap:
 *   -DUSE_CGC     cgc's collected heap: nodes from cgc_alloc_typed (only the two pointer
 *                 words are scanned; -DGA_CGC_CONSERVATIVE: cgc_alloc, for comparison),
 *                 numbers from cgc_alloc_leaf, pointer stores into
 *                 collected objects through the write barrier (CGC_STORE) once
 *                 <cgc/barrier.h> exists, threads registered with cgc_thread_register.
 *   -DUSE_BDW     the Boehm GC (libgc): GC_MALLOC / GC_MALLOC_ATOMIC, threads registered
 *                 with GC_register_my_thread.
 *   -DUSE_MALLOC  plain malloc/free: the benchmark frees every node of a tree it drops
 *                 (ga_free; GA_EXPLICIT_FREE tells the benchmark to walk and free).
 *
 * ga_report() prints the variant's collector statistics as the LAST line on stderr, in a
 * form perf/gc-compare parses:
 *     gcstats variant=cgc cycles=N pause_total_ms=X pause_max_ms=Y
 * A "pause" is a stop of the program's threads: cgc's own accounting (gc_pause_*_ns);
 * for Boehm the time from GC_EVENT_PRE_STOP_WORLD to GC_EVENT_POST_START_WORLD, measured
 * with clock_gettime in the collection-event callback (START..END if the library never
 * reports stop-world events).  malloc prints zeros.
 *
 * Every pointer store into a collected object (a node's left/right, a ga_ptrs array slot)
 * goes through GA_STORE(lvalue, value): CGC_STORE for cgc once the barrier header exists,
 * a plain store otherwise.
 *
 * For perf/pause-compare, the Boehm variant also logs every stop and ga_report prints them,
 * just before the gcstats line:
 *     gcpauses variant=bdw n=N us=P1,P2,...      (microseconds, the first GA_PAUSE_LOG stops)
 * cgc's stops are read from its CGC_TRACE=1 lines instead (every cycle, however many).
 */
#ifndef PERF_GCALLOC_H
#define PERF_GCALLOC_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(USE_CGC) + defined(USE_BDW) + defined(USE_MALLOC) != 1
#error "define exactly one of USE_CGC, USE_BDW, USE_MALLOC"
#endif

static inline uint64_t ga_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void ga_oom(const char *what)
{
    int e = errno;
    fprintf(stderr, "%s returned NULL: %s\n", what, strerror(e));
    exit(3);
}

/* ---- cgc ------------------------------------------------------------------------------ */
#if defined(USE_CGC)
#include <cgc.h>
#if defined(__has_include)
#if __has_include(<cgc/barrier.h>)
#include <cgc/barrier.h>
#endif
#endif

#define GA_NAME "cgc"
#define GA_EXPLICIT_FREE 0
#ifdef CGC_STORE
#define GA_STORE(lvalue, value) CGC_STORE(lvalue, value)
#else
/* No barrier header yet: a plain store (correct only while marking stops the world). */
#define GA_STORE(lvalue, value) ((lvalue) = (value))
#endif

static const uint64_t ga_node_ptrmap[1] = {0x3}; /* words 0 and 1: left, right */
static cgc_type ga_node_type = {0, 2, ga_node_ptrmap, "node"};

/* Nodes begin with two pointer words (left, right); anything after them holds no pointer. */
static inline void ga_init(size_t node_size)
{
    cgc_init();
    ga_node_type.size = node_size;
}
static inline void *ga_node(void)
{
#ifdef GA_CGC_CONSERVATIVE /* for comparison: no type header, every word scanned */
    void *p = cgc_alloc(ga_node_type.size);
#else
    void *p = cgc_alloc_typed(&ga_node_type);
#endif
    if (!p) ga_oom("cgc_alloc_typed");
    return p;
}
static inline void *ga_leaf(size_t n)
{
    void *p = cgc_alloc_leaf(n);
    if (!p) ga_oom("cgc_alloc_leaf");
    return p;
}
/* An array of n pointers to collected objects, all NULL (scanned conservatively: every
 * word is a pointer anyway). */
static inline void *ga_ptrs(size_t n)
{
    void **p = cgc_alloc(n * sizeof(void *));
    if (!p) ga_oom("cgc_alloc");
    for (size_t i = 0; i < n; i++) GA_STORE(p[i], (void *)NULL);
    return p;
}
static inline void ga_free(void *p) { (void)p; }
static inline void ga_thread_begin(void)
{
    if (cgc_thread_register() != 0) {
        fprintf(stderr, "cgc_thread_register failed\n");
        exit(3);
    }
}
static inline void ga_thread_end(void) { cgc_thread_unregister(); }
static inline void ga_block_begin(void) { cgc_blocking_enter(); } /* around pthread_join */
static inline void ga_block_end(void) { cgc_blocking_leave(); }
static inline void ga_report(void)
{
    cgc_stats st;
    cgc_get_stats(&st);
    fprintf(stderr, "gcstats variant=cgc cycles=%llu pause_total_ms=%.3f pause_max_ms=%.3f "
            "live_mb=%.1f hold_max_ms=%.3f hold_held_max_ms=%.3f\n",
            (unsigned long long)st.gc_cycles, st.gc_pause_total_ns / 1e6,
            st.gc_pause_max_ns / 1e6, st.gc_live_bytes / 1048576.0, st.gc_hold_max_ns / 1e6,
            st.gc_hold_held_max_ns / 1e6);
}

/* ---- Boehm GC ------------------------------------------------------------------------- */
#elif defined(USE_BDW)
#define GC_THREADS
#define GC_NO_THREAD_REDIRECTS /* threads register explicitly, as with cgc */
#include <gc.h>

#define GA_NAME "bdw"
#define GA_EXPLICIT_FREE 0
#define GA_STORE(lvalue, value) ((lvalue) = (value))

static size_t ga_node_size;
/* Written only by the collection-event callback, which runs with the allocation lock held. */
static uint64_t ga_stop_t0, ga_gc_t0, ga_pause_total, ga_pause_max, ga_stops;
#define GA_PAUSE_LOG 65536
static uint32_t ga_pause_log[GA_PAUSE_LOG]; /* microseconds; ga_nlog entries */
static uint64_t ga_nlog;

static inline void ga_pause(uint64_t t0)
{
    uint64_t d = ga_now_ns() - t0;
    ga_pause_total += d;
    if (d > ga_pause_max) ga_pause_max = d;
    if (ga_nlog < GA_PAUSE_LOG) ga_pause_log[ga_nlog] = (uint32_t)((d + 500) / 1000);
    ga_nlog++;
}
static inline void ga_on_event(GC_EventType e)
{
    switch (e) {
    case GC_EVENT_START: ga_gc_t0 = ga_now_ns(); break;
    case GC_EVENT_END: if (ga_stops == 0) ga_pause(ga_gc_t0); break;
    case GC_EVENT_PRE_STOP_WORLD: ga_stop_t0 = ga_now_ns(); break;
    case GC_EVENT_POST_START_WORLD:
        if (ga_stops == 0) ga_pause_total = ga_pause_max = ga_nlog = 0; /* drop START..END */
        ga_stops++;
        ga_pause(ga_stop_t0);
        break;
    default: break;
    }
}
static inline void ga_init(size_t node_size)
{
    GC_INIT();
    GC_allow_register_threads();
    GC_set_on_collection_event(ga_on_event);
    ga_node_size = node_size;
}
static inline void *ga_node(void)
{
    void *p = GC_MALLOC(ga_node_size);
    if (!p) ga_oom("GC_MALLOC");
    return p;
}
static inline void *ga_leaf(size_t n)
{
    void *p = GC_MALLOC_ATOMIC(n);
    if (!p) ga_oom("GC_MALLOC_ATOMIC");
    return p;
}
static inline void *ga_ptrs(size_t n)
{
    void **p = GC_MALLOC(n * sizeof(void *)); /* zeroed */
    if (!p) ga_oom("GC_MALLOC");
    return p;
}
static inline void ga_free(void *p) { (void)p; }
static inline void ga_thread_begin(void)
{
    struct GC_stack_base sb;
    if (GC_get_stack_base(&sb) != GC_SUCCESS) {
        fprintf(stderr, "GC_get_stack_base failed\n");
        exit(3);
    }
    GC_register_my_thread(&sb);
}
static inline void ga_thread_end(void) { GC_unregister_my_thread(); }
static inline void ga_block_begin(void) {}
static inline void ga_block_end(void) {}
static inline void ga_report(void)
{
    fprintf(stderr, "gcpauses variant=bdw n=%llu us=", (unsigned long long)ga_nlog);
    for (uint64_t i = 0; i < ga_nlog && i < GA_PAUSE_LOG; i++)
        fprintf(stderr, "%s%u", i ? "," : "", ga_pause_log[i]);
    fputc('\n', stderr);
    fprintf(stderr, "gcstats variant=bdw cycles=%lu pause_total_ms=%.3f pause_max_ms=%.3f "
            "stops=%llu heap_mb=%.1f\n", (unsigned long)GC_get_gc_no(), ga_pause_total / 1e6,
            ga_pause_max / 1e6, (unsigned long long)ga_stops, GC_get_heap_size() / 1048576.0);
}

/* ---- malloc/free ---------------------------------------------------------------------- */
#else
#define GA_NAME "malloc"
#define GA_EXPLICIT_FREE 1
#define GA_STORE(lvalue, value) ((lvalue) = (value))

static size_t ga_node_size;
static inline void ga_init(size_t node_size) { ga_node_size = node_size; }
static inline void *ga_node(void)
{
    void *p = malloc(ga_node_size);
    if (!p) ga_oom("malloc");
    return p;
}
static inline void *ga_leaf(size_t n)
{
    void *p = malloc(n);
    if (!p) ga_oom("malloc");
    return p;
}
static inline void *ga_ptrs(size_t n)
{
    void **p = calloc(n, sizeof(void *));
    if (!p) ga_oom("calloc");
    return p;
}
static inline void ga_free(void *p) { free(p); }
static inline void ga_thread_begin(void) {}
static inline void ga_thread_end(void) {}
static inline void ga_block_begin(void) {}
static inline void ga_block_end(void) {}
static inline void ga_report(void)
{
    fprintf(stderr, "gcstats variant=malloc cycles=0 pause_total_ms=0 pause_max_ms=0\n");
}
#endif

#endif /* PERF_GCALLOC_H */
