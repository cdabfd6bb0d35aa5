/* gc/heap.c — collected allocation and sweeping (Go's mcache/mcentral for the collected
 * kinds, and mgcsweep.go).
 *
 * Collected spans use the allocator's spans, page heap and size classes, with their own
 * span kinds (scan / typed / leaf) so they never mix with malloc'd blocks. Their allocation
 * state is a bitmap (gcbits[].alloc), not a free list: allocation takes the next zero bit from
 * the span's free index (count-trailing-zeros), and *sweeping a span turns its mark bits into
 * its allocation state* — one word operation per 64 slots. That is what lets the
 * conservative scanner ask "is this slot allocated?" in O(1) (DESIGN §3.4).
 *
 * Span lists, per kind and class, each under its gc_central lock:
 *   unswept  — marked by the last cycle, not yet swept (all spans after mark termination)
 *   partial  — swept, with free slots
 *   full     — swept, no free slot
 * A thread's cache owns one current span per kind and class (alloc_cache.gc_cur); at mark
 * termination the collector takes them all back (the world is stopped, and no thread is
 * stopped inside a collected allocation: alloc_tls_nostop). A cache that needs a span takes
 * a partial one, else sweeps unswept ones itself (lazy sweeping), else asks the page heap;
 * a background sweeper thread sweeps the rest, and the next cycle finishes whatever is left
 * before it marks (sweep termination). Large collected objects (> 32 KiB) are single spans
 * on their own lists.
 */
#include "cgc/gc.h"

#include <errno.h>
#include <string.h>

typedef struct gc_central {
    pthread_mutex_t lock;
    alloc_span_list unswept, partial, full;
} gc_central;

static gc_central centrals[ALLOC_GC_KINDS][ALLOC_NCLASSES] = {
    [0 ... ALLOC_GC_KINDS - 1] = {[0 ... ALLOC_NCLASSES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER}},
};
static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static alloc_span_list large_live, large_unswept; /* [large_lock] */

_Atomic uint64_t gc_heap_bytes;
_Atomic uint64_t gc_freed_objects_last, gc_freed_bytes_last, gc_freed_total;
static _Atomic int sweeps_active; /* spans taken off an unswept list, not yet swept */

#define CLOBBER_WORD 0xdeadbeefdeadbeefull

static void list_splice(alloc_span_list *to, alloc_span_list *from) {
    if (from->head == NULL) return;
    if (to->tail) {
        to->tail->next = from->head;
        from->head->prev = to->tail;
    } else {
        to->head = from->head;
    }
    to->tail = from->tail;
    to->count += from->count;
    from->head = from->tail = NULL;
    from->count = 0;
}

static alloc_span *list_pop(alloc_span_list *l) {
    alloc_span *s = l->head;
    if (s) alloc_list_remove(l, s);
    return s;
}

/* ---- sweeping ------------------------------------------------------------------------------ */

static void clobber(uintptr_t p, size_t n) {
    for (size_t i = 0; i + 8 <= n; i += 8) *(uint64_t *)(p + i) = CLOBBER_WORD;
}

/* Sweep a small collected span the caller took off a list: unmarked allocated slots become
 * free, marks are cleared. Returns the number of live objects. */
static uint32_t sweep_small(alloc_span *s) {
    uint32_t live = 0;
    uint64_t freed = 0;
    unsigned words = (s->nelems + 63) / 64;
    for (unsigned w = 0; w < words; w++) {
        uint64_t a = atomic_load_explicit(&s->gcbits[w].alloc, memory_order_relaxed);
        uint64_t m = gc_marks_word(s, w) & a;
        uint64_t dead = a & ~m;
        if (dead && gc_opt.clobber) {
            for (uint64_t d = dead; d; d &= d - 1) {
                size_t idx = w * 64 + (size_t)__builtin_ctzll(d);
                clobber(s->start + idx * s->elem_size, s->elem_size);
            }
        }
        freed += (uint64_t)alloc_popcount64(dead);
        live += (uint32_t)alloc_popcount64(m);
        atomic_store_explicit(&s->gcbits[w].alloc, m, memory_order_relaxed);
    }
    memset((void *)gc_marks_of(s), 0, s->nelems);
    s->used = live;
    atomic_store_explicit(&s->bump, 0, memory_order_relaxed); /* free index */
    if (freed) {
        atomic_fetch_add_explicit(&gc_freed_objects_last, freed, memory_order_relaxed);
        atomic_fetch_add_explicit(&gc_freed_bytes_last, freed * s->elem_size, memory_order_relaxed);
    }
    return live;
}

/* File a swept span: empty ones go back to the page heap. */
static void file_swept(alloc_span *s, uint32_t live) {
    if (live == 0) {
        alloc_heap_free(s);
        return;
    }
    gc_central *ce = &centrals[s->kind - 1][s->sizeclass];
    alloc_lock(&ce->lock);
    alloc_list_append(live < s->nelems ? &ce->partial : &ce->full, s);
    alloc_unlock(&ce->lock);
}

static bool sweep_large_one(void) {
    alloc_lock(&large_lock);
    alloc_span *s = list_pop(&large_unswept);
    if (s) atomic_fetch_add_explicit(&sweeps_active, 1, memory_order_acq_rel);
    alloc_unlock(&large_lock);
    if (s == NULL) return false;
    if (atomic_load_explicit(&s->gcbits[0].mark, memory_order_relaxed) & 1) {
        atomic_store_explicit(&s->gcbits[0].mark, 0, memory_order_relaxed);
        alloc_lock(&large_lock);
        alloc_list_append(&large_live, s);
        alloc_unlock(&large_lock);
    } else {
        size_t bytes = s->npages * ALLOC_PAGE_SIZE;
        if (gc_opt.clobber) clobber(s->start, bytes);
        atomic_fetch_add_explicit(&gc_freed_objects_last, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&gc_freed_bytes_last, bytes, memory_order_relaxed);
        alloc_heap_free(s);
    }
    atomic_fetch_sub_explicit(&sweeps_active, 1, memory_order_acq_rel);
    return true;
}

/* Sweep one unswept span of (kind, class), or return false if there is none. */
static bool sweep_one(unsigned k, unsigned cls) {
    gc_central *ce = &centrals[k][cls];
    alloc_lock(&ce->lock);
    alloc_span *s = list_pop(&ce->unswept);
    if (s) atomic_fetch_add_explicit(&sweeps_active, 1, memory_order_acq_rel);
    alloc_unlock(&ce->lock);
    if (s == NULL) return false;
    file_swept(s, sweep_small(s));
    atomic_fetch_sub_explicit(&sweeps_active, 1, memory_order_acq_rel);
    return true;
}

void gc_finish_sweep(void) {
    for (unsigned k = 0; k < ALLOC_GC_KINDS; k++)
        for (unsigned c = 1; c < ALLOC_NCLASSES; c++)
            while (sweep_one(k, c)) {
            }
    while (sweep_large_one()) {
    }
    /* Spans another thread took off a list are being swept right now: wait for them. */
    while (atomic_load_explicit(&sweeps_active, memory_order_acquire) != 0) sched_yield();
}

static uint32_t count_allocated(const alloc_span *s);

/* Take every current span from cache c: for sweeping (unswept), or, swept already, to the
 * partial or full list. */
static inline void batch_release(alloc_cache *c, unsigned k, unsigned cls);

static void give_back(alloc_cache *c, bool unswept) {
    for (unsigned k = 0; k < ALLOC_GC_KINDS; k++) {
        for (unsigned cls = 1; cls < ALLOC_NCLASSES; cls++) {
            alloc_span *s = c->gc_cur[k][cls];
            if (s == &alloc_empty_span) continue;
            batch_release(c, k, cls);
            c->gc_cur[k][cls] = &alloc_empty_span;
            gc_central *ce = &centrals[k][cls];
            alloc_span_list *to = unswept ? &ce->unswept
                                : count_allocated(s) < s->nelems ? &ce->partial : &ce->full;
            alloc_lock(&ce->lock);
            alloc_list_append(to, s);
            alloc_unlock(&ce->lock);
        }
    }
}

/* ---- the background sweeper ------------------------------------------------------------------
 * An unregistered thread (the collector never stops it): after a paced cycle it sweeps the
 * unswept spans one at a time, racing allocating threads that sweep lazily (each span is
 * taken off its list under the lock, so it is swept once). The next cycle's sweep
 * termination finishes whatever is left and waits for a span in progress. */
static pthread_mutex_t sweeper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweeper_cv = PTHREAD_COND_INITIALIZER;
static int sweeper_work, sweeper_started;

static void *sweeper_main(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&sweeper_lock);
        while (!sweeper_work) pthread_cond_wait(&sweeper_cv, &sweeper_lock);
        sweeper_work = 0;
        pthread_mutex_unlock(&sweeper_lock);
        /* One span per list per round, so every size class gets swept spans early; a list
         * found empty is not tried again in this run (each try takes its lock: a few hundred
         * lists, as many rounds as the longest list has spans). Only a cycle's
         * gc_prepare_sweep adds unswept spans, and it wakes the sweeper again. */
        bool empty[ALLOC_GC_KINDS][ALLOC_NCLASSES] = {{false}};
        bool any = true, large = true;
        while (any) {
            any = false;
            for (unsigned k = 0; k < ALLOC_GC_KINDS; k++)
                for (unsigned c = 1; c < ALLOC_NCLASSES; c++) {
                    if (empty[k][c]) continue;
                    if (sweep_one(k, c)) any = true;
                    else empty[k][c] = true;
                }
            if (large) large = sweep_large_one();
            any |= large;
        }
    }
    return NULL;
}

void gc_sweeper_wake(void) {
    pthread_mutex_lock(&sweeper_lock);
    if (!sweeper_started) sweeper_started = plat_spawn_detached(sweeper_main, NULL, 0, 0);
    sweeper_work = 1;
    pthread_cond_signal(&sweeper_cv);
    pthread_mutex_unlock(&sweeper_lock);
}

/* fork: what = 0 prepare (lock), 1 parent (unlock), 2 child (reinitialise; the sweeper
 * thread is gone and is re-created on demand). gc_lock is held: no cycle is running. */
void gc_heap_fork(int what) {
    if (what == 0) {
        pthread_mutex_lock(&sweeper_lock);
        for (unsigned k = 0; k < ALLOC_GC_KINDS; k++)
            for (unsigned c = 0; c < ALLOC_NCLASSES; c++) pthread_mutex_lock(&centrals[k][c].lock);
        pthread_mutex_lock(&large_lock);
    } else if (what == 1) {
        pthread_mutex_unlock(&large_lock);
        for (unsigned k = 0; k < ALLOC_GC_KINDS; k++)
            for (unsigned c = 0; c < ALLOC_NCLASSES; c++) pthread_mutex_unlock(&centrals[k][c].lock);
        pthread_mutex_unlock(&sweeper_lock);
    } else {
        pthread_mutex_init(&large_lock, NULL);
        for (unsigned k = 0; k < ALLOC_GC_KINDS; k++)
            for (unsigned c = 0; c < ALLOC_NCLASSES; c++) pthread_mutex_init(&centrals[k][c].lock, NULL);
        pthread_mutex_init(&sweeper_lock, NULL);
        pthread_cond_init(&sweeper_cv, NULL);
        sweeper_started = 0;
        sweeper_work = 0;
        /* A span another thread was sweeping at the fork is lost to the child (that thread
         * does not exist here): forget it, or sweep termination would wait for it forever. */
        atomic_store_explicit(&sweeps_active, 0, memory_order_relaxed);
    }
}

void gc_prepare_sweep(void) {
    atomic_store_explicit(&gc_freed_objects_last, 0, memory_order_relaxed);
    atomic_store_explicit(&gc_freed_bytes_last, 0, memory_order_relaxed);
    /* The background sweeper is never stopped: it takes a span as soon as one is on an
     * unswept list, sweeps it (the marks are final now, so that is right) and files it as
     * partial or full. So the central lists go first and the caches' spans after: were a
     * cache's span given back first, the sweeper could sweep and file it before the splice
     * below put it on the unswept list a second time — and its second sweep, seeing the
     * marks the first one cleared, would free every object in it (found by the fuzzer:
     * objects allocated just before a cgc_collect lost with their whole span). */
    for (unsigned k = 0; k < ALLOC_GC_KINDS; k++) {
        for (unsigned cls = 1; cls < ALLOC_NCLASSES; cls++) {
            gc_central *ce = &centrals[k][cls];
            alloc_lock(&ce->lock);
            list_splice(&ce->unswept, &ce->partial);
            list_splice(&ce->unswept, &ce->full);
            alloc_unlock(&ce->lock);
        }
    }
    /* Every cache gives its current spans back (their threads are stopped outside any
     * collected allocation, or are not registered and never allocate collected memory). */
    alloc_lock(&alloc_cache_registry_lock);
    for (alloc_cache *c = alloc_cache_registry; c; c = c->reg_next) give_back(c, true);
    alloc_unlock(&alloc_cache_registry_lock);
    alloc_lock(&large_lock);
    list_splice(&large_unswept, &large_live);
    alloc_unlock(&large_lock);
}

static uint32_t count_allocated(const alloc_span *s) {
    uint32_t n = 0;
    for (unsigned w = 0; w < (s->nelems + 63) / 64; w++)
        n += (uint32_t)alloc_popcount64(atomic_load_explicit(&s->gcbits[w].alloc, memory_order_relaxed));
    return n;
}

/* Called by alloc/cache.c when a cache is recycled (thread exit): its current collected
 * spans go back to the swept lists (they were swept when the cache took them). */
static void release_cache_spans(alloc_cache *c) { give_back(c, false); }

void gc_for_each_span(void (*fn)(alloc_span *s, void *arg), void *arg) {
    for (unsigned k = 0; k < ALLOC_GC_KINDS; k++) {
        for (unsigned cls = 1; cls < ALLOC_NCLASSES; cls++) {
            gc_central *ce = &centrals[k][cls];
            alloc_lock(&ce->lock);
            for (alloc_span *s = ce->unswept.head; s; s = s->next) fn(s, arg);
            for (alloc_span *s = ce->partial.head; s; s = s->next) fn(s, arg);
            for (alloc_span *s = ce->full.head; s; s = s->next) fn(s, arg);
            alloc_unlock(&ce->lock);
        }
    }
    alloc_lock(&alloc_cache_registry_lock);
    for (alloc_cache *c = alloc_cache_registry; c; c = c->reg_next)
        for (unsigned k = 0; k < ALLOC_GC_KINDS; k++)
            for (unsigned cls = 1; cls < ALLOC_NCLASSES; cls++)
                if (c->gc_cur[k][cls] != &alloc_empty_span) fn(c->gc_cur[k][cls], arg);
    alloc_unlock(&alloc_cache_registry_lock);
    alloc_lock(&large_lock);
    for (alloc_span *s = large_live.head; s; s = s->next) fn(s, arg);
    for (alloc_span *s = large_unswept.head; s; s = s->next) fn(s, arg);
    alloc_unlock(&large_lock);
}

/* ---- allocation ---------------------------------------------------------------------------- */
_Atomic unsigned gc_alloc_mode;

/* Black allocation: while marking, a new object is born marked, so the marker never needs
 * to scan it (its pointers can only come from stores, which the barrier shades). */
static inline void born_black(alloc_span *s, uint32_t idx) { gc_mark_byte_set(s, idx, 1); }

/* Does the calling thread allocate black now? (While marking, once its stack is scanned.) */
static inline bool alloc_is_black(void) {
    return (atomic_load_explicit(&gc_alloc_mode, memory_order_relaxed) & GC_ALLOC_BLACK) &&
           gc_self && atomic_load_explicit(&gc_self->alloc_black, memory_order_relaxed);
}


/* Add an allocation's bytes to the pacer, in 64 KiB batches per thread (gc_account may run
 * a collection: the caller's new object is on its stack, so it survives). */
static inline void charge(alloc_cache *c, size_t bytes) {
    c->gc_alloc_local += bytes;
    if (CGC_UNLIKELY(c->gc_alloc_local >= (64u << 10))) {
        uint64_t b = c->gc_alloc_local;
        c->gc_alloc_local = 0;
        gc_account(b);
    }
}

/* Call right before alloc_nostop_leave with the new object. The leave may park the thread
 * for a stop that arrived during the allocation, and the object may still be white (the
 * thread's stack not yet scanned this cycle): that stack scan is its only chance to be
 * marked, so its address must be in a register or the frame at that moment. Opaque to the
 * compiler after this point, p cannot be recomputed from (span, index) after the stop, so
 * it is kept live across the call. Without it, objects were freed while reachable:
 * tests/test_hostile.c's foreign-signal test found a list node handed out twice, once the
 * slot zeroing moved out of line and the compiler stopped keeping p across the leave. */
#define GC_KEEP_LIVE(p) __asm__ volatile("" : "+r"(p))

/* Zero a slot. Most collected objects are a few words (list cells, tree nodes), and a
 * memset call per object was 4% of binary-trees: up to 64 bytes are stored inline (every
 * class size is a multiple of 16). Straight-line stores, not a loop: gcc turns a zeroing
 * loop back into a memset call. */
static inline void zero_slot(uintptr_t p, size_t n) {
    if (CGC_LIKELY(n <= 64)) {
        uint64_t *w = (uint64_t *)p;
        w[0] = 0;
        w[1] = 0;
        if (n > 16) {
            w[2] = 0;
            w[3] = 0;
            if (n > 32) {
                w[4] = 0;
                w[5] = 0;
                if (n > 48) {
                    w[6] = 0;
                    w[7] = 0;
                }
            }
        }
    } else {
        memset((void *)p, 0, n);
    }
}

/* ---- Batches ---------------------------------------------------------------------------------
 * A thread takes the free slots of its current span a batch at a time: the free slots one
 * bitmap word offers from the free index, at most BATCH_BYTES of them, are zeroed (a memset
 * per run of adjacent slots) and published allocated with one release store; the cache then
 * hands them out from a mask (gc_free), a ctz and a clear per object. Taking slots one at a
 * time meant a bitmap search, a zeroing store that missed the cache (a collected heap cycles
 * through its whole goal between reuses of a slot) and two stores to the span per object: 29%
 * of GCBench's CPU. The batch's memset streams, and leaves the slots in cache for their turn.
 * Invariant: gc_free[k][cls] names slots of gc_cur[k][cls] in word gc_word[k][cls] only; it is
 * emptied (batch_release) before gc_cur[k][cls] changes or the span leaves the cache. A slot
 * claimed and not yet handed out is allocated, white and zero: a marker that reaches it by a
 * stale pointer scans zeros; once handed out it is born black if the thread allocates black
 * (as before). [owner, nostop — or the owner stopped] */
#define BATCH_BYTES 2048u

static inline void batch_release(alloc_cache *c, unsigned k, unsigned cls) {
    uint64_t m = c->gc_free[k][cls];
    if (m == 0) return;
    c->gc_free[k][cls] = 0;
    /* Free again: a marker that saw them allocated saw zeros; the next claim zeroes them
     * before it publishes them. (The free index stays past them until the span's next
     * turn: a few slots of one word.) */
    atomic_fetch_and_explicit(&c->gc_cur[k][cls]->gcbits[c->gc_word[k][cls]].alloc, ~m,
                              memory_order_relaxed);
}

/* Take the lowest (at most max) free slots of the first bitmap word of s, from its free
 * index, that has any: zeroed (a memset per run of adjacent slots), then published
 * allocated with one release store, the free index moved past them. Returns them as a mask
 * of word *word, or 0 when s has no free slot left. [owner]
 * Zeroed before published: a concurrent marker that reaches a slot through a stale pointer
 * counts it as an object once it sees the bit (loaded with acquire, gc/mark.c object_in),
 * and must then read zeros, not the previous object's words. With the bit set first, a
 * typed array's old header (CGC_CLOBBER's 0xdeadbeef...) sent scan_typed through a bogus
 * type: the SEGV of gc_stress under TSan, possible natively too. */
static uint64_t claim_word(alloc_span *s, size_t max, unsigned *word) {
    uint32_t fi = atomic_load_explicit(&s->bump, memory_order_relaxed);
    size_t sz = s->elem_size;
    while (fi < s->nelems) {
        unsigned w = fi >> 6;
        uint64_t a = atomic_load_explicit(&s->gcbits[w].alloc, memory_order_relaxed);
        uint64_t freebits = ~a & (~(uint64_t)0 << (fi & 63));
        if (s->nelems - ((uint32_t)w << 6) < 64) /* the last word: no slot past nelems */
            freebits &= ((uint64_t)1 << (s->nelems - ((uint32_t)w << 6))) - 1;
        if (freebits == 0) {
            fi = (uint32_t)(w + 1) << 6;
            continue;
        }
        uint64_t take = freebits;
        if (max < 64) { /* the lowest max (no popcount: a libgcc call in baseline x86-64) */
            take = 0;
            for (size_t i = 0; i < max && freebits; i++) {
                take |= freebits & -freebits;
                freebits &= freebits - 1;
            }
        }
        uintptr_t base = s->start + ((size_t)w << 6) * sz;
        for (uint64_t t = take; t;) {
            unsigned lo = (unsigned)__builtin_ctzll(t);
            uint64_t run = t >> lo;
            unsigned len = run == ~(uint64_t)0 >> lo ? 64 - lo : (unsigned)__builtin_ctzll(~run);
            if (len == 1) zero_slot(base + lo * sz, sz);
            else memset((void *)(base + lo * sz), 0, len * sz);
            t &= len + lo >= 64 ? 0 : ~(uint64_t)0 << (lo + len);
        }
        atomic_store_explicit(&s->gcbits[w].alloc, a | take, memory_order_release);
        atomic_store_explicit(&s->bump, ((uint32_t)w << 6) + (uint32_t)(64 - __builtin_clzll(take)),
                              memory_order_relaxed);
        *word = w;
        return take;
    }
    atomic_store_explicit(&s->bump, s->nelems, memory_order_relaxed);
    return 0;
}

/* Claim the next batch of s, the cache's current span of (k, cls), whose batch is empty.
 * False when s has no free slot left. */
static bool batch_claim(alloc_cache *c, unsigned k, unsigned cls, alloc_span *s) {
    size_t sz = s->elem_size; /* (0 in alloc_empty_span, which has no slot) */
    unsigned w = 0;
    uint64_t take = claim_word(s, sz >= BATCH_BYTES || sz == 0 ? 1 : BATCH_BYTES / sz, &w);
    if (take == 0) return false;
    /* Claimed while this thread allocates black (its stack already scanned this cycle):
     * the whole batch is born black now, not one slot at a time as handed out. A stale
     * word on this thread's stack may point at one of these slots: the stack scan saw the
     * slot free and ignored it, and mark termination's checkmark, which scans the stack
     * again, would find it allocated and unmarked (a false report) — slots used to be
     * allocated only when handed out, and born black then. (No stop lands inside the
     * claim: the caller is in a no-stop region.) Marked slots never handed out are
     * released at stop 2 like any other. */
    if (alloc_is_black())
        for (uint64_t t = take; t; t &= t - 1)
            born_black(s, ((uint32_t)w << 6) + (uint32_t)__builtin_ctzll(t));
    c->gc_free[k][cls] = take;
    c->gc_word[k][cls] = w;
    return true;
}

/* The next slot of the cache's batch of (k, cls), which is not empty. */
static inline uint32_t batch_take(alloc_cache *c, unsigned k, unsigned cls) {
    uint64_t m = c->gc_free[k][cls];
    c->gc_free[k][cls] = m & (m - 1);
    return (c->gc_word[k][cls] << 6) + (uint32_t)__builtin_ctzll(m);
}

static alloc_span *new_span(unsigned kind, unsigned cls) {
    alloc_span *s = alloc_heap_alloc(alloc_classes[cls].npages, 1, false);
    if (s == NULL) return NULL;
    _Atomic uint8_t *marks = gc_marks_of(s);
    if (marks == NULL) { /* the struct's first collected life: its mark bytes, for good */
        marks = alloc_meta_new(ALLOC_MAX_NELEMS);
        if (marks == NULL) {
            alloc_heap_free(s);
            return NULL;
        }
        __atomic_store_n(&s->gcmarks, marks, __ATOMIC_RELAXED);
    }
    /* Bits first, kind last: a concurrent marker that finds the span by a stale pointer
     * must not read the previous life's bitmap as this one's. */
    for (unsigned w = 0; w < ALLOC_BITMAP_WORDS; w++)
        atomic_store_explicit(&s->gcbits[w].alloc, 0, memory_order_relaxed);
    memset((void *)marks, 0, ALLOC_MAX_NELEMS); /* (the mark words serve large spans only) */
    atomic_thread_fence(memory_order_release);
    alloc_span_set_class(s, cls, kind);
    s->free = NULL;
    s->gctype = NULL;
    atomic_store_explicit(&s->bump, 0, memory_order_relaxed);
    return s;
}

/* The current span of (kind, class) is full: file it, get one with room. [nostop] */
static alloc_span *refill(alloc_cache *c, unsigned kind, unsigned cls) {
    unsigned k = kind - 1;
    gc_central *ce = &centrals[k][cls];
    batch_release(c, k, cls);
    alloc_span *old = c->gc_cur[k][cls];
    c->gc_cur[k][cls] = &alloc_empty_span;
    if (old != &alloc_empty_span) {
        alloc_lock(&ce->lock);
        alloc_list_append(&ce->full, old);
        alloc_unlock(&ce->lock);
    }
    for (;;) {
        alloc_lock(&ce->lock);
        alloc_span *s = list_pop(&ce->partial);
        if (s == NULL) {
            s = list_pop(&ce->unswept);
            if (s) atomic_fetch_add_explicit(&sweeps_active, 1, memory_order_acq_rel);
            alloc_unlock(&ce->lock);
            if (s == NULL) break;
            uint32_t live = sweep_small(s); /* lazy sweeping: the allocator pays */
            atomic_fetch_sub_explicit(&sweeps_active, 1, memory_order_acq_rel);
            if (live == s->nelems || live == 0) {
                file_swept(s, live);
                continue;
            }
        } else {
            alloc_unlock(&ce->lock);
            if (count_allocated(s) == s->nelems) { /* filed as partial but full: refile */
                file_swept(s, s->nelems);
                continue;
            }
        }
        atomic_store_explicit(&s->bump, 0, memory_order_relaxed);
        c->gc_cur[k][cls] = s;
        return s;
    }
    alloc_span *s = new_span(kind, cls);
    if (s) c->gc_cur[k][cls] = s;
    return s;
}

/* gctype: TYPED1's type (Boehm kinds), set before the kind like everything else. */
static void *alloc_large_gc(size_t n, unsigned kind, const cgc_type *gctype) {
    size_t npages = (n + ALLOC_PAGE_SIZE - 1) >> ALLOC_PAGE_SHIFT;
    alloc_span *s = alloc_heap_alloc(npages, 1, true);
    if (s == NULL) return NULL;
    s->elem_size = 0;
    s->gctype = gctype;
    atomic_store_explicit(&s->gcbits[0].mark, 0, memory_order_relaxed);
    if (!s->zeroed) memset((void *)s->start, 0, npages * ALLOC_PAGE_SIZE);
    if (alloc_is_black()) atomic_store_explicit(&s->gcbits[0].mark, 1, memory_order_relaxed);
    /* The kind last, with release: a concurrent marker that finds the span (a stale pointer
     * into its pages) treats it as collected only once it loads this kind (acquire), and
     * then sees zeroed memory and this life's fields, not the old contents of the pages. */
    __atomic_store_n(&s->kind, (uint8_t)kind, __ATOMIC_RELEASE);
    alloc_lock(&large_lock);
    alloc_list_append(&large_live, s);
    alloc_unlock(&large_lock);
    return (void *)s->start;
}

static CGC_NOINLINE void *alloc_slow(size_t n, unsigned kind) {
    gc_ensure_init();
    gc_require_self("allocated from the collected heap");
    if (n == 0) n = 1;
    if (n > ((size_t)1 << ALLOC_ADDR_BITS)) {
        errno = ENOMEM;
        return NULL;
    }
    if (CGC_UNLIKELY(gc_opt.heap_max != UINT64_MAX) && gc_over_hard_cap(n)) {
        errno = ENOMEM;
        return NULL;
    }
    alloc_cache *c = alloc_tls_cache;
    if (!alloc_cache_valid(c)) c = alloc_cache_create();
    if (!alloc_cache_valid(c)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p;
    size_t bytes;
    alloc_nostop_enter(); /* the collector never sees this cache half-updated */
    if (n <= ALLOC_SMALL_MAX) {
        unsigned cls = alloc_size_class(n), k = kind - 1;
        alloc_span *s = c->gc_cur[k][cls];
        if (c->gc_free[k][cls] == 0 && !batch_claim(c, k, cls, s)) {
            s = refill(c, kind, cls);
            if (s && !batch_claim(c, k, cls, s)) s = NULL;
        }
        bytes = alloc_classes[cls].size;
        p = NULL;
        if (s) {
            uint32_t idx = batch_take(c, k, cls);
            p = (void *)(s->start + (size_t)idx * s->elem_size);
            if (alloc_is_black()) born_black(s, idx); /* the claim zeroed it */
        }
    } else {
        p = alloc_large_gc(n, kind, NULL);
        bytes = (n + ALLOC_PAGE_SIZE - 1) & ~(ALLOC_PAGE_SIZE - 1);
    }
    GC_KEEP_LIVE(p);
    alloc_nostop_leave();
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    charge(c, bytes); /* a large object is >= 32 KiB: the pacer hears of it soon enough */
    return p;
}

/* The fast path: a registered thread, a small object, a free slot in the current span. */
void *gc_alloc_kind(size_t n, unsigned kind) {
    alloc_cache *c = alloc_tls_cache;
    if (CGC_LIKELY(gc_self != NULL && n - 1 < ALLOC_SMALL_MAX && alloc_cache_valid(c) &&
                   gc_opt.heap_max == UINT64_MAX)) {
        unsigned cls = alloc_size_class(n), k = kind - 1;
        alloc_nostop_enter();
        if (CGC_LIKELY(c->gc_free[k][cls] != 0)) {
            alloc_span *s = c->gc_cur[k][cls];
            uint32_t idx = batch_take(c, k, cls);
            void *p = (void *)(s->start + (size_t)idx * s->elem_size);
            size_t bytes = s->elem_size; /* zeroed by the claim */
            if (CGC_UNLIKELY(atomic_load_explicit(&gc_alloc_mode, memory_order_relaxed)) &&
                alloc_is_black())
                born_black(s, idx);
            GC_KEEP_LIVE(p);
            alloc_nostop_leave();
            charge(c, bytes);
            return p;
        }
        alloc_nostop_leave();
    }
    return alloc_slow(n, kind);
}

/* ---- typed objects without a header ----------------------------------------------------------
 * A span of kind TYPED1 holds objects of one cgc_type (span->gctype), so its objects need no
 * header. A thread's current TYPED1 span per class serves one type at a time: asking for
 * another type files it and finds (or makes) a span of the new type. [nostop] */
#define TYPED1_SEARCH 32

static alloc_span *refill_typed1(alloc_cache *c, unsigned cls, const cgc_type *t) {
    unsigned k = ALLOC_KIND_GC_TYPED1 - 1;
    gc_central *ce = &centrals[k][cls];
    batch_release(c, k, cls); /* (another type's batch) */
    alloc_span *old = c->gc_cur[k][cls];
    c->gc_cur[k][cls] = &alloc_empty_span;
    if (old != &alloc_empty_span) {
        alloc_lock(&ce->lock);
        alloc_list_append(count_allocated(old) < old->nelems ? &ce->partial : &ce->full, old);
        alloc_unlock(&ce->lock);
    }
    /* A swept span of this type with room? */
    alloc_lock(&ce->lock);
    unsigned looked = 0;
    for (alloc_span *s = ce->partial.head; s && looked < TYPED1_SEARCH; s = s->next, looked++) {
        if (s->gctype != t || count_allocated(s) == s->nelems) continue;
        alloc_list_remove(&ce->partial, s);
        alloc_unlock(&ce->lock);
        atomic_store_explicit(&s->bump, 0, memory_order_relaxed);
        c->gc_cur[k][cls] = s;
        return s;
    }
    alloc_unlock(&ce->lock);
    /* Sweep a few unswept ones (they need it anyway); use one of this type with room. */
    for (unsigned i = 0; i < TYPED1_SEARCH; i++) {
        alloc_lock(&ce->lock);
        alloc_span *s = list_pop(&ce->unswept);
        if (s) atomic_fetch_add_explicit(&sweeps_active, 1, memory_order_acq_rel);
        alloc_unlock(&ce->lock);
        if (s == NULL) break;
        uint32_t live = sweep_small(s);
        atomic_fetch_sub_explicit(&sweeps_active, 1, memory_order_acq_rel);
        if (s->gctype == t && live > 0 && live < s->nelems) {
            c->gc_cur[k][cls] = s;
            return s;
        }
        file_swept(s, live);
    }
    alloc_span *s = new_span(ALLOC_KIND_GC_TYPED1, cls);
    if (s) {
        s->gctype = t;
        c->gc_cur[k][cls] = s;
    }
    return s;
}

void *gc_alloc_typed1(const cgc_type *t) {
    alloc_cache *c = alloc_tls_cache;
    size_t n = t->size ? t->size : 1;
    if (CGC_UNLIKELY(gc_self == NULL || !alloc_cache_valid(c))) {
        gc_ensure_init();
        gc_require_self("allocated from the collected heap");
        if (!alloc_cache_valid(c)) c = alloc_cache_create();
        if (!alloc_cache_valid(c)) {
            errno = ENOMEM;
            return NULL;
        }
    }
    if (CGC_UNLIKELY(gc_opt.heap_max != UINT64_MAX) && gc_over_hard_cap(n)) {
        errno = ENOMEM;
        return NULL;
    }
    unsigned cls = alloc_size_class(n);
    unsigned k = ALLOC_KIND_GC_TYPED1 - 1;
    alloc_nostop_enter();
    alloc_span *s = c->gc_cur[k][cls];
    if (CGC_UNLIKELY(s->gctype != t || (c->gc_free[k][cls] == 0 && !batch_claim(c, k, cls, s)))) {
        s = refill_typed1(c, cls, t);
        if (s && !batch_claim(c, k, cls, s)) s = NULL;
    }
    void *p = NULL;
    size_t bytes = alloc_classes[cls].size;
    if (s) {
        uint32_t idx = batch_take(c, k, cls);
        p = (void *)(s->start + (size_t)idx * s->elem_size);
        if (alloc_is_black()) born_black(s, idx); /* the claim zeroed it */
    }
    GC_KEEP_LIVE(p);
    alloc_nostop_leave();
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    charge(c, bytes);
    return p;
}

/* ---- Boehm kinds (gc/bdw_kinds.c): a large object whose span carries a type ------------------ */
void *gc_alloc_large_typed1(const cgc_type *t, size_t n) {
    gc_ensure_init();
    gc_require_self("allocated from the collected heap");
    if (n > ((size_t)1 << ALLOC_ADDR_BITS) ||
        (CGC_UNLIKELY(gc_opt.heap_max != UINT64_MAX) && gc_over_hard_cap(n))) {
        errno = ENOMEM;
        return NULL;
    }
    alloc_cache *c = alloc_tls_cache;
    if (!alloc_cache_valid(c)) c = alloc_cache_create();
    if (!alloc_cache_valid(c)) {
        errno = ENOMEM;
        return NULL;
    }
    alloc_nostop_enter(); /* no cycle sees the span before it carries its type */
    void *p = alloc_large_gc(n, ALLOC_KIND_GC_TYPED1, t);
    GC_KEEP_LIVE(p);
    alloc_nostop_leave();
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    charge(c, (n + ALLOC_PAGE_SIZE - 1) & ~(ALLOC_PAGE_SIZE - 1));
    return p;
}

/* bdw (GC_generic_malloc_many): up to max objects of n bytes of (kind, class) in one no-stop
 * region, refilling the current span as it runs out; 0 when this path does not apply (the
 * caller then goes on one object at a time). Guile takes most of its small objects this
 * way, so it works a bitmap word at a time: all the free slots a word offers are taken with
 * one store and cleared by one memset per run of adjacent slots (claim_word), not one
 * object at a time. Objects are born white: only the Boehm mode uses this, and it
 * marks with the world stopped (never while a thread allocates). [owner] */
static size_t take_slots(alloc_span *s, void **out, size_t max) {
    unsigned w = 0;
    uint64_t take = claim_word(s, max, &w);
    size_t got = 0, sz = s->elem_size;
    uintptr_t base = s->start + ((size_t)w << 6) * sz;
    for (uint64_t t = take; t; t &= t - 1) out[got++] = (void *)(base + __builtin_ctzll(t) * sz);
    return got;
}

size_t gc_alloc_small_many(size_t n, unsigned kind, void **out, size_t max) {
    alloc_cache *c = alloc_tls_cache;
    if (!(gc_self != NULL && n - 1 < ALLOC_SMALL_MAX && alloc_cache_valid(c) &&
          gc_opt.heap_max == UINT64_MAX && gc_opt.stop_the_world))
        return 0;
    unsigned cls = alloc_size_class(n);
    size_t got = 0, bytes = 0;
    alloc_nostop_enter();
    batch_release(c, kind - 1, cls); /* its slots come from the bitmap directly */
    alloc_span *s = c->gc_cur[kind - 1][cls];
    while (got < max) {
        size_t k = take_slots(s, out + got, max - got);
        if (k == 0) {
            s = refill(c, kind, cls); /* lazy sweeping, as in alloc_slow */
            if (s == NULL) break;
            continue;
        }
        got += k;
        bytes += k * s->elem_size;
    }
    alloc_nostop_leave();
    if (bytes) charge(c, bytes);
    return got;
}

/* Fork child, called by the allocator's child handler (which runs before the collector's):
 * the span-list locks this thread holds since the prepare handler are made usable now. */
static void heap_fork_child_early(void) { gc_heap_fork(2); }

void gc_heap_init(void) {
    GC_ROOTS_EXCLUDE_VAR(centrals); /* span lists: metadata */
    alloc_gc_cache_release_hook = release_cache_spans;
    alloc_gc_fork_child_hook = heap_fork_child_early;
}

/* ---- checks -------------------------------------------------------------------------------- */
static void check_span(alloc_span *s, void *arg) {
    const char **err = arg;
    if (*err) return;
    if (alloc_span_state(s) == SPAN_LARGE) return;
    unsigned words = (s->nelems + 63) / 64;
    for (unsigned w = 0; w < words; w++) {
        uint64_t a = atomic_load_explicit(&s->gcbits[w].alloc, memory_order_relaxed);
        uint64_t m = gc_marks_word(s, w);
        if (m & ~a) *err = "a marked object is not allocated (marked while free)";
    }
    if (s->nelems && (s->nelems % 64) && (atomic_load_explicit(&s->gcbits[words - 1].alloc,
                                                               memory_order_relaxed) >>
                                          (s->nelems % 64)))
        *err = "an allocation bit is set past the span's last slot";
}

const char *gc_heap_check(void) {
    const char *err = NULL;
    gc_for_each_span(check_span, &err);
    return err;
}
