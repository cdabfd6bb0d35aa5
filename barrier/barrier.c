/* barrier/barrier.c — the write barrier's slow path, cgc_memmove, and the barrier buffers
 * (DESIGN §3.2, after Go's mbarrier.go and mwbbuf.go).
 *
 * While marking, cgc_store(slot, value) shades both the target it overwrites (the deletion
 * half, Yuasa: a pointer a black stack loaded from the heap cannot be hidden by erasing the
 * heap's copy) and the new target (the insertion half, Dijkstra: a white object cannot hide
 * inside a black one). With both halves, a stack is scanned once per cycle and never again.
 *
 * Shading is deferred: the slow path appends the two targets to its thread's buffer
 * (gc_thread.wb) and the collector empties the buffers — while it holds each thread in the
 * mark-termination handshake, and once more in the final stop — or the thread empties its
 * own when it is full. Append and store happen inside a no-stop region, so a stop lands
 * before both or after both: the buffer the collector reads always covers every store made
 * so far (the ordering DESIGN §3.2 asks for).
 *
 * The torn barrier (a store whose fast path read "off" just before the barrier was turned
 * on) cannot happen: every inline fast path is a restartable sequence registered here
 * (<cgc/barrier.h>), and the stop handler moves a thread stopped inside one back to its
 * start (gc_barrier_restart_pc). The out-of-line forms check and store inside a no-stop
 * region.
 *
 * Stop 1 turns the barrier on without stopping anyone (a ragged handshake, gc/cycle.c): a
 * thread may see it on, and shade, before the collector has held it. The slow paths read
 * the phase (and gc_marking) with acquire, so such shading happens after the last sweep
 * (which the collector finished before turning the barrier on) and can never race a sweep
 * clearing the same mark bits. (x86-64: plain loads either way.) Turning the barrier off needs no such care: a slow path that runs after marking
 * ended only buffers targets nobody reads (the buffers are emptied at the next cycle's
 * start).
 */
#include "cgc/gc.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* Read by every inline fast path (<cgc/barrier.h>), so it is a plain unsigned accessed with
 * the __atomic builtins (C++ callers cannot see a C11 _Atomic declaration). */
CGC_API unsigned cgc_barrier_phase_;

void gc_barrier_set(bool on) {
    __atomic_store_n(&cgc_barrier_phase_, on ? 1u : 0u, __ATOMIC_SEQ_CST);
}

void gc_barrier_flush(gc_thread *t) {
    unsigned n = atomic_load_explicit(&t->wb_n, memory_order_acquire);
    if (n == 0) return;
    if (atomic_load_explicit(&gc_marking, memory_order_acquire)) gc_shade_many(t->wb, n);
    atomic_store_explicit(&t->wb_n, 0, memory_order_release);
}

/* Append one target, if it may be a collected object. [no-stop] */
static inline void record(gc_thread *t, uintptr_t v) {
    if (v - alloc_heap_lo() >= alloc_heap_hi() - alloc_heap_lo()) return;
    unsigned n = atomic_load_explicit(&t->wb_n, memory_order_relaxed);
    if (n == GC_WB_ENTRIES) {
        gc_barrier_flush(t);
        n = 0;
    }
    t->wb[n] = v;
    atomic_store_explicit(&t->wb_n, n + 1, memory_order_release);
}

static CGC_NOINLINE gc_thread *unregistered_store(void) {
    return gc_require_self("stored a pointer through cgc_store while the collector was marking");
}

void cgc_store_slow_(void **slot, void *value) {
    gc_thread *t = gc_self;
    if (CGC_UNLIKELY(t == NULL)) t = unregistered_store();
    alloc_nostop_enter();
    if (__atomic_load_n(&cgc_barrier_phase_, __ATOMIC_ACQUIRE)) {
        if (gc_opt.barrier_debug != 1) record(t, (uintptr_t)*(void *volatile *)slot);
        if (gc_opt.barrier_debug != 2) record(t, (uintptr_t)value);
    }
    *(void *volatile *)slot = value;
    alloc_nostop_leave();
}

void gc_barrier_shade(uintptr_t v) {
    gc_thread *t = gc_self;
    if (t == NULL) t = unregistered_store();
    alloc_nostop_enter();
    if (atomic_load_explicit(&gc_marking, memory_order_acquire)) record(t, v);
    alloc_nostop_leave();
}

void (cgc_store)(void **slot, void *value) {
#if defined(__x86_64__)
    cgc_store_inline_(slot, value); /* a registered restartable sequence */
#else
    alloc_nostop_enter();
    if (__atomic_load_n(&cgc_barrier_phase_, __ATOMIC_RELAXED)) cgc_store_slow_(slot, value);
    else *(void *volatile *)slot = value;
    alloc_nostop_leave();
#endif
}

/* ---- the restartable sequences ------------------------------------------------------------
 * A sorted array of [lo, hi) code ranges, replaced (never changed in place) when a module
 * is loaded or unloaded, so the signal handler reads it without a lock. Old arrays are not
 * unmapped: a handler may still be reading one (they are small, and modules come and go
 * rarely). Registration happens in constructors, possibly before cgc is initialised: it
 * uses only plat_map and a spin lock. */
typedef struct site_range {
    uintptr_t lo, hi;
} site_range;
typedef struct site_set {
    size_t n;
    site_range r[];
} site_set;
static _Atomic(site_set *) sites;
static _Atomic int sites_lock;
#define MAX_MODULES 256
static const int *modules[MAX_MODULES]; /* [sites_lock] tables registered */
static const int *module_ends[MAX_MODULES];
static unsigned nmodules;

static int range_cmp(const void *a, const void *b) {
    const site_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void rebuild(void) {
    size_t n = 0;
    for (unsigned m = 0; m < nmodules; m++) n += (size_t)(module_ends[m] - modules[m]) / 2;
    site_set *ns = plat_map(sizeof(site_set) + (n ? n : 1) * sizeof(site_range));
    if (ns == NULL) {
        static const char msg[] = "cgc: fatal: out of memory registering write-barrier sites\n";
        plat_write_stderr(msg, sizeof msg - 1);
        plat_abort();
    }
    size_t k = 0;
    for (unsigned m = 0; m < nmodules; m++) {
        for (const int *e = modules[m]; e + 1 < module_ends[m]; e += 2) {
            uintptr_t lo = (uintptr_t)e + (intptr_t)e[0];
            ns->r[k++] = (site_range){lo, lo + (uintptr_t)e[1]};
        }
    }
    ns->n = k;
    qsort(ns->r, k, sizeof(site_range), range_cmp);
    atomic_store_explicit(&sites, ns, memory_order_release);
}

void cgc_barrier_sites_(const int *start, const int *stop, int add) {
    while (atomic_exchange_explicit(&sites_lock, 1, memory_order_acquire)) sched_yield();
    unsigned i = 0;
    while (i < nmodules && modules[i] != start) i++;
    if (add && i == nmodules && nmodules < MAX_MODULES) {
        modules[nmodules] = start;
        module_ends[nmodules++] = stop;
        rebuild();
    } else if (!add && i < nmodules) {
        modules[i] = modules[--nmodules];
        module_ends[i] = module_ends[nmodules];
        rebuild();
    }
    atomic_store_explicit(&sites_lock, 0, memory_order_release);
}

/* Async-signal-safe: the start of the sequence containing pc, or 0. */
uintptr_t gc_barrier_restart_pc(uintptr_t pc) {
    site_set *ss = atomic_load_explicit(&sites, memory_order_acquire);
    if (ss == NULL) return 0;
    size_t lo = 0, hi = ss->n;
    while (lo < hi) { /* first range with r.lo > pc */
        size_t mid = (lo + hi) / 2;
        if (ss->r[mid].lo <= pc) lo = mid + 1;
        else hi = mid;
    }
    if (lo > 0 && pc < ss->r[lo - 1].hi) return ss->r[lo - 1].lo;
    return 0;
}

/* Shade what the destination held and what it receives, word by word, then copy. The words
 * are treated as candidate pointers (conservatively), like a gc-scan object's. */
void *cgc_memmove(void *dst, const void *src, size_t n) {
    gc_thread *t = gc_self;
    if (t == NULL && __atomic_load_n(&cgc_barrier_phase_, __ATOMIC_RELAXED))
        t = unregistered_store();
    uintptr_t d = (uintptr_t)dst, sa = (uintptr_t)src;
    /* Only whole aligned words of the destination can hold pointers; a misaligned copy
     * moves pointers to misaligned places, where the collector does not look for them. */
    alloc_nostop_enter();
    if (__atomic_load_n(&cgc_barrier_phase_, __ATOMIC_ACQUIRE) && ((d ^ sa) & 7) == 0) {
        uintptr_t lo = (d + 7) & ~(uintptr_t)7, hi = (d + n) & ~(uintptr_t)7;
        for (uintptr_t a = lo; a < hi; a += 8) {
            if (gc_opt.barrier_debug != 1) record(t, *(const uintptr_t *)a);
            if (gc_opt.barrier_debug != 2) record(t, *(const uintptr_t *)(sa + (a - d)));
        }
    }
    memmove(dst, src, n);
    alloc_nostop_leave();
    return dst;
}
