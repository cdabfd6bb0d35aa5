/* alloc/cache.c — per-thread caches (Go's mcache) and frees from other threads.
 *
 * A thread's cache owns spans: per size class, `cur` (allocations pop its free list with no
 * lock and no atomic read-modify-write), `avail` (other owned spans with free slots) and
 * `full` (owned spans that had none when last looked at). A free by the owning thread is a
 * plain push onto the span's free list, whichever of its spans it hits.
 *
 * A free by any other thread (mimalloc's thread_free, kept as a bitmap instead of a list so
 * the freed block is never written and a second free is always seen):
 *     check the slot's alloc bit, fetch_or its remote bit (a set bit means double free),
 *     fetch_add remote_n; the freer whose add found 0 makes sure somebody will look:
 *       owner == NULL  -> collect it now under the central lock;
 *       span parked full -> bump owner->notify[class].
 * Parking a span as full is the mirror image: store full=1, then load remote_n (both
 * seq_cst), so either the owner sees the pending free or the freer sees the flag.
 * The owner collects pending frees (exchange remote_n, then exchange each remote word) when
 * its cur span runs dry, when notified, and when it abandons the span.
 *
 * Thread exit (pthread key destructor) abandons every span to the central lists and marks
 * the thread DEAD; later allocations on that thread use the orphan cache under a lock, and
 * its frees take the remote path. Cache structs are never unmapped (a remote freer may still
 * hold a stale owner pointer); they are reused by new threads.
 */
#include "cgc/internal.h"

#include <string.h>

CGC_TLS alloc_cache *alloc_tls_cache;
CGC_TLS volatile unsigned alloc_tls_nostop;
CGC_TLS volatile unsigned alloc_tls_stop_deferred;
static void no_deferred_stop(void) { alloc_tls_stop_deferred = 0; }
void (*alloc_deferred_stop_hook)(void) = no_deferred_stop;
void (*alloc_gc_cache_release_hook)(alloc_cache *c);
void (*alloc_gc_fork_child_hook)(void);
void (*alloc_gc_stats_hook)(cgc_stats *st);
alloc_span alloc_empty_span = {.state = SPAN_SMALL};
pthread_mutex_t alloc_cache_registry_lock = PTHREAD_MUTEX_INITIALIZER;
alloc_cache *alloc_cache_registry;   /* [registry] every cache, live or free */
alloc_cache alloc_orphan_cache;
pthread_mutex_t alloc_orphan_lock = PTHREAD_MUTEX_INITIALIZER;
uint64_t alloc_dead_nmalloc, alloc_dead_nfree, alloc_dead_nremote; /* [registry] */
uint64_t alloc_threads_created;                                     /* [registry] */

static void bin_init(alloc_bin *b, unsigned cls) {
    b->hot = NULL;
    b->nhot = 0;
    /* about 32 KiB of recently freed blocks per class, at least 2 and at most 128 */
    uint32_t n = cls ? 32768u / alloc_classes[cls].size : 0;
    b->hot_max = n < 2 ? 2 : n > 128 ? 128 : n;
    b->cur = &alloc_empty_span;
    b->avail.head = b->full.head = NULL;
    b->avail.tail = b->full.tail = NULL;
    b->avail.count = b->full.count = 0;
}

void alloc_cache_init(alloc_cache *c) {
    for (unsigned i = 0; i < ALLOC_NCLASSES; i++) {
        bin_init(&c->bins[i], i);
        for (unsigned k = 0; k < ALLOC_GC_KINDS; k++) {
            c->gc_cur[k][i] = &alloc_empty_span;
            c->gc_free[k][i] = 0;
            c->gc_word[k][i] = 0;
        }
        atomic_store_explicit(&c->notify[i], 0, memory_order_relaxed);
    }
}

/* ---- spans ----------------------------------------------------------------------------- */
void alloc_span_set_class(alloc_span *s, unsigned cls, unsigned kind) {
    const alloc_class_info *ci = &alloc_classes[cls];
    s->sizeclass = (uint8_t)cls;
    s->elem_size = ci->size;
    s->divmul = ci->divmul;
    s->nelems = ci->nelems;
    s->used = 0;
    /* The kind last, with release: a concurrent marker reads the fields above only after
     * it loaded a collected kind (acquire, gc/mark.c object_in). Stored first, the marker
     * could pair this life's kind with the last life's size and divisor (a TSan report in
     * the marker's slot lookup). */
    __atomic_store_n(&s->kind, (uint8_t)kind, __ATOMIC_RELEASE);
}

void alloc_span_init_small(alloc_span *s, unsigned cls, unsigned kind) {
    alloc_span_set_class(s, cls, kind);
    s->in_full = 0;
    atomic_store_explicit(&s->remote_n, 0, memory_order_relaxed);
    atomic_store_explicit(&s->full, 0, memory_order_relaxed);
    for (unsigned w = 0; w < ALLOC_BITMAP_WORDS; w++)
        atomic_store_explicit(&s->remote_bits[w], 0, memory_order_relaxed);
    atomic_store_explicit(&s->bump, 0, memory_order_relaxed);
    s->free = NULL;
}

/* Thread the next page's worth of never-used slots onto the (empty) free list, in address
 * order so sequential allocations are sequential in memory. [owner] */
static void span_extend(alloc_span *s) {
    uint32_t bump = atomic_load_explicit(&s->bump, memory_order_relaxed);
    uint32_t n = (uint32_t)(4096 / s->elem_size);
    if (n == 0) n = 1;
    if (n > s->nelems - bump) n = s->nelems - bump;
    void *next = s->free;
    for (uint32_t i = bump + n; i-- > bump;) {
        void **slot = (void **)(s->start + (size_t)i * s->elem_size);
        slot[0] = next;
        slot[1] = (void *)alloc_freed_tag(slot);
        next = slot;
    }
    s->free = next;
    atomic_store_explicit(&s->bump, bump + n, memory_order_relaxed);
}

void alloc_span_collect(alloc_span *s) {
    atomic_exchange_explicit(&s->remote_n, 0, memory_order_acq_rel);
    unsigned words = (s->nelems + 63) / 64;
    for (unsigned w = 0; w < words; w++) {
        if (atomic_load_explicit(&s->remote_bits[w], memory_order_relaxed) == 0) continue;
        uint64_t bits = atomic_exchange_explicit(&s->remote_bits[w], 0, memory_order_acquire);
        while (bits) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            void **slot = (void **)(s->start + (size_t)(w * 64 + b) * s->elem_size);
            slot[0] = s->free; /* slot[1] already holds the tag: the freer wrote it */
            s->free = slot;
            s->used--;
        }
    }
}

/* ---- the owner's slow paths --------------------------------------------------------------- */

/* cur ran dry: park it on the full list unless frees are pending. Returns true if s got
 * free slots back and should stay cur. */
static bool park_full(alloc_bin *b, alloc_span *s) {
    for (;;) {
        atomic_store_explicit(&s->full, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&s->remote_n, memory_order_seq_cst) == 0) break;
        atomic_store_explicit(&s->full, 0, memory_order_relaxed);
        alloc_span_collect(s);
        if (s->free) return true;
    }
    s->in_full = 1;
    alloc_list_push(&b->full, s);
    b->cur = &alloc_empty_span;
    return false;
}

static void unpark(alloc_bin *b, alloc_span *s) {
    alloc_list_remove(&b->full, s);
    s->in_full = 0;
    atomic_store_explicit(&s->full, 0, memory_order_relaxed);
}

/* Someone freed into spans we parked: move those with free slots back to avail. */
static void take_notified(alloc_cache *c, alloc_bin *b, unsigned cls) {
    if (atomic_load_explicit(&c->notify[cls], memory_order_relaxed) == 0) return;
    atomic_exchange_explicit(&c->notify[cls], 0, memory_order_acquire);
    alloc_span *next;
    for (alloc_span *s = b->full.head; s; s = next) {
        next = s->next;
        if (atomic_load_explicit(&s->remote_n, memory_order_acquire) == 0) continue;
        alloc_span_collect(s);
        if (!alloc_span_has_room(s)) continue;
        unpark(b, s);
        if (s->used == 0 && (b->avail.count > 0)) {
            alloc_heap_free(s);
            continue;
        }
        alloc_list_append(&b->avail, s);
    }
}

void alloc_cache_take_span(alloc_cache *c, alloc_span *s) {
    alloc_bin *b = &c->bins[s->sizeclass];
    if (alloc_span_has_room(s)) {
        alloc_list_append(&b->avail, s);
        return;
    }
    for (;;) { /* no free slot: park it, unless frees arrived since the collect */
        atomic_store_explicit(&s->full, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&s->remote_n, memory_order_seq_cst) == 0) break;
        atomic_store_explicit(&s->full, 0, memory_order_relaxed);
        alloc_span_collect(s);
        if (s->free) {
            alloc_list_append(&b->avail, s);
            return;
        }
    }
    s->in_full = 1;
    alloc_list_push(&b->full, s);
}

static inline void *pop(alloc_cache *c, alloc_span *s) {
    void **p = s->free;
    s->free = p[0];
    p[1] = NULL; /* no longer tagged free */
    s->used++;
    alloc_count(&c->nmalloc);
    return p;
}

void *alloc_cache_refill(alloc_cache *c, unsigned cls) {
    alloc_bin *b = &c->bins[cls];
    alloc_span *s = b->cur;
    if (s != &alloc_empty_span) {
        if (atomic_load_explicit(&s->remote_n, memory_order_relaxed) > 0) alloc_span_collect(s);
        if (s->free == NULL && atomic_load_explicit(&s->bump, memory_order_relaxed) < s->nelems)
            span_extend(s);
        if (s->free || park_full(b, s)) return pop(c, s);
    }
    take_notified(c, b, cls);
    s = b->avail.head;
    if (s) {
        alloc_list_remove(&b->avail, s);
    } else {
        s = alloc_central_adopt(cls, c);
        if (s == NULL) {
            s = alloc_heap_alloc(alloc_classes[cls].npages, 1, false);
            if (s == NULL) return NULL;
            alloc_span_init_small(s, cls, ALLOC_KIND_MALLOC);
            atomic_store_explicit(&s->owner, c, memory_order_release);
        }
    }
    if (s->free == NULL) span_extend(s);
    CGC_ASSERT(s->free != NULL);
    b->cur = s;
    return pop(c, s);
}

/* Give hot-list block q back to its span (the caller owns the span). */
static void hot_return(alloc_cache *c, void **q) {
    alloc_span *s = alloc_span_of(q);
    q[0] = s->free; /* q[1] keeps its free tag */
    s->free = q;
    if (--s->used == 0 || s->in_full) alloc_cache_free_slow(c, s);
}

void alloc_cache_flush_hot(alloc_cache *c, alloc_bin *b) {
    uint32_t keep = b->hot_max / 2;
    void **q = b->hot;
    for (uint32_t i = 1; i < keep && q[0] != NULL; i++) q = q[0];
    void **rest = keep ? q[0] : b->hot;
    if (keep) q[0] = NULL;
    else b->hot = NULL;
    b->nhot = keep;
    while (rest != NULL) {
        void **next = rest[0];
        hot_return(c, rest);
        rest = next;
    }
}

static void flush_hot_all(alloc_cache *c, alloc_bin *b) {
    void **q = b->hot;
    b->hot = NULL;
    b->nhot = 0;
    while (q != NULL) {
        void **next = q[0];
        hot_return(c, q);
        q = next;
    }
}

bool alloc_cache_on_hot(const alloc_bin *b, const void *p) {
    for (void **q = b->hot; q != NULL; q = q[0])
        if (q == p) return true;
    return false;
}

/* A local free hit a parked span or emptied one. */
void alloc_cache_free_slow(alloc_cache *c, alloc_span *s) {
    alloc_bin *b = &c->bins[s->sizeclass];
    if (s->in_full) {
        unpark(b, s);
        if (s->used > 0) {
            alloc_list_append(&b->avail, s);
            return;
        }
    } else if (s == b->cur || s->used > 0) {
        return; /* keep cur even when empty: the next malloc of this class wants it */
    } else {
        alloc_list_remove(&b->avail, s);
    }
    /* used == 0 means no slot is allocated, so no remote free can be pending. */
    alloc_heap_free(s);
}

void alloc_remote_free(alloc_span *s, void *p, uint32_t idx) {
    void **blk = p;
    /* The class, read while the span is certainly alive: until our bit is collected, our
     * block counts as used. Once the bit is set, another thread (a dying owner abandoning
     * the span) may collect it, find the span empty and give it back to the page heap,
     * which rewrites its fields — s->sizeclass among them (TSan: alloc_central_collect
     * reading it against free_coalesce writing it). */
    unsigned cls = s->sizeclass;
    if (idx >= atomic_load_explicit(&s->bump, memory_order_relaxed) ||
        blk[1] == (void *)alloc_freed_tag(p)) {
        /* Never handed out, or tagged free: on the owner's free list (we cannot walk it from
         * here; a false alarm needs program data equal to a random 64-bit key). */
        alloc_report_error("double free", p);
        return;
    }
    uint64_t bit = (uint64_t)1 << (idx & 63);
    blk[1] = (void *)alloc_freed_tag(p);
    uint64_t old = atomic_fetch_or_explicit(&s->remote_bits[idx >> 6], bit, memory_order_acq_rel);
    if (old & bit) {
        alloc_report_error("double free", p);
        return;
    }
    alloc_cache *me = alloc_tls_cache;
    if (alloc_cache_valid(me)) alloc_count(&me->nremote);
    else atomic_fetch_add_explicit(&alloc_orphan_nremote, 1, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&s->remote_n, 1, memory_order_seq_cst) != 0) return;
    alloc_cache *owner = atomic_load_explicit(&s->owner, memory_order_seq_cst);
    if (owner == NULL) alloc_central_collect(s, cls);
    else if (atomic_load_explicit(&s->full, memory_order_seq_cst))
        atomic_fetch_add_explicit(&owner->notify[cls], 1, memory_order_release);
}

/* ---- cache lifetime -------------------------------------------------------------------- */
static pthread_key_t cache_key;
static bool cache_key_ready;

static void cache_thread_exit(void *arg) {
    alloc_cache *c = arg;
    alloc_tls_cache = ALLOC_CACHE_DEAD;
    alloc_cache_destroy(c);
}

void alloc_cache_key_init(void) {
    if (pthread_key_create(&cache_key, cache_thread_exit) == 0) {
        cache_key_ready = true;
        alloc_cache *c = alloc_tls_cache;
        if (alloc_cache_valid(c)) pthread_setspecific(cache_key, c);
    }
}

alloc_cache *alloc_cache_create(void) {
    alloc_lock(&alloc_cache_registry_lock);
    alloc_cache *c;
    for (c = alloc_cache_registry; c; c = c->reg_next)
        if (!c->live) break;
    if (c == NULL) {
        c = alloc_meta_new(sizeof(alloc_cache));
        if (c == NULL) {
            alloc_unlock(&alloc_cache_registry_lock);
            return NULL;
        }
        c->reg_next = alloc_cache_registry;
        alloc_cache_registry = c;
    }
    alloc_cache_init(c);
    c->live = 1;
    alloc_threads_created++;
    alloc_unlock(&alloc_cache_registry_lock);
    alloc_tls_cache = c;
    /* pthread_setspecific may itself call malloc: the TLS pointer is already set. */
    if (cache_key_ready) pthread_setspecific(cache_key, c);
    return c;
}

static void abandon_list(alloc_span_list *l) {
    while (l->head) {
        alloc_span *s = l->head;
        alloc_list_remove(l, s);
        alloc_central_abandon(s);
    }
}

/* Give away every span of c. The caller is c's thread, or the only thread (fork child). */
static void cache_release_spans(alloc_cache *c) {
    if (alloc_gc_cache_release_hook) {
        /* Under the registry lock: the collector gives every cache's collected spans back
         * at mark termination (gc_prepare_sweep, which walks the registry under this lock
         * with the registered threads stopped), and an exiting thread has unregistered
         * from the collector already, so nothing stops it. Without the lock both could
         * take the same current span and file it twice (list corruption: a SIGSEGV of
         * gc-stress-checkmark-long, whose helper threads exit all the time). */
        alloc_lock(&alloc_cache_registry_lock);
        alloc_gc_cache_release_hook(c);
        alloc_unlock(&alloc_cache_registry_lock);
    }
    for (unsigned i = 1; i < ALLOC_NCLASSES; i++) {
        alloc_bin *b = &c->bins[i];
        flush_hot_all(c, b);
        if (b->cur != &alloc_empty_span) alloc_central_abandon(b->cur);
        b->cur = &alloc_empty_span;
        abandon_list(&b->avail);
        abandon_list(&b->full);
    }
}

static void cache_retire_counts(alloc_cache *c) {
    alloc_dead_nmalloc += atomic_load_explicit(&c->nmalloc, memory_order_relaxed);
    alloc_dead_nfree += atomic_load_explicit(&c->nfree, memory_order_relaxed);
    alloc_dead_nremote += atomic_load_explicit(&c->nremote, memory_order_relaxed);
    atomic_store_explicit(&c->nmalloc, 0, memory_order_relaxed);
    atomic_store_explicit(&c->nfree, 0, memory_order_relaxed);
    atomic_store_explicit(&c->nremote, 0, memory_order_relaxed);
}

void alloc_cache_destroy(alloc_cache *c) {
    cache_release_spans(c);
    alloc_lock(&alloc_cache_registry_lock);
    cache_retire_counts(c);
    c->live = 0;
    alloc_unlock(&alloc_cache_registry_lock);
}

/* In a fork child only the forking thread exists: the other caches' threads are gone. Their
 * spans go to the central lists so the child can reuse and free into them. Runs before any
 * other thread can exist, with every lock freshly initialised. */
void alloc_cache_fork_child(void) {
    alloc_cache *me = alloc_tls_cache;
    for (alloc_cache *c = alloc_cache_registry; c; c = c->reg_next) {
        if (c == me || !c->live) continue;
        cache_release_spans(c);
        cache_retire_counts(c);
        c->live = 0;
    }
}
