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
 * Two ways to drain, same shade and scan: gc_drain (the world stopped: the collecting thread
 * and ncpu-1 helper threads until all are idle) and gc_mark_some (concurrent marking: the
 * background worker and allocating threads' assists each scan a budget, then hand their
 * leftover work back to the pool). Mark bits are set with an atomic OR, so any number of
 * markers and black-allocating mutators share them.
 */
#include "cgc/gc.h"

#include <string.h>

/* A buffer fills one page exactly (mapped by plat_map, page-granular): 16 + 255 x 16. The
 * size is also the grain of sharing between markers: 511 made hashes.scm 6% slower. */
#define WORK_ENTRIES 255
/* Long ranges are scanned in chunks: one chunk is the longest step a marker takes without
 * looking up (an assist inside a no-stop region delays a stop by at most about that). */
#define CHUNK (32u << 10)
/* A root range this short is scanned where it is found, a longer one queued (in a stopped
 * drain: gc_mark_root_range). */
#define RANGE_DIRECT 2048u

/* 16 bytes, not 24: the mark stack of a Guile program holds ~200K entries at its deepest
 * (its VM stack's mark procedure pushes a frame slot per entry), all of it resident at the
 * heap's peak. The kind sits in the low 3 bits of base: objects and pushed ranges are
 * 8-byte aligned. */
typedef struct gc_work {
    uintptr_t bk; /* base | kind (enum alloc_span_kind of the object, or 0 for a plain range) */
    size_t len;   /* bytes; for kind TYPED1, the span's cgc_type * instead (work_len) */
} gc_work;
_Static_assert(ALLOC_KIND_GC_TYPED1 < 8, "a work entry's kind fits in 3 bits");
#define WORK_BASE(w) ((w)->bk & ~(uintptr_t)7)
#define WORK_KIND(w) ((unsigned)((w)->bk & 7))

typedef struct gc_workbuf {
    struct gc_workbuf *next;
    unsigned n;
    gc_work e[WORK_ENTRIES];
} gc_workbuf;

/* Each marking thread fills and empties its own current buffer (no lock); full buffers go
 * to a shared pool under pool_lock, where idle markers take them. The collecting thread
 * scans the roots; (ncpu - 1) helper threads, started on first use and never registered or
 * stopped, join it to drain (Boehm's parallel marking, Go's workbuf pool). Termination:
 * every participant is waiting and the pool is empty; a helper is a participant from the
 * moment it starts on the drain, never before. */
static CGC_TLS gc_workbuf *local_buf;       /* this marker's current buffer */
static CGC_TLS uint64_t local_marked;        /* bytes this marker marked */
static CGC_TLS uint64_t local_leaf;          /* of which in leaf objects (bdw pacing) */
/* Adaptive (spins a little before sleeping): its sections are a few loads and stores, and
 * two markers trading buffers met on it often enough to sleep and be woken (futex calls
 * seen in strace, from push, pop and share_half). */
static pthread_mutex_t pool_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static gc_workbuf *pool_full, *pool_empty;  /* [pool_lock] */
/* Whether pool_full is empty, for a racy look without the lock (maybe_share's: concurrent
 * markers asked under the lock every 64 objects, 1.4% of the 1 GiB pause workload). Kept by
 * pool_put and pool_take. */
static _Atomic int pool_has_full;
/* Markers out of work and waiting for some to be shared: an assist past the goal
 * (gc_mark_starved) or a stopped-world marker in pop's spin. Others share with them even a
 * short buffer, and need not wake them for it. */
static _Atomic int starved;
static _Atomic unsigned n_participants;     /* [pool_lock] to write; read racily to wait */
static _Atomic unsigned n_waiting;          /* [pool_lock] to write; read racily to share */
static _Atomic bool drain_done;             /* [pool_lock] to write; read racily to wait */
static bool drain_open;                     /* [pool_lock] a parallel drain takes helpers */
static uint32_t drain_epoch;                /* [pool_lock] bumped to start helpers */
static unsigned n_helpers;                  /* helper threads started */
static _Atomic uint64_t marked_total;
static _Atomic unsigned active_markers;     /* threads inside gc_mark_some */
static _Atomic uint64_t leaf_total;         /* of which in leaf objects */
int gc_checkmark_active;

/* The writers of pool_full (and of pool_has_full), with gc_mark_fork's reset. [pool_lock] */
static inline void pool_put(gc_workbuf *b) {
    b->next = pool_full;
    pool_full = b;
    atomic_store_explicit(&pool_has_full, 1, memory_order_relaxed);
}
static inline gc_workbuf *pool_take(void) {
    gc_workbuf *f = pool_full;
    if (f) {
        pool_full = f->next;
        atomic_store_explicit(&pool_has_full, pool_full != NULL, memory_order_relaxed);
    }
    return f;
}

static gc_workbuf *buf_new(void) {
    pthread_mutex_lock(&pool_lock);
    gc_workbuf *b = pool_empty;
    if (b) pool_empty = b->next;
    pthread_mutex_unlock(&pool_lock);
    if (b == NULL) {
        b = plat_map(sizeof(gc_workbuf));
        if (b == NULL) {
            static const char msg[] = "cgc: fatal: out of memory for mark work buffers\n";
            plat_write_stderr(msg, sizeof msg - 1);
            plat_abort();
        }
    }
    b->n = 0;
    b->next = NULL;
    return b;
}

/* The buffer is full: share it, start a fresh one. Out of line, like pop: push is
 * called once per grey object. */
static CGC_NOINLINE gc_workbuf *push_slow(gc_workbuf *b) {
    if (b != NULL) {
        pthread_mutex_lock(&pool_lock);
        pool_put(b);
        if (n_waiting) pthread_cond_broadcast(&pool_cv);
        pthread_mutex_unlock(&pool_lock);
    }
    return local_buf = buf_new();
}

static inline void push(uintptr_t base, size_t len, uint8_t kind) {
    gc_workbuf *b = local_buf;
    if (CGC_UNLIKELY(b == NULL || b->n == WORK_ENTRIES)) b = push_slow(b);
    b->e[b->n++] = (gc_work){base | kind, len};
}

/* A span's kind, read by a marker while an allocating thread may be setting the span up
 * (written with a release store once the span is published). */
static inline uint8_t span_kind(const alloc_span *s) { return __atomic_load_n(&s->kind, __ATOMIC_ACQUIRE); }

/* Queue a marked object for scanning. A TYPED1 object's entry carries its span's type in
 * place of its length (the span was just looked up here; finding it again at scan time was a
 * second page-map walk per object, on the hottest path of a typed heap). The alloc bit was
 * seen (acquire) after the type was set, so the type read here is the object's. */
static inline void push_object_k(const alloc_span *s, uintptr_t base, size_t size,
                                 uint8_t kind) {
    if (kind == ALLOC_KIND_GC_LEAF) return;
    if (kind == ALLOC_KIND_GC_TYPED1) {
        const void *t = s->gctype;
        if (t == NULL) return; /* nothing stored yet */
        push(base, (size_t)(uintptr_t)t, kind);
        return;
    }
    push(base, size, kind);
}

static inline void push_object(const alloc_span *s, uintptr_t base, size_t size) {
    push_object_k(s, base, size, span_kind(s));
}

/* Spin (without a lock, keeping this CPU) for up to ns until done() holds; whether it does.
 * Every wait of a marker for another one starts here, awake: woken from a futex sleep, a
 * marker got its vCPU back milliseconds late on this VM now and then. In a stopped-world
 * drain every mutator is parked and the CPU is free; elsewhere (an assist, a forced
 * cycle's drain beside running mutators) a wait costs them at most ns. */
static bool spin_until(bool (*done)(void), uint64_t ns) {
    if (plat_ncpu() < 2) return done(); /* one CPU: what we wait for cannot run meanwhile */
    for (uint64_t t0 = plat_now_ns(); plat_now_ns() - t0 < ns;) {
        if (done()) return true;
        for (unsigned i = 0; i < 16; i++) plat_cpu_relax();
    }
    return done();
}
static bool pool_has_work(void) { return atomic_load_explicit(&pool_has_full, memory_order_relaxed); }
static bool work_or_end(void) {
    return pool_has_work() || atomic_load_explicit(&drain_done, memory_order_relaxed);
}
static bool helpers_out(void) {
    return atomic_load_explicit(&n_participants, memory_order_acquire) == 0;
}

bool gc_mark_spin_for_work(uint64_t ns) { return spin_until(pool_has_work, ns); }

/* Take work: from the local buffer, else a full buffer from the pool; false when marking
 * is complete. */
#define POP_SPIN_NS 30000
#define POP_WAIT_NS 1000000 /* counted as waiting, awake (pop, gc_drain's end): about a Guile drain */
/* From this marker's own buffer: once per object, so inline; the pool and the waiting are
 * out of line (pop, called whole, was a fifth of a marker's time on Guile's trees program:
 * its prologue and epilogue, not its work). */
static inline bool pop_local(gc_work *out) {
    gc_workbuf *b = local_buf;
    if (CGC_LIKELY(b && b->n > 0)) {
        const gc_work *e = &b->e[--b->n];
        /* Two word loads, as push stored it: the entry on top was usually pushed moments
         * ago, and one 16-byte load of two 8-byte stores still in flight cannot be
         * forwarded from them — it waits for both to reach the cache (that stall was half
         * of scan_loop's samples on Guile's trees program). The empty asm keeps the
         * compiler from merging the loads back into one. */
        uintptr_t bk = e->bk;
        size_t len = e->len;
        __asm__("" : "+r"(bk), "+r"(len));
        out->bk = bk;
        out->len = len;
        return true;
    }
    return false;
}

/* The local buffer is empty (scan_loop tried pop_local). */
static CGC_NOINLINE bool pop(gc_work *out) {
    gc_workbuf *b = local_buf;
    /* Out of work: wait awake first, for POP_SPIN_NS, for another marker to share (it
     * shares with a spinner as with a sleeper, and needs no wake-up for it). Sleeping at once
     * cost a futex wake for nearly every shared buffer, each a cross-CPU interrupt to an
     * idle vCPU here (tens of us to the waker, more to the woken), in drains of 2-5 ms. A
     * spinner is not counted as waiting, so the end of a drain is seen at most POP_SPIN_NS
     * later. With the adaptive pool_lock, interleaved A/B: gcbench stop-the-world 0.477 ->
     * 0.425 s, concurrent 0.383 -> 0.356 s; Guile hashes 0.62 -> 0.56 s, lists 0.99 ->
     * 0.91 s. Not in a single-threaded drain (gc_drain's condition): nobody would share. */
    if (!gc_checkmark_active) {
        gc_mark_starved(1);
        gc_mark_spin_for_work(POP_SPIN_NS);
        gc_mark_starved(-1);
    }
    pthread_mutex_lock(&pool_lock);
    while (pool_full == NULL) {
        if (drain_done || n_participants == 0) {
            pthread_mutex_unlock(&pool_lock);
            return false;
        }
        if (++n_waiting == n_participants) { /* everyone is out of work: marking is done */
            drain_done = true;
            n_waiting--;
            pthread_cond_broadcast(&pool_cv);
            pthread_mutex_unlock(&pool_lock);
            return false;
        }
        /* Counted as waiting from here, so the last marker to run out ends the drain at
         * once; but still awake for a while before sleeping (spin_until: a Guile trees
         * collection of 5.4 ms had 1.35 ms of it on the collector's CPU, one sleep). */
        pthread_mutex_unlock(&pool_lock);
        spin_until(work_or_end, POP_WAIT_NS);
        pthread_mutex_lock(&pool_lock);
        if (pool_full == NULL && !drain_done) pthread_cond_wait(&pool_cv, &pool_lock);
        n_waiting--;
    }
    gc_workbuf *f = pool_take();
    if (b) { /* keep the full one, recycle the empty one */
        b->next = pool_empty;
        pool_empty = b;
    }
    pthread_mutex_unlock(&pool_lock);
    local_buf = f;
    *out = f->e[--f->n];
    return true;
}

/* The marker's last span: consecutive candidates often fall in the same span (objects
 * allocated together), and then the page-map lookup is skipped. Valid for one drain only:
 * spans are not freed while the world is stopped (sweeping finished before the stop and
 * resumes after it). */
static CGC_TLS alloc_span *last_span;
static CGC_TLS uintptr_t last_lo_x, last_len; /* start ^ ALLOC_DISGUISE: TLS is a root */

void gc_mark_reset_cache(void) { last_len = 0; }

static inline bool object_in(alloc_span *s, uintptr_t p, uintptr_t *base, size_t *size,
                             alloc_span **span);


/* alloc_slot_index for the marker's lookup (object_in: only after the kind was loaded). */
static inline uint32_t mark_slot_index(const alloc_span *s, uintptr_t p) {
    return (uint32_t)(((uint64_t)(p - s->start) * s->divmul) >> 32);
}

/* For marking only (between gc_mark_reset_cache and the end of the stop). The span may be
 * being set up by an allocating thread at the same moment (reused from the page heap): its
 * size fields are read only after its state and then its kind were loaded with acquire,
 * and the kind is published last (alloc_span_set_class, alloc_large_gc). */
static inline bool find_object_cached(uintptr_t p, uintptr_t *base, size_t *size,
                                      alloc_span **span) {
    alloc_span *s;
    if (p - (last_lo_x ^ ALLOC_DISGUISE) < last_len) {
        s = last_span;
    } else {
        s = alloc_span_of((void *)p);
        if (s && alloc_span_state(s) == SPAN_SMALL && span_kind(s) >= ALLOC_KIND_GC_SCAN) {
            last_span = s;
            last_lo_x = s->start ^ ALLOC_DISGUISE;
            last_len = (uintptr_t)s->nelems * s->elem_size;
        }
    }
    return object_in(s, p, base, size, span);
}

static inline bool find_object(uintptr_t p, uintptr_t *base, size_t *size, alloc_span **span) {
    return object_in(alloc_span_of((void *)p), p, base, size, span);
}

/* The order of the loads matters, against a span being made from a free run at the same
 * moment. The page heap sets the kind to malloc and then publishes the state (release);
 * a collected span then gets its zeroed bitmap, its sizes and last its kind (release). So:
 * state first (acquire), then kind (acquire): a collected kind read after a live state is
 * this life's, and the sizes and bitmap read after it are this life's too. (Kind first, a
 * stale collected kind from the free run's last life could pass with a new state.) The
 * alloc bit is loaded with acquire: gc/heap.c claim_word zeroes a slot before it sets the bit. */
static inline bool object_in(alloc_span *s, uintptr_t p, uintptr_t *base, size_t *size,
                             alloc_span **span) {
    if (s == NULL) return false;
    uint8_t st = alloc_span_state(s);
    if (st != SPAN_SMALL && st != SPAN_LARGE) return false;
    if (span_kind(s) < ALLOC_KIND_GC_SCAN) return false;
    if (st == SPAN_SMALL) {
        uint32_t idx = mark_slot_index(s, p);
        if (idx >= s->nelems) return false;
        if (!((atomic_load_explicit(&s->gcbits[idx >> 6].alloc, memory_order_acquire) >> (idx & 63)) & 1))
            return false;
        *base = s->start + (size_t)idx * s->elem_size;
        *size = s->elem_size;
    } else {
        *base = s->start;
        *size = s->npages * ALLOC_PAGE_SIZE;
    }
    *span = s;
    return true;
}

bool gc_find_object(uintptr_t p, uintptr_t *base, size_t *size, alloc_span **span) {
    return find_object(p, base, size, span);
}

/* Mark the object at (s, base); true if it was white. A small object's mark byte is set
 * with a plain store (see alloc_span.gcmarks: no locked instruction on the marking path);
 * a large object's single bit with an atomic OR, as large objects are few. */
static inline bool mark_object(alloc_span *s, uintptr_t base) {
    if (CGC_UNLIKELY(alloc_span_state(s) == SPAN_LARGE)) {
        _Atomic uint64_t *w = &s->gcbits[0].mark;
        if (atomic_load_explicit(w, memory_order_relaxed) & 1) return false;
        return !(atomic_fetch_or_explicit(w, 1, memory_order_relaxed) & 1);
    }
    _Atomic uint8_t *m = gc_marks_of(s);
    if (CGC_UNLIKELY(m == NULL)) return false; /* a stale pointer into a recycled struct */
    m += mark_slot_index(s, base);
    if (atomic_load_explicit(m, memory_order_relaxed)) return false;
    atomic_store_explicit(m, 1, memory_order_relaxed);
    return true;
}

bool gc_is_marked(uintptr_t p) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    if (!gc_find_object(p, &base, &size, &s)) return false;
    if (alloc_span_state(s) == SPAN_LARGE)
        return atomic_load_explicit(&s->gcbits[0].mark, memory_order_relaxed) & 1;
    return gc_mark_byte(s, alloc_slot_index(s, base));
}

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
uint64_t gc_marks_word(const alloc_span *s, unsigned w) {
    const uint8_t *b = (const uint8_t *)gc_marks_of(s);
    if (b == NULL) return 0;
    b += (size_t)w * 64;
    uint64_t m = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (unsigned i = 0; i < 4; i++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + 16 * i));
        m |= (uint64_t)(uint16_t)~_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)) << (16 * i);
    }
#else
    for (unsigned i = 0; i < 64; i++) m |= (uint64_t)(b[i] != 0) << i;
#endif
    return m;
}

/* The checkmark pass marks into this side set instead (open addressing on object bases). */
static uintptr_t *cm_table;
static size_t cm_cap, cm_count;
static CGC_TLS uintptr_t cm_referrer_x; /* for checkmark's message; ^ALLOC_DISGUISE (TLS is a root) */

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
    char buf[320];
    uintptr_t ref = cm_referrer_x ^ ALLOC_DISGUISE, rbase = 0;
    size_t rsize = 0;
    alloc_span *rs = NULL;
    char where[120];
    if (gc_find_object(ref, &rbase, &rsize, &rs))
        alloc_fmt(where, sizeof where, "offset %zu of object %p (size %zu, %s)",
                  (size_t)(ref - rbase), (void *)rbase, rsize,
                  gc_is_marked(rbase) ? "marked" : "unmarked");
    else
        alloc_fmt(where, sizeof where, "a root");
    size_t n = alloc_fmt(buf, sizeof buf,
        "cgc: checkmark: object %p (size %zu) is reachable from the word at %p (%s) but was "
        "not marked\n", (void *)base, size, (void *)ref, where);
    plat_write_stderr(buf, n);
    plat_abort();
}

static inline void shade_at(uintptr_t p, bool cached) {
    /* The candidate's own line is asked for now, before the span lookup, the alloc bit and
     * the mark byte: along a chain (a list, each cell queueing only its successor) nothing
     * else is in the FIFO to overlap with, and this turns three misses paid one after
     * another into about one. Guile's list program: longest stop 47 -> 37 ms, 6% faster
     * (interleaved A/B, 7 runs each); trees and gcbench unchanged. */
    __builtin_prefetch((const void *)p);
    uintptr_t base = 0;
    size_t size = 0;
    alloc_span *s = NULL;
    if (cached ? !find_object_cached(p, &base, &size, &s) : !find_object(p, &base, &size, &s))
        return;
    if (CGC_UNLIKELY(gc_checkmark_active)) {
        if (!cm_insert(base)) return;
        if (!gc_is_marked(base)) checkmark_failed(base, size);
    } else {
        if (!mark_object(s, base)) return;
        local_marked += size;
    }
    uint8_t kind = span_kind(s);
    if (kind == ALLOC_KIND_GC_LEAF) {
        local_leaf += size;
        return;
    }
    /* And the lines on either side of a newly grey object: the cells of a list are mostly
     * allocated one after another, so the next cells of the chain are its neighbours, and
     * a chain has nothing else to overlap its misses with (each cell queues only its
     * successor). Interleaved A/B, 7 runs each, Guile's list program: 0.92 -> 0.69 s,
     * stops 242 -> 127 ms in total, longest 32.7 -> 17.6 ms; either side alone gave about
     * half of that (its lists run both ways). GCBench and Guile trees and hashes: within
     * noise (21 runs each of GCBench). */
    __builtin_prefetch((const void *)(base - 64));
    __builtin_prefetch((const void *)(base + size + 63));
    push_object_k(s, base, size, kind);
}

static inline void shade(uintptr_t p) { shade_at(p, true); }

void gc_shade(uintptr_t p) { shade(p); }

/* A long range (data/bss and stacks, which stop 2 rescans; large objects) is mostly words
 * that are not heap pointers: eight at a time are tested branch-free (vectorised), and only
 * a group with a candidate is looked at word by word. */
GC_SCAN_NO_SANITIZE static CGC_NOINLINE void scan_words_sparse(uintptr_t lo, uintptr_t hi,
                                                               uintptr_t hlo, uintptr_t span) {
    for (; lo + 64 <= hi; lo += 64) {
        const uintptr_t *w = (const uintptr_t *)lo;
        unsigned any = 0;
        for (unsigned i = 0; i < 8; i++) any |= (unsigned)(w[i] - hlo < span);
        if (!any) continue;
        for (unsigned i = 0; i < 8; i++) {
            uintptr_t v = w[i];
            if (v - hlo < span) {
                cm_referrer_x = (lo + 8 * i) ^ ALLOC_DISGUISE;
                shade(v);
            }
        }
    }
    for (; lo + 8 <= hi; lo += 8) {
        uintptr_t v = *(const uintptr_t *)lo;
        if (v - hlo < span) {
            cm_referrer_x = lo ^ ALLOC_DISGUISE;
            shade(v);
        }
    }
}

GC_SCAN_NO_SANITIZE static inline void scan_words(uintptr_t lo, uintptr_t hi) {
    lo = (lo + 7) & ~(uintptr_t)7;
    /* Most words are not heap pointers: one subtract-and-compare against the heap's
     * bounds rejects them before any page-map lookup. */
    uintptr_t hlo = alloc_heap_lo();
    uintptr_t span = alloc_heap_hi() - hlo;
    if (CGC_UNLIKELY(hi > lo + 2048)) {
        scan_words_sparse(lo, hi, hlo, span);
        return;
    }
    for (uintptr_t a = lo; a + 8 <= hi; a += 8) {
        uintptr_t v = *(const uintptr_t *)a;
        if (v - hlo < span) {
            cm_referrer_x = a ^ ALLOC_DISGUISE;
            shade(v);
        }
    }
}

void gc_mark_range_now(uintptr_t lo, uintptr_t hi) {
    if (hi > lo) scan_words(lo, hi);
}

/* Queue [lo, hi) in chunks of at most CHUNK; a last piece of at most `direct` bytes is
 * scanned at once instead. */
static void queue_range(uintptr_t lo, uintptr_t hi, size_t direct) {
    lo = (lo + 7) & ~(uintptr_t)7; /* as scan_words reads it; and a pushed range's base is aligned */
    if (hi <= lo) return;
    while (hi - lo > CHUNK) {
        push(lo, CHUNK, 0);
        lo += CHUNK;
    }
    if (hi - lo > direct) push(lo, hi - lo, 0);
    else scan_words(lo, hi);
}

/* Long ranges (large objects) are scanned a chunk at a time. */
void gc_mark_range(uintptr_t lo, uintptr_t hi) { queue_range(lo, hi, CHUNK); }

bool gc_roots_queued;

void gc_mark_root_range(uintptr_t lo, uintptr_t hi) {
    /* Concurrent marking, and stop 2's rescan: now, whole. A queued root range would be
     * read after this scan returns, and by then the module may be unloaded (the loader lock
     * is held only across the scan) or the range removed and freed (cgc_remove_roots). */
    if (!gc_roots_queued) {
        gc_mark_range_now(lo, hi);
        return;
    }
    /* The world stays stopped (and the loader lock and roots_lock held) until the drain
     * ends: every range but a short one is queued, so the helpers of the drain start on the
     * roots at once instead of waiting for this thread to scan them all (Guile registers
     * ~0.9 MB of roots in hundreds of segments: 0.2 ms of every collection). */
    queue_range(lo, hi, RANGE_DIRECT);
}

GC_SCAN_NO_SANITIZE static void scan_elements(const cgc_type *t, uintptr_t elem, size_t count) {
    for (size_t e = 0; e < count; e++, elem += t->size) {
        for (size_t w = 0; w < t->nwords; w++) {
            if (!((t->ptrmap[w / 64] >> (w % 64)) & 1)) continue;
            uintptr_t v = ((const uintptr_t *)elem)[w];
            if (v >= 4096 && !(v >> ALLOC_ADDR_BITS)) {
                cm_referrer_x = (elem + w * 8) ^ ALLOC_DISGUISE;
                shade(v);
            }
        }
    }
}

GC_SCAN_NO_SANITIZE static void scan_typed(uintptr_t base) {
    const gc_typed_header *h = (const gc_typed_header *)base;
    /* Acquire: cgc_alloc_array stores the count, then the type with release. */
    const cgc_type *t = __atomic_load_n(&h->type, __ATOMIC_ACQUIRE);
    if (t == NULL) return; /* being initialised: nothing stored yet */
    scan_elements(t, base + GC_HEADER, h->count);
}

/* One object of a TYPED1 span, of its span's type t (push_object). */
static void scan_typed1(const cgc_type *t, uintptr_t base) {
    /* bdw: a Boehm kind's object is scanned by its descriptor (gc/bdw_kinds.c) */
    if (CGC_UNLIKELY(t->nwords == GC_BDW_TYPE)) {
        gc_bdw_scan_hook(t, base);
        return;
    }
    scan_elements(t, base, 1);
}

/* Bytes a work entry stands for (the pacer's and the concurrent budget's unit). */
static inline size_t work_len(const gc_work *w) {
    return WORK_KIND(w) == ALLOC_KIND_GC_TYPED1 ? ((const cgc_type *)w->len)->size : w->len;
}

static inline void scan_one(const gc_work *w) {
    unsigned kind = WORK_KIND(w);
    uintptr_t base = WORK_BASE(w);
    if (kind == ALLOC_KIND_GC_TYPED) scan_typed(base);
    else if (kind == ALLOC_KIND_GC_TYPED1) scan_typed1((const cgc_type *)w->len, base);
    else if (w->len > CHUNK) gc_mark_range(base, base + w->len);
    else scan_words(base, base + w->len);
}

/* Objects popped from the work list wait in a small FIFO, prefetched, before they are
 * scanned: by then their first line is (likely) in cache, so the cache misses of several
 * objects overlap instead of being paid one after another. 32 deep, not 8: while mutators
 * run beside the marker (concurrent mark) a miss takes longer, and 8 objects of 32 bytes
 * in flight did not cover it — the load of the scanned object's first word was a third of
 * the marker's time. Measured (interleaved A/B, perf/gclive 1 GiB live, 2 mutators): wall
 * 5.99 -> 4.56 s concurrent, 5.23 -> 4.92 s stop-the-world; gcbench and binary-trees
 * 5-9% faster; 64 was no better than 32. A power of two (the index is taken modulo). */
#define PREFETCH_DEPTH 32

/* Give the older half of our buffer to the pool (the bottom of a depth-first stack holds
 * the biggest unexplored subgraphs). */
static void share_half(void) {
    gc_workbuf *b = local_buf;
    gc_workbuf *nb = buf_new();
    unsigned half = b->n / 2;
    memcpy(nb->e, b->e, half * sizeof(gc_work));
    nb->n = half;
    memmove(b->e, b->e + half, (b->n - half) * sizeof(gc_work));
    b->n -= half;
    pthread_mutex_lock(&pool_lock);
    pool_put(nb);
    if (n_waiting) pthread_cond_broadcast(&pool_cv); /* (a spinner needs none) */
    pthread_mutex_unlock(&pool_lock);
}

/* When to share: stopped-world drain — another marker is idle; concurrent marking — the
 * pool ran dry (assists and the worker then have something to take). */
static void maybe_share(bool concurrent) {
    gc_workbuf *b = local_buf;
    if (b == NULL || b->n < 2) return;
    if (concurrent) {
        if (atomic_load_explicit(&pool_has_full, memory_order_relaxed)) return; /* not starved */
        if (b->n < 8 && atomic_load_explicit(&starved, memory_order_relaxed) == 0) return;
    } else if (b->n < 4 ||
               (atomic_load_explicit(&n_waiting, memory_order_relaxed) == 0 &&
                atomic_load_explicit(&starved, memory_order_relaxed) == 0) ||
               atomic_load_explicit(&pool_has_full, memory_order_relaxed)) {
        return; /* nobody idle, or a buffer is already there for them */
    }
    share_half();
}

static CGC_NOINLINE bool pop_nowait(gc_work *out);

/* The scan loop of both drains. Objects taken from the work list wait in a small FIFO,
 * prefetched, so the cache misses of several objects overlap. concurrent: take work
 * without waiting (pop_nowait) and stop taking once `budget` bytes are scanned; else wait
 * for work until every marker is idle (pop). */
static uint64_t scan_loop(bool concurrent, uint64_t budget) {
    last_len = 0; /* spans may have changed since the last drain */
    uint64_t done = 0;
    unsigned since_share = 0;
    gc_work fifo[PREFETCH_DEPTH];
    unsigned head = 0, count = 0;
    for (;;) {
        /* Popped straight into its FIFO slot, read back 32 objects later: a copy through
         * a local was a 16-byte load of two 8-byte stores just made (see pop_local). */
        gc_work *slot = &fifo[(head + count) % PREFETCH_DEPTH];
        /* With objects in the FIFO, take more only from the local buffer: its being empty
         * with the FIFO full is the normal state of a long chain (each cell queues only its
         * successor), and going to the pool then locked pool_lock once per cell — or
         * waited there, for another marker, with this marker's own work in hand (8% of a
         * Guile list program went to that lock). The FIFO's next scan refills the buffer. */
        bool more = count == 0 || (local_buf && local_buf->n > 0);
        if (count < PREFETCH_DEPTH && done < budget && more &&
            (pop_local(slot) || (concurrent ? pop_nowait(slot) : pop(slot)))) {
            __builtin_prefetch((const void *)WORK_BASE(slot));
            count++;
            continue;
        }
        if (count == 0) break;
        gc_work w = fifo[head];
        head = (head + 1) % PREFETCH_DEPTH;
        count--;
        scan_one(&w);
        size_t len = work_len(&w);
        done += concurrent ? len + 64 : len; /* concurrent: tiny objects count too */
        if (++since_share == 64) {
            since_share = 0;
            maybe_share(concurrent);
        }
    }
    return done;
}

/* This marker's counts into the shared totals (gc_mark_take_marked collects them). */
static void flush_marked(void) {
    if (local_marked == 0) return;
    atomic_fetch_add_explicit(&marked_total, local_marked, memory_order_relaxed);
    atomic_fetch_add_explicit(&leaf_total, local_leaf, memory_order_relaxed);
    local_marked = local_leaf = 0;
}

static uint64_t drain_local(void) {
    uint64_t scanned = scan_loop(false, UINT64_MAX);
    flush_marked();
    return scanned;
}

static void *helper_main(void *arg) {
    (void)arg;
    uint32_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool_lock);
        while (drain_epoch == seen) pthread_cond_wait(&pool_cv, &pool_lock);
        seen = drain_epoch;
        /* A helper joins a drain only while it is still running: the coordinator never
         * counts (and so never waits for) a helper that has not started — on a loaded
         * machine a woken helper can wait milliseconds for a CPU, and every stop would wait
         * with it. */
        /* And only a parallel one: a helper woken for a drain that has ended must not join
         * a single-threaded drain that started since (checkmark's: its side table is not
         * thread-safe; it does not bump the epoch). */
        if (drain_done || !drain_open) {
            pthread_mutex_unlock(&pool_lock);
            continue;
        }
        n_participants++;
        pthread_mutex_unlock(&pool_lock);
        drain_local();
        pthread_mutex_lock(&pool_lock);
        n_participants--; /* checked out: the coordinator waits for zero */
        pthread_cond_broadcast(&pool_cv);
        pthread_mutex_unlock(&pool_lock);
    }
    return NULL;
}

static void start_helpers(void) {
    unsigned want = plat_ncpu() - 1;
    if (want > 7) want = 7;
    while (n_helpers < want && plat_spawn_detached(helper_main, NULL, 0, 0)) n_helpers++;
}

uint64_t gc_drain(void) {
    /* Nothing grey here or in the pool (the finalizer pass after the main drain, usually):
     * no helper is woken and nobody waits to see that. With the world stopped only this
     * thread fills the pool; in a forced concurrent cycle an assist may hold work of its
     * own, which a drain never waited for (the cycle loops on gc_mark_idle for it). */
    if ((local_buf == NULL || local_buf->n == 0) &&
        !atomic_load_explicit(&pool_has_full, memory_order_relaxed)) {
        flush_marked();
        return 0;
    }
    if (gc_checkmark_active || plat_ncpu() < 2) { /* single-threaded */
        pthread_mutex_lock(&pool_lock);
        n_participants = 1;
        n_waiting = 0;
        drain_done = false;
        pthread_mutex_unlock(&pool_lock);
        uint64_t r = drain_local();
        pthread_mutex_lock(&pool_lock);
        n_participants = 0;
        pthread_mutex_unlock(&pool_lock);
        return r;
    }
    if (n_helpers == 0) start_helpers();
    pthread_mutex_lock(&pool_lock);
    /* Share the roots' work so the helpers have something to take. */
    if (local_buf && local_buf->n > 0) {
        pool_put(local_buf);
        local_buf = NULL;
    }
    n_participants = 1; /* helpers add themselves when they start (helper_main) */
    n_waiting = 0;
    drain_done = false;
    drain_open = true;
    drain_epoch++;
    pthread_cond_broadcast(&pool_cv);
    pthread_mutex_unlock(&pool_lock);
    uint64_t r = drain_local();
    pthread_mutex_lock(&pool_lock);
    drain_open = false;
    n_participants--;
    /* Joined helpers check out: they saw the end awake (pop's wait) and leave at once, so
     * wait awake for them too rather than be woken. */
    if (n_participants > 0) {
        pthread_mutex_unlock(&pool_lock);
        spin_until(helpers_out, POP_WAIT_NS);
        pthread_mutex_lock(&pool_lock);
    }
    while (n_participants > 0) pthread_cond_wait(&pool_cv, &pool_lock);
    pthread_mutex_unlock(&pool_lock);
    return r;
}

/* ---- concurrent marking ------------------------------------------------------------------- */
void gc_mark_publish(void) {
    flush_marked();
    gc_workbuf *b = local_buf;
    if (b == NULL || b->n == 0) return;
    local_buf = NULL;
    pthread_mutex_lock(&pool_lock);
    pool_put(b);
    if (n_waiting) pthread_cond_broadcast(&pool_cv);
    pthread_mutex_unlock(&pool_lock);
}

static CGC_NOINLINE bool pop_nowait(gc_work *out) { /* as pop, never waiting */
    gc_workbuf *b = local_buf;
    pthread_mutex_lock(&pool_lock);
    gc_workbuf *f = pool_take();
    if (f) {
        if (b) {
            b->next = pool_empty;
            pool_empty = b;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    if (f == NULL) return false;
    local_buf = f;
    *out = f->e[--f->n];
    return true;
}

void gc_hold_work(gc_thread *t, int work) {
    /* Counted as a marker while it holds grey work, as gc_mark_some is. */
    atomic_fetch_add_explicit(&active_markers, 1, memory_order_seq_cst);
    last_len = 0; /* a held thread's span cache dates from its last assist */
    if (work == GC_HOLD_SCAN) {
        gc_scan_thread_saved(t);
        atomic_store_explicit(&t->alloc_black, 1, memory_order_relaxed);
    }
    gc_barrier_flush(t);
    gc_mark_publish();
    atomic_fetch_sub_explicit(&active_markers, 1, memory_order_seq_cst);
}

uint64_t gc_mark_some(uint64_t budget) {
    /* Counted before any work is taken, uncounted after it is given back: gc_mark_idle can
     * never see an empty pool while work sits in a marker's hands. */
    atomic_fetch_add_explicit(&active_markers, 1, memory_order_seq_cst);
    uint64_t done = scan_loop(true, budget);
    gc_mark_publish();
    atomic_fetch_sub_explicit(&active_markers, 1, memory_order_seq_cst);
    return done;
}

void gc_mark_starved(int delta) { atomic_fetch_add_explicit(&starved, delta, memory_order_relaxed); }

bool gc_mark_idle(void) {
    if (atomic_load_explicit(&active_markers, memory_order_seq_cst) != 0) return false;
    pthread_mutex_lock(&pool_lock);
    bool idle = pool_full == NULL && (local_buf == NULL || local_buf->n == 0);
    pthread_mutex_unlock(&pool_lock);
    return idle && atomic_load_explicit(&active_markers, memory_order_seq_cst) == 0;
}

void gc_shade_many(const uintptr_t *v, unsigned n) {
    uintptr_t hlo = alloc_heap_lo(), span = alloc_heap_hi() - hlo;
    /* Barrier entries come in runs from the same span (a subtree built in one go): the
     * last-span cache saves most page-map lookups. Valid for this flush: collected spans
     * are not freed while marking. */
    last_len = 0;
    for (unsigned i = 0; i < n; i++)
        if (v[i] - hlo < span) shade_at(v[i], true);
    gc_mark_publish();
}

void gc_mark_contents(uintptr_t p) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    if (!find_object(p, &base, &size, &s)) return;
    push_object(s, base, size);
}

bool gc_mark_only(uintptr_t p) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    if (!find_object(p, &base, &size, &s) || !mark_object(s, base)) return false;
    local_marked += size;
    return true;
}

uint64_t gc_mark_take_marked(uint64_t *leaf) {
    gc_mark_publish();
    uint64_t l = atomic_exchange_explicit(&leaf_total, 0, memory_order_relaxed);
    if (leaf) *leaf = l;
    return atomic_exchange_explicit(&marked_total, 0, memory_order_relaxed);
}

/* ---- checkmark ------------------------------------------------------------------------------- */
void gc_checkmark(void) {
    gc_mark_reset_cache();
    cm_count = 0;
    if (cm_table) memset(cm_table, 0, cm_cap * sizeof(uintptr_t));
    gc_checkmark_active = 1;
    gc_scan_roots();
    gc_scan_finalizer_roots();
    gc_drain();
    gc_checkmark_active = 0;
}

/* fork (see gc_heap_fork): the helper markers are gone in the child; re-created on demand. */
void gc_mark_fork(int what) {
    if (what == 0) pthread_mutex_lock(&pool_lock);
    else if (what == 1) pthread_mutex_unlock(&pool_lock);
    else {
        pool_lock = (pthread_mutex_t)PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
        pthread_cond_init(&pool_cv, NULL);
        n_helpers = 0;
        n_participants = 0;
        drain_epoch = 0; /* new helpers start waiting for epoch 0 to change */
        drain_open = false;
        pool_full = NULL; /* (nothing is marking: the cycle was waited out) */
        atomic_store_explicit(&pool_has_full, 0, memory_order_relaxed);
        atomic_store_explicit(&n_waiting, 0, memory_order_relaxed);
        atomic_store_explicit(&starved, 0, memory_order_relaxed);
    }
}
