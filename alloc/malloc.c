/* alloc/malloc.c — the explicit-free heap's entry points, with C-library semantics.
 *
 * Fast paths are inline here: a small malloc is a table lookup, a pop from the thread's
 * current span and one bit set; a free is a page-map lookup, two checks (the block is the
 * start of an allocated slot; this thread owns the span) and a push. Everything else —
 * large blocks, other threads' spans, first use, errors — goes to a slow path.
 *
 * Semantics (DESIGN §4): NULL + ENOMEM on overflow or exhaustion; posix_memalign returns
 * EINVAL for a bad alignment and leaves *out alone; free preserves errno; a double free or
 * a free of anything but the start of a live block is reported (alloc_report_error), never
 * followed into a crash. A pointer whose page is not in cgc's heap is never dereferenced.
 */
#include "cgc/internal.h"

#include <errno.h>
#include <string.h>

_Atomic uint64_t alloc_orphan_nlarge; /* large allocations by threads without a cache */
_Atomic uint64_t alloc_orphan_nfree;   /* large frees by threads without a cache */
_Atomic uint64_t alloc_orphan_nremote; /* small frees by threads without a cache */

/* ---- allocation ------------------------------------------------------------------------ */

static inline void *cache_alloc(alloc_cache *c, unsigned cls) {
    alloc_bin *b = &c->bins[cls];
    void **p = b->hot;
    if (CGC_LIKELY(p != NULL)) { /* the block this thread freed last: likely in cache */
        b->hot = p[0];
        b->nhot--;
        p[1] = NULL;
        alloc_count(&c->nmalloc);
        return p;
    }
    alloc_span *s = b->cur;
    p = s->free;
    if (CGC_LIKELY(p != NULL)) {
        s->free = p[0];
        p[1] = NULL; /* drop the freed tag: the block is live */
        s->used++;
        alloc_count(&c->nmalloc);
        return p;
    }
    p = alloc_cache_refill(c, cls);
    if (CGC_UNLIKELY(p == NULL)) errno = ENOMEM; /* the fast path returns this directly */
    return p;
}

void *alloc_large(size_t n, size_t align, bool zero) {
    if (n > ((size_t)1 << ALLOC_ADDR_BITS)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t npages = (n + ALLOC_PAGE_SIZE - 1) >> ALLOC_PAGE_SHIFT;
    if (npages == 0) npages = 1;
    size_t align_pages = align > ALLOC_PAGE_SIZE ? align / ALLOC_PAGE_SIZE : 1;
    alloc_span *s = alloc_heap_alloc(npages, align_pages, true);
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (zero && !s->zeroed) memset((void *)s->start, 0, npages * ALLOC_PAGE_SIZE);
    alloc_cache *c = alloc_tls_cache;
    if (alloc_cache_valid(c)) alloc_count(&c->nmalloc);
    else atomic_fetch_add_explicit(&alloc_orphan_nlarge, 1, memory_order_relaxed);
    return (void *)s->start;
}

static void *alloc_small_slow(unsigned cls) {
    alloc_cache *c = alloc_tls_cache;
    if (c == NULL) c = alloc_cache_create();
    void *p;
    if (alloc_cache_valid(c)) {
        p = cache_alloc(c, cls);
    } else { /* before a cache can exist, or after this thread's was torn down */
        alloc_lock(&alloc_orphan_lock);
        p = cache_alloc(&alloc_orphan_cache, cls);
        alloc_unlock(&alloc_orphan_lock);
    }
    if (p == NULL) errno = ENOMEM;
    return p;
}

CGC_NOINLINE void *alloc_malloc_slow(size_t n, bool zero) {
    alloc_ensure_init();
    if (n > ALLOC_SMALL_MAX) return alloc_large(n, 1, zero);
    void *p = alloc_small_slow(alloc_size_class(n));
    if (p && zero) memset(p, 0, n);
    return p;
}

void *cgc_malloc(size_t n) {
    alloc_cache *c = alloc_tls_cache;
    if (CGC_LIKELY(n <= ALLOC_SMALL_MAX && alloc_cache_valid(c))) return cache_alloc(c, alloc_size_class(n));
    return alloc_malloc_slow(n, false);
}

void *cgc_calloc(size_t count, size_t n) {
    size_t total;
    if (CGC_UNLIKELY(__builtin_mul_overflow(count, n, &total))) {
        errno = ENOMEM;
        return NULL;
    }
    if (total > ALLOC_SMALL_MAX) return alloc_malloc_slow(total, true);
    void *p = cgc_malloc(total);
    if (CGC_LIKELY(p != NULL)) memset(p, 0, total);
    return p;
}

/* Smallest class whose size is a multiple of align (<= page size) and holds n. */
static unsigned aligned_class(size_t n, size_t align) {
    for (unsigned c = alloc_size_class(n); c < ALLOC_NCLASSES; c++)
        if (alloc_classes[c].size % align == 0) return c;
    return 0;
}

void *alloc_aligned(size_t align, size_t n) {
    alloc_ensure_init();
    if (align <= ALLOC_MIN_ALIGN) return cgc_malloc(n);
    if (n <= ALLOC_SMALL_MAX && align <= ALLOC_PAGE_SIZE) {
        unsigned c = aligned_class(n == 0 ? 1 : n, align);
        if (c != 0) return alloc_small_slow(c);
    }
    if (align > ((size_t)1 << (ALLOC_ADDR_BITS - 1))) {
        errno = ENOMEM;
        return NULL;
    }
    return alloc_large(n, align, false);
}

static inline bool pow2(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

int cgc_posix_memalign(void **out, size_t align, size_t n) {
    if (!pow2(align) || align % sizeof(void *) != 0) return EINVAL;
    int saved = errno;
    void *p = alloc_aligned(align, n);
    errno = saved;
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

void *cgc_aligned_alloc(size_t align, size_t n) {
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return alloc_aligned(align, n);
}

void *cgc_memalign(size_t align, size_t n) {
    /* glibc rounds a non-power-of-two alignment up rather than failing. */
    if (align > ((size_t)1 << (ALLOC_ADDR_BITS - 1))) {
        errno = EINVAL;
        return NULL;
    }
    if (!pow2(align)) {
        size_t a = ALLOC_MIN_ALIGN;
        while (a < align) a <<= 1;
        align = a;
    }
    return alloc_aligned(align, n);
}

/* ---- free ------------------------------------------------------------------------------ */

/* Is p (tagged free) really on s's free list? The tag makes this walk rare: it runs only
 * for a double free or program data that equals the random tag. [owner] */
static bool on_free_list(const alloc_span *s, const void *p) {
    for (void **q = s->free; q != NULL; q = q[0])
        if (q == p) return true;
    return false;
}

/* Free of slot idx of a span c owns, with every check (the fast path's, spelled out). */
static void local_free(alloc_cache *c, alloc_span *s, void *p, uint32_t idx) {
    void **blk = p;
    if (idx >= atomic_load_explicit(&s->bump, memory_order_relaxed) ||
        (alloc_bits_load(&s->remote_bits[idx >> 6]) & ((uint64_t)1 << (idx & 63))) ||
        (blk[1] == (void *)alloc_freed_tag(p) &&
         (on_free_list(s, p) || alloc_cache_on_hot(&c->bins[s->sizeclass], p)))) {
        alloc_report_error("double free", p);
        return;
    }
    blk[0] = s->free;
    blk[1] = (void *)alloc_freed_tag(p);
    s->free = p;
    alloc_count(&c->nfree);
    if (--s->used == 0 || s->in_full) alloc_cache_free_slow(c, s);
}

CGC_NOINLINE void alloc_free_slow(void *p, alloc_span *s) {
    if (p == NULL) return;
    alloc_ensure_init();
    if (s == NULL) {
        /* Inside one of our arenas but in no span: an interior page of a free run, e.g. a
         * large block freed a second time after its pages coalesced with a neighbour's. */
        uintptr_t a = (uintptr_t)p;
        bool ours = !(a >> ALLOC_ADDR_BITS) &&
                    atomic_load_explicit(&alloc_arena_index[a >> ALLOC_ARENA_SHIFT],
                                         memory_order_acquire) != NULL;
        alloc_report_error(ours ? "double free (or free of a pointer that is not a live block)"
                                : "free of a pointer cgc did not allocate", p);
        return;
    }
    if (s->kind != ALLOC_KIND_MALLOC) {
        alloc_report_error("free of a collected object (collected memory is never freed by hand)", p);
        return;
    }
    uint8_t state = alloc_span_state(s);
    if (state == SPAN_LARGE) {
        /* The CAS makes two racing frees of one block a reported error, not a corruption. */
        uint8_t expect = SPAN_LARGE;
        if ((uintptr_t)p != s->start ||
            !__atomic_compare_exchange_n(&s->state, &expect, (uint8_t)SPAN_LARGE_FREEING, false,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            alloc_report_error("free of a pointer that is not the start of a live block", p);
            return;
        }
        alloc_cache *c = alloc_tls_cache;
        if (alloc_cache_valid(c)) alloc_count(&c->nfree);
        else atomic_fetch_add_explicit(&alloc_orphan_nfree, 1, memory_order_relaxed);
        alloc_heap_free(s);
        return;
    }
    if (state != SPAN_SMALL) {
        alloc_report_error("double free (or free of a pointer that is not a live block)", p);
        return;
    }
    uintptr_t a = (uintptr_t)p;
    uint32_t idx = alloc_slot_index(s, a);
    if (idx >= s->nelems || a != s->start + (size_t)idx * s->elem_size) {
        alloc_report_error("free of a pointer that is not the start of a live block", p);
        return;
    }
    alloc_cache *c = alloc_tls_cache;
    if (alloc_cache_valid(c)) {
        alloc_cache *owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
        if (owner == NULL && alloc_central_claim(s, c)) owner = c;
        if (owner == c) {
            local_free(c, s, p, idx);
            return;
        }
    }
    alloc_remote_free(s, p, idx);
}

void cgc_free(void *p) {
    alloc_span *s = alloc_span_of(p);
    if (CGC_LIKELY(s != NULL && alloc_span_state(s) == SPAN_SMALL)) {
        alloc_cache *c = alloc_tls_cache;
        bool exact;
        uint32_t idx = alloc_slot_index_exact(s, (uintptr_t)p, &exact);
        void **blk = p;
        /* Fast path: our span, the start of a slot that was handed out, not tagged free:
         * onto the thread's hot list for its class (the span does not see it yet).
         * A tagged block (double free, or a block another thread freed whose free is still
         * pending) takes the slow path, which tells the cases apart. */
        if (CGC_LIKELY(atomic_load_explicit(&s->owner, memory_order_relaxed) == c &&
                       alloc_cache_valid(c) && exact &&
                       idx < atomic_load_explicit(&s->bump, memory_order_relaxed) &&
                       blk[1] != (void *)alloc_freed_tag(p))) {
            alloc_bin *b = &c->bins[s->sizeclass];
            blk[0] = b->hot;
            blk[1] = (void *)alloc_freed_tag(p);
            b->hot = blk;
            alloc_count(&c->nfree);
            if (CGC_UNLIKELY(++b->nhot > b->hot_max)) alloc_cache_flush_hot(c, b);
            return;
        }
    }
    alloc_free_slow(p, s);
}

/* ---- size queries and realloc ----------------------------------------------------------- */

/* Usable size of the live block starting at p, or 0 if p is not one. */
static size_t live_block_size(const void *p, alloc_span *s) {
    if (s == NULL || s->kind != ALLOC_KIND_MALLOC) return 0; /* not ours, or collected */
    uintptr_t a = (uintptr_t)p;
    uint8_t state = alloc_span_state(s);
    if (state == SPAN_LARGE) return a == s->start ? s->npages * ALLOC_PAGE_SIZE : 0;
    if (state != SPAN_SMALL) return 0;
    uint32_t idx = alloc_slot_index(s, a);
    if (idx >= atomic_load_explicit(&s->bump, memory_order_relaxed) ||
        a != s->start + (size_t)idx * s->elem_size)
        return 0;
    if (((void *const *)p)[1] == (void *)alloc_freed_tag(p)) return 0; /* tagged free */
    return s->elem_size;
}

size_t cgc_usable_size(const void *p) {
    if (p == NULL) return 0;
    return live_block_size(p, alloc_span_of(p));
}

/* Large block: resize in place when the page heap allows; when it must move, leave
 * headroom if the growth was small, so a buffer grown step by step moves O(log n) times. */
static void *realloc_large(void *p, alloc_span *s, size_t old, size_t n) {
    size_t npages = (n + ALLOC_PAGE_SIZE - 1) >> ALLOC_PAGE_SHIFT;
    if (n > ALLOC_SMALL_MAX && n <= ((size_t)1 << ALLOC_ADDR_BITS)) {
        if (n <= old && n >= old / 2) return p;
        if (alloc_heap_resize(s, npages)) return p;
    } else if (n <= old && old <= 2 * ALLOC_SMALL_MAX) {
        return p; /* shrinking into small sizes: not worth a copy */
    }
    size_t want = n;
    if (n > old && n - old < old / 2 && n <= ((size_t)1 << (ALLOC_ADDR_BITS - 2)))
        want = old + old / 2;
    void *q = cgc_malloc(want);
    if (q == NULL && want != n) q = cgc_malloc(n);
    if (q == NULL) return NULL; /* errno = ENOMEM; p untouched */
    memcpy(q, p, n < old ? n : old);
    cgc_free(p);
    return q;
}

void *cgc_realloc(void *p, size_t n) {
    if (p == NULL) return cgc_malloc(n);
    if (n == 0) { /* glibc: free and return NULL */
        cgc_free(p);
        return NULL;
    }
    alloc_span *s = alloc_span_of(p);
    size_t old = live_block_size(p, s);
    if (old == 0) {
        alloc_report_error("realloc of a pointer that is not a live block", p);
        errno = EINVAL;
        return NULL;
    }
    if (alloc_span_state(s) == SPAN_LARGE) return realloc_large(p, s, old, n);
    /* Keep the block when the new size fits and would not waste more than half of it. */
    if (n <= old && (n >= old / 2 || old <= 64)) return p;
    void *q = cgc_malloc(n);
    if (q == NULL) return NULL; /* errno = ENOMEM; p untouched */
    memcpy(q, p, n < old ? n : old);
    cgc_free(p);
    return q;
}

void *cgc_reallocarray(void *p, size_t count, size_t n) {
    size_t total;
    if (__builtin_mul_overflow(count, n, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return cgc_realloc(p, total);
}
