/* gc/mark.c — marking: grey work, pointer resolution, scanning, checkmark.
 *
 * Grey objects wait in work buffers (Go's workbufs: fixed arrays of entries, chained, kept
 * in metadata memory, never in the heap they describe). An entry is a range to scan and how
 * to scan it; a large object is pushed as chunks of at most 128 KiB so no single step is
 * long. gc_shade() is the only way an object turns grey: resolve the candidate pointer
 * through the page map (a pointer into no collected span, or into a free slot, is ignored),
 * set the mark bit, push the object unless it is a leaf.
 *
 * Scanning: conservative kind — every aligned word is a candidate (interior pointers count);
 * typed kind — only the words set in the object's type's pointer map (the type and element
 * count sit in a 16-byte header before the user's bytes); leaf kind — never scanned.
 *
 * Single-threaded today (world stopped); the mark bit update is an atomic OR so parallel or
 * concurrent marking can use the same shade.
 */
#include "cgc/gc.h"

#include <string.h>

#define WORK_ENTRIES 256
#define CHUNK (128u << 10)

typedef struct gc_work {
    uintptr_t base;
    size_t len;
    uint8_t kind; /* enum alloc_span_kind of the object, or 0 for a plain range */
} gc_work;

typedef struct gc_workbuf {
    struct gc_workbuf *next;
    unsigned n;
    gc_work e[WORK_ENTRIES];
} gc_workbuf;

static gc_workbuf *work_full; /* grey work (the current buffer is the head) */
static gc_workbuf *work_empty;
uint64_t gc_marked_bytes;
int gc_checkmark_active;

static gc_workbuf *buf_get(void) {
    gc_workbuf *b = work_empty;
    if (b) {
        work_empty = b->next;
    } else {
        b = plat_map(sizeof(gc_workbuf));
        if (b == NULL) {
            plat_write_stderr("cgc: fatal: out of memory for mark work buffers\n", 47);
            plat_abort();
        }
    }
    b->n = 0;
    b->next = NULL;
    return b;
}

static void push(uintptr_t base, size_t len, uint8_t kind) {
    gc_workbuf *b = work_full;
    if (b == NULL || b->n == WORK_ENTRIES) {
        gc_workbuf *nb = buf_get();
        nb->next = b;
        work_full = b = nb;
    }
    b->e[b->n++] = (gc_work){base, len, kind};
}

static bool pop(gc_work *out) {
    gc_workbuf *b = work_full;
    while (b && b->n == 0) {
        work_full = b->next;
        b->next = work_empty;
        work_empty = b;
        b = work_full;
    }
    if (b == NULL) return false;
    *out = b->e[--b->n];
    return true;
}

static inline bool find_object(uintptr_t p, uintptr_t *base, size_t *size, alloc_span **span) {
    alloc_span *s = alloc_span_of((void *)p);
    if (s == NULL || s->kind < ALLOC_KIND_GC_SCAN) return false;
    uint8_t st = alloc_span_state(s);
    if (st == SPAN_SMALL) {
        uint32_t idx = alloc_slot_index(s, p);
        if (idx >= s->nelems) return false;
        if (!((atomic_load_explicit(&s->alloc_bits[idx >> 6], memory_order_relaxed) >> (idx & 63)) & 1))
            return false;
        *base = s->start + (size_t)idx * s->elem_size;
        *size = s->elem_size;
    } else if (st == SPAN_LARGE) {
        *base = s->start;
        *size = s->npages * ALLOC_PAGE_SIZE;
    } else {
        return false;
    }
    *span = s;
    return true;
}

bool gc_find_object(uintptr_t p, uintptr_t *base, size_t *size, alloc_span **span) {
    return find_object(p, base, size, span);
}

/* Set the mark bit of the object at (s, base); true if it was white. */
static inline bool mark_object(alloc_span *s, uintptr_t base) {
    unsigned idx = alloc_span_state(s) == SPAN_LARGE ? 0 : alloc_slot_index(s, base);
    uint64_t bit = (uint64_t)1 << (idx & 63);
    _Atomic uint64_t *w = &s->mark_bits[idx >> 6];
    if (atomic_load_explicit(w, memory_order_relaxed) & bit) return false;
    return !(atomic_fetch_or_explicit(w, bit, memory_order_relaxed) & bit);
}

bool gc_is_marked(uintptr_t p) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    if (!gc_find_object(p, &base, &size, &s)) return false;
    unsigned idx = alloc_span_state(s) == SPAN_LARGE ? 0 : alloc_slot_index(s, base);
    return (atomic_load_explicit(&s->mark_bits[idx >> 6], memory_order_relaxed) >> (idx & 63)) & 1;
}

/* The checkmark pass marks into this side set instead (open addressing on object bases). */
static uintptr_t *cm_table;
static size_t cm_cap, cm_count;
static uintptr_t cm_referrer; /* for the error message */

static bool cm_insert(uintptr_t base) {
    if ((cm_count + 1) * 2 > cm_cap) {
        size_t ncap = cm_cap ? cm_cap * 2 : 1 << 16;
        uintptr_t *nt = plat_map(ncap * sizeof(uintptr_t));
        if (nt == NULL) plat_abort();
        for (size_t i = 0; i < cm_cap; i++) {
            if (!cm_table[i]) continue;
            size_t h = (cm_table[i] >> 4) * 0x9e3779b97f4a7c15ull & (ncap - 1);
            while (nt[h]) h = (h + 1) & (ncap - 1);
            nt[h] = cm_table[i];
        }
        if (cm_table) plat_unmap(cm_table, cm_cap * sizeof(uintptr_t));
        cm_table = nt;
        cm_cap = ncap;
    }
    size_t h = (base >> 4) * 0x9e3779b97f4a7c15ull & (cm_cap - 1);
    while (cm_table[h]) {
        if (cm_table[h] == base) return false;
        h = (h + 1) & (cm_cap - 1);
    }
    cm_table[h] = base;
    cm_count++;
    return true;
}

/* Out of line: keeps shade's frame small on the hot path. */
static CGC_NOINLINE _Noreturn void checkmark_failed(uintptr_t base, size_t size) {
    char buf[256];
    size_t n = alloc_fmt(buf, sizeof buf,
        "cgc: checkmark: object %p (size %zu) is reachable from the word at %p but was not "
        "marked\n", (void *)base, size, (void *)cm_referrer);
    plat_write_stderr(buf, n);
    plat_abort();
}

static inline void shade(uintptr_t p) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    if (!find_object(p, &base, &size, &s)) return;
    if (CGC_UNLIKELY(gc_checkmark_active)) {
        if (!cm_insert(base)) return;
        if (!gc_is_marked(base)) checkmark_failed(base, size);
    } else {
        if (!mark_object(s, base)) return;
        gc_marked_bytes += size;
    }
    if (s->kind == ALLOC_KIND_GC_LEAF) return;
    push(base, size, s->kind);
}

void gc_shade(uintptr_t p) { shade(p); }

static inline void scan_words(uintptr_t lo, uintptr_t hi) {
    lo = (lo + 7) & ~(uintptr_t)7;
    /* Most words are not heap pointers: one subtract-and-compare against the heap's
     * bounds rejects them before any page-map lookup. */
    uintptr_t hlo = alloc_heap_lo();
    uintptr_t span = alloc_heap_hi() - hlo;
    for (uintptr_t a = lo; a + 8 <= hi; a += 8) {
        uintptr_t v = *(const uintptr_t *)a;
        if (v - hlo < span) {
            cm_referrer = a;
            shade(v);
        }
    }
}

void gc_mark_range(uintptr_t lo, uintptr_t hi) {
    if (hi <= lo) return;
    /* Long ranges (large objects, data segments) are scanned a chunk at a time. */
    while (hi - lo > CHUNK) {
        push(lo, CHUNK, 0);
        lo += CHUNK;
    }
    scan_words(lo, hi);
}

static void scan_typed(uintptr_t base) {
    const gc_typed_header *h = (const gc_typed_header *)base;
    const cgc_type *t = h->type;
    if (t == NULL) return; /* being initialised: nothing stored yet */
    uintptr_t elem = base + GC_HEADER;
    for (size_t e = 0; e < h->count; e++, elem += t->size) {
        for (size_t w = 0; w < t->nwords; w++) {
            if (!((t->ptrmap[w / 64] >> (w % 64)) & 1)) continue;
            uintptr_t v = ((const uintptr_t *)elem)[w];
            if (v >= 4096 && !(v >> ALLOC_ADDR_BITS)) {
                cm_referrer = elem + w * 8;
                shade(v);
            }
        }
    }
}

static inline void scan_one(const gc_work *w) {
    if (w->kind == ALLOC_KIND_GC_TYPED) scan_typed(w->base);
    else if (w->len > CHUNK) gc_mark_range(w->base, w->base + w->len);
    else scan_words(w->base, w->base + w->len);
}

/* Objects popped from the work list wait in a small FIFO, prefetched, before they are
 * scanned: by then their first line is (likely) in cache, so the cache misses of several
 * objects overlap instead of being paid one after another. */
#define PREFETCH_DEPTH 8

uint64_t gc_drain(void) {
    uint64_t scanned = 0;
    gc_work fifo[PREFETCH_DEPTH];
    unsigned head = 0, count = 0;
    for (;;) {
        gc_work w;
        if (count < PREFETCH_DEPTH && pop(&w)) {
            __builtin_prefetch((const void *)w.base);
            fifo[(head + count) % PREFETCH_DEPTH] = w;
            count++;
            continue;
        }
        if (count == 0) break;
        w = fifo[head];
        head = (head + 1) % PREFETCH_DEPTH;
        count--;
        scan_one(&w);
        scanned += w.len;
    }
    return scanned;
}

/* ---- checkmark ------------------------------------------------------------------------------- */
void gc_checkmark(void) {
    cm_count = 0;
    if (cm_table) memset(cm_table, 0, cm_cap * sizeof(uintptr_t));
    gc_checkmark_active = 1;
    gc_scan_roots();
    gc_scan_finalizer_roots();
    gc_drain();
    gc_checkmark_active = 0;
}
