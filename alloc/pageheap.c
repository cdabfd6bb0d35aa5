/* alloc/pageheap.c — the page heap: free page runs, span structs, and the scavenger.
 *
 * Data it owns (all under alloc_heap_lock):
 *   - free runs: spans in state SPAN_FREE, on buckets[n] for n < 128 pages (LIFO, so the
 *     most recently freed — likely still resident — run is reused first) or on `large`
 *     (>= 128 pages, searched best-fit, lowest address on ties: keeps the heap compact);
 *   - span structs: recycled through a free list, never unmapped (lock-free readers may
 *     hold stale pointers; they check state);
 *   - per-page "released" bits in each arena (see alloc_arena).
 * Invariants: no two free runs are adjacent (freeing coalesces); the page map follows the
 * rule written above alloc_arena.
 *
 * The scavenger returns free pages to the OS (madvise) once they have been free for half
 * the decay interval; it wakes every quarter interval, so memory freed at t is released by
 * t + decay. It is a background thread started on demand (CGC_SCAVENGER=0: no thread;
 * slow paths then scavenge inline) and re-created lazily after fork.
 */
#include "cgc/internal.h"

#include <signal.h>
#include <string.h>

pthread_mutex_t alloc_heap_lock = PTHREAD_MUTEX_INITIALIZER;

#define NBUCKETS 128
static alloc_span_list buckets[NBUCKETS]; /* [heap] free runs of n pages, n < 128 */
static uint64_t bucket_nonempty[2];       /* [heap] bit n: buckets[n] has a run */
static alloc_span_list large_runs;        /* [heap] free runs of >= 128 pages */
static alloc_span *span_pool;             /* [heap] recycled span structs */
static alloc_heap_stats hs;               /* [heap] */
static _Atomic uint64_t unreleased_free_pages; /* [heap] free and resident (approximately);
                                                 read racily by alloc_scavenger_poke */
static _Atomic uint64_t last_inline_scavenge_ns; /* a hint: relaxed */

static uint64_t unrel_get(void) {
    return atomic_load_explicit(&unreleased_free_pages, memory_order_relaxed);
}
static void unrel_set(uint64_t v) { /* heap lock held */
    atomic_store_explicit(&unreleased_free_pages, v, memory_order_relaxed);
}

#if CGC_DEBUG >= 2
static void debug_check(void);
#else
static inline void debug_check(void);
#endif

/* ---- lists --------------------------------------------------------------------------- */
void alloc_list_push(alloc_span_list *l, alloc_span *s) {
    s->prev = NULL;
    s->next = l->head;
    if (l->head) l->head->prev = s;
    else l->tail = s;
    l->head = s;
    l->count++;
}

void alloc_list_append(alloc_span_list *l, alloc_span *s) {
    s->next = NULL;
    s->prev = l->tail;
    if (l->tail) l->tail->next = s;
    else l->head = s;
    l->tail = s;
    l->count++;
}

void alloc_list_remove(alloc_span_list *l, alloc_span *s) {
    if (s->prev) s->prev->next = s->next;
    else l->head = s->next;
    if (s->next) s->next->prev = s->prev;
    else l->tail = s->prev;
    s->next = s->prev = NULL;
    l->count--;
}

/* ---- span structs ---------------------------------------------------------------------- */
static alloc_span *span_new(void) {
    alloc_span *s = span_pool;
    if (s) {
        span_pool = s->next;
        uint64_t *side = s->leak_side; /* leak mode's side table stays with the struct */
        _Atomic uint8_t *marks = __atomic_load_n(&s->gcmarks, __ATOMIC_RELAXED); /* so do mark bytes */
        memset(s, 0, sizeof *s);
        s->leak_side = side;
        __atomic_store_n(&s->gcmarks, marks, __ATOMIC_RELAXED);
        return s;
    }
    return alloc_meta_alloc(sizeof(alloc_span));
}

static void span_dispose(alloc_span *s) {
    alloc_span_set_state(s, SPAN_META);
    s->next = span_pool;
    span_pool = s;
}

/* ---- released bits ----------------------------------------------------------------------
 * Runs may cross arena boundaries (regions are contiguous), so walk page by page per arena. */
typedef void (*page_range_fn)(alloc_arena *ar, size_t first, size_t n, void *arg);

static void for_each_arena_range(uintptr_t start, size_t npages, page_range_fn fn, void *arg) {
    while (npages > 0) {
        alloc_arena *ar = alloc_arena_of(start);
        size_t first = (start >> ALLOC_PAGE_SHIFT) & (ALLOC_ARENA_PAGES - 1);
        size_t n = ALLOC_ARENA_PAGES - first;
        if (n > npages) n = npages;
        fn(ar, first, n, arg);
        start += n * ALLOC_PAGE_SIZE;
        npages -= n;
    }
}

/* Mask of bits [lo, hi) within one 64-bit word (0 <= lo < hi <= 64). */
static inline uint64_t bit_range(size_t lo, size_t hi) {
    uint64_t m = hi == 64 ? ~(uint64_t)0 : (((uint64_t)1 << hi) - 1);
    return m & ~(((uint64_t)1 << lo) - 1);
}

static void count_released_fn(alloc_arena *ar, size_t first, size_t n, void *arg) {
    size_t *count = arg;
    for (size_t i = first, end = first + n; i < end;) {
        size_t w = i / 64, hi = end - w * 64 < 64 ? end - w * 64 : 64;
        *count += (size_t)alloc_popcount64(ar->released[w] & bit_range(i % 64, hi));
        i = w * 64 + hi;
    }
}

static void clear_released_fn(alloc_arena *ar, size_t first, size_t n, void *arg) {
    (void)arg;
    for (size_t i = first, end = first + n; i < end;) {
        size_t w = i / 64, hi = end - w * 64 < 64 ? end - w * 64 : 64;
        ar->released[w] &= ~bit_range(i % 64, hi);
        i = w * 64 + hi;
    }
}

/* Release every resident page of the range: madvise each maximal run of resident pages. */
static void release_fn(alloc_arena *ar, size_t first, size_t n, void *arg) {
    size_t *released = arg;
    size_t i = first, end = first + n;
    while (i < end) {
        while (i < end && ((ar->released[i / 64] >> (i % 64)) & 1)) i++;
        size_t run = i;
        while (i < end && !((ar->released[i / 64] >> (i % 64)) & 1)) {
            ar->released[i / 64] |= (uint64_t)1 << (i % 64);
            i++;
        }
        if (i > run) {
            plat_release((void *)(ar->base + run * ALLOC_PAGE_SIZE), (i - run) * ALLOC_PAGE_SIZE);
            *released += i - run;
        }
    }
}

/* ---- free runs ------------------------------------------------------------------------- */
static void free_insert(alloc_span *s) {
    alloc_span_set_state(s, SPAN_FREE);
    if (s->npages < NBUCKETS) {
        alloc_list_push(&buckets[s->npages], s);
        bucket_nonempty[s->npages / 64] |= (uint64_t)1 << (s->npages % 64);
    } else {
        alloc_list_push(&large_runs, s);
    }
    hs.free_bytes += s->npages * ALLOC_PAGE_SIZE;
}

static void free_remove(alloc_span *s) {
    if (s->npages < NBUCKETS) {
        alloc_list_remove(&buckets[s->npages], s);
        if (buckets[s->npages].head == NULL)
            bucket_nonempty[s->npages / 64] &= ~((uint64_t)1 << (s->npages % 64));
    } else {
        alloc_list_remove(&large_runs, s);
    }
    hs.free_bytes -= s->npages * ALLOC_PAGE_SIZE;
}

static alloc_span *free_find(size_t need) {
    for (size_t n = need; n < NBUCKETS; n++) {
        uint64_t w = bucket_nonempty[n / 64] >> (n % 64);
        if (w == 0) {
            n = (n / 64 + 1) * 64 - 1; /* skip to the next word */
            continue;
        }
        n += (size_t)__builtin_ctzll(w);
        if (n < NBUCKETS) return buckets[n].head;
    }
    alloc_span *best = NULL;
    for (alloc_span *s = large_runs.head; s; s = s->next) {
        if (s->npages < need) continue;
        if (!best || s->npages < best->npages ||
            (s->npages == best->npages && s->start < best->start))
            best = s;
    }
    return best;
}

/* Insert [start, start+npages) as a free run, merging with free neighbours. */
static alloc_span *free_coalesce(alloc_span *s, uint64_t now) {
    uint64_t age = now;
    alloc_pagemap_set(s->start, s->npages, NULL, false);
    alloc_span *left = alloc_span_of((void *)(s->start - 1));
    if (left && alloc_span_state(left) == SPAN_FREE && left->start + left->npages * ALLOC_PAGE_SIZE == s->start) {
        free_remove(left);
        alloc_pagemap_set(left->start + (left->npages - 1) * ALLOC_PAGE_SIZE, 1, NULL, false);
        /* A neighbour the scavenger already emptied holds no resident page: the merged run
         * is as young as the pages just freed. Otherwise the bigger part's age wins (so a
         * small free cannot keep a big idle run resident forever). */
        if (!left->released && left->npages >= s->npages) age = left->freed_at_ns;
        left->npages += s->npages;
        span_dispose(s);
        s = left;
    }
    uintptr_t end = s->start + s->npages * ALLOC_PAGE_SIZE;
    alloc_span *right = alloc_span_of((void *)end);
    if (right && alloc_span_state(right) == SPAN_FREE && right->start == end) {
        free_remove(right);
        alloc_pagemap_set(right->start, 1, NULL, false);
        if (!right->released && right->npages > s->npages) age = right->freed_at_ns;
        s->npages += right->npages;
        span_dispose(right);
    }
    s->freed_at_ns = age;
    s->released = 0;
    s->sizeclass = 0;
    alloc_pagemap_set(s->start, s->npages, s, true);
    free_insert(s);
    return s;
}

static bool heap_grow(size_t npages) {
    size_t bytes = npages * ALLOC_PAGE_SIZE;
    size_t size = (bytes + ALLOC_ARENA_SIZE - 1) & ~(ALLOC_ARENA_SIZE - 1);
    if (size < bytes) return false;
    uintptr_t base = alloc_arena_grow(size);
    if (base == 0) return false;
    hs.mapped += size;
    hs.released += size;
    alloc_span *s = span_new();
    if (s == NULL) return false;
    s->start = base;
    s->npages = size / ALLOC_PAGE_SIZE;
    s = free_coalesce(s, 0); /* fresh: nothing resident to scavenge */
    if (s->freed_at_ns == 0) s->released = 1;
    return true;
}

/* Split the first n pages off free span s (already off the lists); the rest goes back. */
static void split_tail(alloc_span *s, size_t n) {
    if (s->npages == n) return;
    alloc_span *rest = span_new();
    if (rest == NULL) return; /* keep the whole run: wastes pages, never corrupts */
    rest->start = s->start + n * ALLOC_PAGE_SIZE;
    rest->npages = s->npages - n;
    rest->freed_at_ns = s->freed_at_ns;
    rest->released = s->released;
    s->npages = n;
    alloc_pagemap_set(rest->start, rest->npages, rest, true);
    free_insert(rest);
}

alloc_span *alloc_heap_alloc(size_t npages, size_t align_pages, bool large) {
    if (align_pages == 0) align_pages = 1;
    size_t need = npages + align_pages - 1;
    if (need < npages || need > ((size_t)1 << (ALLOC_ADDR_BITS - ALLOC_PAGE_SHIFT))) return NULL;
    alloc_lock(&alloc_heap_lock);
    alloc_span *s = free_find(need);
    if (s == NULL) {
        if (!heap_grow(need)) {
            alloc_unlock(&alloc_heap_lock);
            return NULL;
        }
        s = free_find(need);
        if (s == NULL) {
            alloc_unlock(&alloc_heap_lock);
            return NULL;
        }
    }
    free_remove(s);
    alloc_pagemap_set(s->start, 1, NULL, false);
    if (s->npages > 1) alloc_pagemap_set(s->start + (s->npages - 1) * ALLOC_PAGE_SIZE, 1, NULL, false);
    size_t head = 0;
    if (align_pages > 1) {
        size_t first_page = s->start >> ALLOC_PAGE_SHIFT;
        head = (align_pages - first_page % align_pages) % align_pages;
    }
    if (head) { /* give the unaligned head back as its own run */
        alloc_span *h = span_new();
        if (h == NULL) {
            alloc_pagemap_set(s->start, s->npages, s, true);
            free_insert(s);
            alloc_unlock(&alloc_heap_lock);
            return NULL;
        }
        h->start = s->start;
        h->npages = head;
        h->freed_at_ns = s->freed_at_ns;
        h->released = s->released;
        s->start += head * ALLOC_PAGE_SIZE;
        s->npages -= head;
        alloc_pagemap_set(h->start, h->npages, h, true);
        free_insert(h);
    }
    split_tail(s, npages);
    size_t rel = 0;
    for_each_arena_range(s->start, s->npages, count_released_fn, &rel);
    s->zeroed = rel == s->npages;
    if (rel) for_each_arena_range(s->start, s->npages, clear_released_fn, NULL);
    hs.released -= rel * ALLOC_PAGE_SIZE;
    unrel_set(unrel_get() >= s->npages - rel ? unrel_get() - (s->npages - rel) : 0);
    hs.span_bytes += s->npages * ALLOC_PAGE_SIZE;
    s->released = 0;
    s->freed_at_ns = 0;
    s->next = s->prev = NULL;
    /* A span struct keeps its kind through the free runs: one that last held a collected
     * object must not come back as a malloc block of a collected kind (free and
     * malloc_usable_size would reject it). Callers that want another kind set it. */
    /* Atomic: a concurrent marker may read the kind of any span the page map names; it reads
     * the state first (acquire, below is the release), so it sees this store or a later one. */
    __atomic_store_n(&s->kind, (uint8_t)ALLOC_KIND_MALLOC, __ATOMIC_RELAXED);
    s->gctype = NULL;
    alloc_span_set_state(s, large ? SPAN_LARGE : SPAN_SMALL); /* small: the caller fills in the class */
    if (large) {
        hs.large_bytes += s->npages * ALLOC_PAGE_SIZE;
        hs.large_count++;
    }
    alloc_pagemap_set(s->start, s->npages, s, false);
    debug_check();
    alloc_unlock(&alloc_heap_lock);
    return s;
}

void alloc_heap_free(alloc_span *s) {
    alloc_lock(&alloc_heap_lock);
    uint64_t now = plat_coarse_now_ns();
    hs.span_bytes -= s->npages * ALLOC_PAGE_SIZE;
    if (alloc_span_state(s) != SPAN_SMALL) hs.large_bytes -= s->npages * ALLOC_PAGE_SIZE;
    unrel_set(unrel_get() + s->npages);
    s->owner = NULL;
    free_coalesce(s, now);
    debug_check();
    bool inline_scavenge = !alloc_opt.scavenger &&
                           now - atomic_load_explicit(&last_inline_scavenge_ns, memory_order_relaxed) >
                               alloc_opt.decay_ns / 4;
    alloc_unlock(&alloc_heap_lock);
    if (inline_scavenge) {
        atomic_store_explicit(&last_inline_scavenge_ns, now, memory_order_relaxed);
        alloc_heap_scavenge(alloc_opt.decay_ns / 2);
    } else {
        alloc_scavenger_poke();
    }
}

bool alloc_heap_resize(alloc_span *s, size_t npages) {
    if (npages == 0) return false;
    alloc_lock(&alloc_heap_lock);
    uint64_t now = plat_coarse_now_ns();
    bool ok = false;
    if (npages < s->npages) { /* give the tail back */
        alloc_span *tail = span_new();
        if (tail) {
            tail->start = s->start + npages * ALLOC_PAGE_SIZE;
            tail->npages = s->npages - npages;
            size_t freed = tail->npages * ALLOC_PAGE_SIZE;
            s->npages = npages;
            hs.span_bytes -= freed;
            hs.large_bytes -= freed;
            unrel_set(unrel_get() + tail->npages);
            free_coalesce(tail, now);
            ok = true;
        }
    } else if (npages == s->npages) {
        ok = true;
    } else { /* grow into the free run that follows, if there is one big enough */
        size_t extra = npages - s->npages;
        uintptr_t end = s->start + s->npages * ALLOC_PAGE_SIZE;
        alloc_span *right = alloc_span_of((void *)end);
        if (right && alloc_span_state(right) == SPAN_FREE && right->start == end &&
            right->npages >= extra) {
            free_remove(right);
            alloc_pagemap_set(right->start, 1, NULL, false);
            if (right->npages > 1)
                alloc_pagemap_set(right->start + (right->npages - 1) * ALLOC_PAGE_SIZE, 1, NULL, false);
            if (right->npages > extra) {
                right->start += extra * ALLOC_PAGE_SIZE;
                right->npages -= extra;
                alloc_pagemap_set(right->start, right->npages, right, true);
                free_insert(right);
            } else {
                span_dispose(right);
            }
            size_t rel = 0;
            for_each_arena_range(end, extra, count_released_fn, &rel);
            if (rel) for_each_arena_range(end, extra, clear_released_fn, NULL);
            hs.released -= rel * ALLOC_PAGE_SIZE;
            unrel_set(unrel_get() >= extra - rel ? unrel_get() - (extra - rel) : 0);
            hs.span_bytes += extra * ALLOC_PAGE_SIZE;
            hs.large_bytes += extra * ALLOC_PAGE_SIZE;
            alloc_pagemap_set(end, extra, s, false);
            s->npages = npages;
            ok = true;
        }
    }
    debug_check();
    alloc_unlock(&alloc_heap_lock);
    return ok;
}

static size_t scavenge_list(alloc_span_list *l, uint64_t now, uint64_t min_age_ns) {
    size_t released = 0;
    for (alloc_span *s = l->head; s; s = s->next) {
        if (s->released || (now - s->freed_at_ns < min_age_ns && s->freed_at_ns != 0)) continue;
        for_each_arena_range(s->start, s->npages, release_fn, &released);
        s->released = 1;
    }
    return released;
}

size_t alloc_heap_scavenge(uint64_t min_age_ns) {
    alloc_lock(&alloc_heap_lock);
    uint64_t now = plat_coarse_now_ns();
    size_t pages = scavenge_list(&large_runs, now, min_age_ns);
    for (size_t n = 1; n < NBUCKETS; n++) pages += scavenge_list(&buckets[n], now, min_age_ns);
    hs.released += pages * ALLOC_PAGE_SIZE;
    hs.scavenged += pages * ALLOC_PAGE_SIZE;
    unrel_set(min_age_ns == 0 || unrel_get() <= pages ? 0 : unrel_get() - pages);
    alloc_unlock(&alloc_heap_lock);
    return pages * ALLOC_PAGE_SIZE;
}

size_t cgc_release_memory(void) {
    alloc_ensure_init();
    return alloc_heap_scavenge(0);
}

void alloc_heap_get_stats(alloc_heap_stats *out) {
    alloc_lock(&alloc_heap_lock);
    *out = hs;
    alloc_unlock(&alloc_heap_lock);
}


/* ---- heap checker (debug builds, tests) -----------------------------------------------
 * Walks every free run and checks the invariants written at the top of this file and above
 * alloc_arena. The heap lock must be held. Returns NULL or a description of the first
 * violation. Linear in the number of free runs: CGC_DEBUG=2 runs it after every page-heap
 * operation (Lua's "heap checker in test builds"). */
static const char *check_run(const alloc_span *s, uint64_t *bytes) {
    if (alloc_span_state(s) != SPAN_FREE) return "a span on the free lists is not free";
    if (s->npages == 0) return "an empty free run";
    if (alloc_span_of((void *)s->start) != s) return "a free run's first page does not map to it";
    uintptr_t last = s->start + (s->npages - 1) * ALLOC_PAGE_SIZE;
    if (alloc_span_of((void *)last) != s) return "a free run's last page does not map to it";
    alloc_span *l = alloc_span_of((void *)(s->start - 1));
    if (l && alloc_span_state(l) == SPAN_FREE && l != s) return "two adjacent free runs";
    alloc_span *r = alloc_span_of((void *)(s->start + s->npages * ALLOC_PAGE_SIZE));
    if (r && alloc_span_state(r) == SPAN_FREE && r != s) return "two adjacent free runs";
    *bytes += s->npages * ALLOC_PAGE_SIZE;
    return NULL;
}

const char *alloc_heap_check_locked(void) {
    uint64_t bytes = 0;
    const char *err;
    for (size_t n = 1; n < NBUCKETS; n++) {
        bool nonempty = (bucket_nonempty[n / 64] >> (n % 64)) & 1;
        if (nonempty != (buckets[n].head != NULL)) return "bucket bitmap disagrees with a bucket";
        size_t count = 0;
        for (alloc_span *s = buckets[n].head; s; s = s->next, count++) {
            if (s->npages != n) return "a free run in the wrong bucket";
            if ((err = check_run(s, &bytes)) != NULL) return err;
        }
        if (count != buckets[n].count) return "a bucket's count is wrong";
    }
    for (alloc_span *s = large_runs.head; s; s = s->next) {
        if (s->npages < NBUCKETS) return "a small run on the large list";
        if ((err = check_run(s, &bytes)) != NULL) return err;
    }
    if (bytes != hs.free_bytes) return "free byte count disagrees with the free runs";
    if (hs.free_bytes + hs.span_bytes != hs.mapped) return "free + in-use bytes != mapped";
    return NULL;
}

const char *alloc_heap_check(void) {
    alloc_lock(&alloc_heap_lock);
    const char *err = alloc_heap_check_locked();
    alloc_unlock(&alloc_heap_lock);
    return err;
}

#if CGC_DEBUG >= 2
static void debug_check(void) {
    const char *err = alloc_heap_check_locked();
    if (err) alloc_assert_fail(err, __FILE__, __LINE__);
}
#else
static inline void debug_check(void) {}
#endif

/* ---- the background scavenger ---------------------------------------------------------- */
static _Atomic int scavenger_state; /* 0 none, 1 starting/running */

static void *scavenger_main(void *arg) {
    (void)arg;
    for (;;) {
        plat_sleep_ns(alloc_opt.decay_ns / 4);
        alloc_heap_scavenge(alloc_opt.decay_ns / 2);
    }
    return NULL;
}

void alloc_scavenger_poke(void) {
    if (CGC_LIKELY(atomic_load_explicit(&scavenger_state, memory_order_relaxed) != 0)) return;
    if (!alloc_opt.scavenger || atomic_load_explicit(&alloc_ready, memory_order_acquire) < 2) return;
    /* Only worth a thread once a meaningful amount of memory waits for release. */
    if (unrel_get() * ALLOC_PAGE_SIZE < ((size_t)4 << 20)) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&scavenger_state, &expected, 1,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return;
    if (!plat_spawn_detached(scavenger_main, NULL, 64 * 1024, 0))
        atomic_store_explicit(&scavenger_state, 0, memory_order_relaxed);
}

void alloc_scavenger_after_fork_child(void) {
    atomic_store_explicit(&scavenger_state, 0, memory_order_relaxed);
}
