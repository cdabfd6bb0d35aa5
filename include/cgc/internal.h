/* cgc/internal.h — data structures of the allocator and every function that crosses files,
 * grouped by the file that defines it.
 *
 * Levels (Go's names in brackets), one file each:
 *   alloc/sizeclass.c  size classes                          [sizeclasses.go]
 *   alloc/arena.c      arenas, arena index, page map          [mheap.go arenas]
 *   alloc/pageheap.c   free page runs, spans, scavenger       [mheap.go, mgcscavenge.go]
 *   alloc/central.c    spans no thread owns, per class        [mcentral.go]
 *   alloc/cache.c      per-thread caches, remote frees        [mcache.go] + mimalloc's thread_free
 *   alloc/malloc.c     the C-library entry points (cgc_malloc...)
 *   alloc/interpose.c  malloc/free/... under their standard names (libcgc.so only)
 *   alloc/init.c       options, initialisation, fork, statistics, error reports
 *
 * Lock order (a thread holding a lock may only take locks further down the list):
 *   1. alloc_cache_registry_lock   (cache create/destroy, fork, stats)
 *   2. alloc_orphan_lock           (allocation by threads without a cache)
 *   3. alloc_centrals[c].lock      (one per span class; never two at once)
 *   4. alloc_heap_lock             (page heap, span metadata, arenas)
 * The fast paths take no lock. Every lock is a pthread mutex (no allocation, fork-safe through
 * alloc_fork_prepare/parent/child).
 */
#ifndef CGC_INTERNAL_H
#define CGC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cgc.h"
#include "cgc/platform.h"

/* ---- build configuration ---------------------------------------------------------------
 * CGC_DEBUG: 0 = release (no internal assertions), 1 = cheap assertions, 2 = expensive
 * checks (free-list walks, page-map consistency). Set with meson -Ddebug_level=N. */
#ifndef CGC_DEBUG
#define CGC_DEBUG 0
#endif

#define CGC_LIKELY(x) __builtin_expect(!!(x), 1)
#define CGC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CGC_TLS __thread __attribute__((tls_model("initial-exec")))
#define CGC_NOINLINE __attribute__((noinline))

_Noreturn void alloc_assert_fail(const char *expr, const char *file, int line);
#if CGC_DEBUG >= 1
#define CGC_ASSERT(e) ((e) ? (void)0 : alloc_assert_fail(#e, __FILE__, __LINE__))
#else
#define CGC_ASSERT(e) ((void)0)
#endif
#if CGC_DEBUG >= 2
#define CGC_XASSERT(e) CGC_ASSERT(e)
#else
#define CGC_XASSERT(e) ((void)0)
#endif

/* ---- geometry ------------------------------------------------------------------------- */
#define ALLOC_PAGE_SHIFT 13
#define ALLOC_PAGE_SIZE ((size_t)1 << ALLOC_PAGE_SHIFT) /* 8 KiB */
#define ALLOC_ARENA_SHIFT 26
#define ALLOC_ARENA_SIZE ((size_t)1 << ALLOC_ARENA_SHIFT) /* 64 MiB */
#define ALLOC_ARENA_PAGES (ALLOC_ARENA_SIZE / ALLOC_PAGE_SIZE)
#define ALLOC_ADDR_BITS 48
#define ALLOC_INDEX_BITS (ALLOC_ADDR_BITS - ALLOC_ARENA_SHIFT) /* 4M arenas */

#define ALLOC_SMALL_MAX 32768u          /* larger requests get a whole span */
#define ALLOC_MIN_ALIGN 16u             /* every block is 16-byte aligned (max_align_t) */
#define ALLOC_MAX_NELEMS 1024u          /* most objects in one small span */
#define ALLOC_BITMAP_WORDS (ALLOC_MAX_NELEMS / 64)

/* ---- size classes (alloc/sizeclass.c) ------------------------------------------------- */
/* Class 0 is unused (it means "large"). For n in (size[c-1], size[c]] the class is c. */
#define ALLOC_NCLASSES 73
typedef struct alloc_class_info {
    uint32_t size;   /* element size, a multiple of 16 */
    uint32_t npages; /* pages per span */
    uint32_t nelems; /* objects per span */
    uint32_t divmul; /* idx = (offset * divmul) >> 32, exact for offset < npages*PAGE */
} alloc_class_info;
extern alloc_class_info alloc_classes[ALLOC_NCLASSES];
extern uint8_t alloc_class_small[1024 / 16 + 1];             /* n <= 1024: [(n+15)>>4] */
extern uint8_t alloc_class_medium[(ALLOC_SMALL_MAX - 1024) / 128 + 1]; /* (n-1024+127)>>7 */
void alloc_sizeclass_init(void);

static inline unsigned alloc_size_class(size_t n) { /* 1 <= class; n <= ALLOC_SMALL_MAX */
    if (n <= 1024) return alloc_class_small[(n + 15) >> 4];
    return alloc_class_medium[(n - 1024 + 127) >> 7];
}

/* ---- spans (alloc/pageheap.c owns them) ----------------------------------------------- */
enum alloc_span_state {
    SPAN_FREE = 0,  /* in the page heap's free runs */
    SPAN_SMALL = 1, /* small objects of one class */
    SPAN_LARGE = 2, /* one large object starting at span->start */
    SPAN_META = 3,  /* dead: span struct on the metadata free list */
    SPAN_LARGE_FREEING = 4, /* a free() won the race to free this large block */
};
/* Span kinds (DESIGN §2): the kind is part of the span class, so collected objects never
 * share a span with malloc'd ones. Kinds >= ALLOC_KIND_GC_SCAN belong to the collector. */
enum alloc_span_kind {
    ALLOC_KIND_MALLOC = 0,  /* explicitly freed */
    ALLOC_KIND_GC_SCAN = 1, /* collected, scanned conservatively */
    ALLOC_KIND_GC_TYPED = 2,/* collected, scanned by the pointer map in its header */
    ALLOC_KIND_GC_LEAF = 3, /* collected, never scanned */
    ALLOC_KIND_GC_TYPED1 = 4, /* collected, every object of the span has span->gctype */
};
#define ALLOC_GC_KINDS 4

struct alloc_cache;

/* A run of pages. Invariants, for a SMALL span s:
 *   s->used + |s->free list| + (s->nelems - s->bump) == s->nelems, where used counts
 *   blocks handed out and blocks on the owner's hot list (alloc_bin.hot)
 *   every block on the free list holds alloc_freed_tag(block) in its second word, and a
 *   block handed out by malloc does not (malloc clears it): that tag is how a second free
 *   of a block that is still free is recognised without touching any bitmap;
 *   a remote bit is set only for a block a non-owner freed that the owner has not yet
 *   collected; remote_n >= number of set remote bits whose freer has incremented it.
 * Fields marked [owner] are touched only by the owning cache's thread, or under
 * alloc_central[class].lock when owner == NULL. Fields marked [heap] need alloc_heap_lock. */
typedef struct alloc_span {
    /* hot: read by every malloc and free of the span (first cache line) */
    void *free;               /* [owner] intrusive free list */
    uintptr_t start;          /* [heap] first byte */
    uint32_t divmul;          /* slot index = (offset * divmul) >> 32 */
    uint32_t elem_size;       /* copy of alloc_classes[sizeclass].size (large: 0) */
    uint32_t used;            /* [owner] */
    uint32_t nelems;
    _Atomic uint32_t bump;    /* [owner] slots >= bump were never handed out (lazy free list);
                                 read racily by remote frees: it only grows */
    uint8_t state;            /* [heap] enum alloc_span_state; readable racily by free() */
    uint8_t sizeclass;        /* 0 for large */
    uint8_t in_full;          /* [owner] on the owner's (or the central) full list */
    uint8_t kind;             /* enum alloc_span_kind */
    _Atomic uint32_t remote_n;           /* frees by non-owners not yet collected */
    _Atomic(struct alloc_cache *) owner; /* NULL: the central list owns it */
    _Atomic uint32_t full;               /* owner parked it as full (Dekker with remote_n) */
    /* cold */
    uint8_t zeroed;           /* [heap] memory known to be all zero (fresh or released) */
    uint8_t released;         /* [heap] free span whose pages were returned to the OS */
    uint8_t on_central;       /* [central lock] on a central list */
    const void *gctype;       /* ALLOC_KIND_GC_TYPED1: the cgc_type of every object */
    /* Collected small spans: one mark byte per slot (ALLOC_MAX_NELEMS bytes of metadata,
     * set up by gc/heap.c's new_span, kept when the struct is recycled). Bytes, not bits:
     * a marker sets its object's byte with a plain store, where a bit needs an atomic
     * read-modify-write (a locked instruction, ~15% of a marking-bound benchmark) so that
     * two markers setting neighbouring bits do not lose one. Large spans keep their one
     * mark bit in gcbits[0].mark. Read with a relaxed atomic load (a marker holding a stale
     * pointer may race with the struct being recycled: NULL then, and it is ignored). */
    _Atomic uint8_t *gcmarks;
    uint64_t *leak_side;      /* leak mode: one word per slot (include/cgc/leak.h); kept
                                 when the struct is recycled */
    size_t npages;            /* [heap] */
    uint64_t freed_at_ns;                /* [heap] free span: when it was last freed */
    struct alloc_span *next, *prev;      /* list links (owner's bin, central, free runs) */
    union {
        /* malloc kind: bit set = freed by a non-owner, not yet collected. Only remote frees
         * touch it, so the owner's malloc and free never load this cache line. */
        _Atomic uint64_t remote_bits[ALLOC_BITMAP_WORDS];
        /* collected kinds: alloc bit set = slot allocated (sweeping sets it from the mark
         * bytes, gcmarks); mark: used by large spans only (gcbits[0].mark bit 0). */
        struct {
            _Atomic uint64_t alloc, mark;
        } gcbits[ALLOC_BITMAP_WORDS];
    };
} alloc_span;

/* Set bits of x. Baseline x86-64 has no popcnt instruction, and __builtin_popcountll is
 * then a call into libgcc (0.8% of a Guile weak-table program, from the sweep): inline. */
static inline unsigned alloc_popcount64(uint64_t x) {
#if defined(__POPCNT__) || !defined(__x86_64__)
    return (unsigned)__builtin_popcountll(x);
#else
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (unsigned)((x * 0x0101010101010101ull) >> 56);
#endif
}

/* A span's state is written under the heap lock (or by the CAS that claims a large block
 * for free()) and read without locks by free(), so every access is atomic. */
static inline uint8_t alloc_span_state(const alloc_span *s) {
    return __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
}
static inline void alloc_span_set_state(alloc_span *s, uint8_t st) {
    __atomic_store_n(&s->state, st, __ATOMIC_RELEASE);
}

typedef struct alloc_span_list {
    alloc_span *head, *tail;
    size_t count;
} alloc_span_list;
void alloc_list_push(alloc_span_list *l, alloc_span *s);   /* at the head */
void alloc_list_append(alloc_span_list *l, alloc_span *s); /* at the tail */
void alloc_list_remove(alloc_span_list *l, alloc_span *s);

/* ---- arenas and the page map (alloc/arena.c) ------------------------------------------ */
/* Page map invariant: every page of an in-use span maps to it; a free span is mapped from
 * its first and last page and its interior pages map to NULL; other pages map to NULL. */
typedef struct alloc_arena {
    uintptr_t base;
    _Atomic(alloc_span *) pagemap[ALLOC_ARENA_PAGES]; /* page -> span */
    uint64_t released[ALLOC_ARENA_PAGES / 64];        /* [heap] bit set: page not resident */
} alloc_arena;
/* The arena index: one slot per possible 64 MiB arena of the 48-bit address space, flat,
 * in BSS (32 MiB of address space; only the pages around the heap's arenas are ever
 * touched). Flat, so a lookup is two dependent loads (index, page map) plus the span. */
extern _Atomic(alloc_arena *) alloc_arena_index[(size_t)1 << ALLOC_INDEX_BITS];
/* Lowest and highest address of any arena [heap lock to write; read racily]. Globals that
 * hold heap addresses are kept XORed with ALLOC_DISGUISE (high bits set: never a candidate
 * pointer), or the conservative scanner would find them in our own data and keep the
 * object at that address alive forever. */
#define ALLOC_DISGUISE ((uintptr_t)0xffff000000000000ull)
extern _Atomic uintptr_t alloc_heap_lo_x, alloc_heap_hi_x;
static inline uintptr_t alloc_heap_lo(void) {
    uintptr_t x = atomic_load_explicit(&alloc_heap_lo_x, memory_order_relaxed);
    return x ? x ^ ALLOC_DISGUISE : 0;
}
static inline uintptr_t alloc_heap_hi(void) {
    uintptr_t x = atomic_load_explicit(&alloc_heap_hi_x, memory_order_relaxed);
    return x ? x ^ ALLOC_DISGUISE : 0;
}

/* The span containing address p, or NULL if p is not in cgc's heap. Never dereferences p.
 * Lock-free; the result may be stale for a pointer the caller does not own. */
static inline alloc_span *alloc_span_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    if (CGC_UNLIKELY(a >> ALLOC_ADDR_BITS)) return NULL;
    alloc_arena *ar = atomic_load_explicit(&alloc_arena_index[a >> ALLOC_ARENA_SHIFT],
                                           memory_order_acquire);
    if (CGC_UNLIKELY(ar == NULL)) return NULL;
    return atomic_load_explicit(&ar->pagemap[(a >> ALLOC_PAGE_SHIFT) & (ALLOC_ARENA_PAGES - 1)],
                                memory_order_acquire);
}
/* Reserve a new region of `size` bytes (a multiple of the arena size) and register its
 * arenas. The heap lock must be held. Returns the base or 0. */
uintptr_t alloc_arena_grow(size_t size);
/* Point the page map of every page of [start, start+npages) (or only the first and last
 * page when ends_only) at s. The heap lock must be held. */
void alloc_pagemap_set(uintptr_t start, size_t npages, alloc_span *s, bool ends_only);
/* The arena holding addr (which must be in cgc's heap). */
alloc_arena *alloc_arena_of(uintptr_t addr);
/* Metadata memory (never freed, never returned): bump allocation from mapped chunks.
 * The heap lock must be held. Returns zeroed memory or NULL. */
void *alloc_meta_alloc(size_t size);
/* The same, taking the heap lock itself. */
void *alloc_meta_new(size_t size);

/* ---- page heap (alloc/pageheap.c) ----------------------------------------------------- */
extern pthread_mutex_t alloc_heap_lock;
/* Allocate a span of npages whose start is a multiple of align_pages pages, in state
 * SPAN_LARGE or SPAN_SMALL, page map set. s->zeroed says whether its memory is known zero.
 * Returns NULL (errno untouched) when the OS refuses memory. Takes the heap lock. */
alloc_span *alloc_heap_alloc(size_t npages, size_t align_pages, bool large);
/* Resize a large span in place to npages: shrinking returns the tail to the free runs;
 * growing takes pages from the free run right after it. False if it cannot grow there.
 * The caller owns s. Takes the heap lock. */
bool alloc_heap_resize(alloc_span *s, size_t npages);
/* Return a span to the free runs, coalescing with free neighbours. Takes the heap lock. */
void alloc_heap_free(alloc_span *s);
/* Release free pages that have been free for at least min_age_ns. Takes the heap lock.
 * Returns bytes released. */
size_t alloc_heap_scavenge(uint64_t min_age_ns);
/* Start the background scavenger if free memory waits for it. Must hold no lock. */
void alloc_scavenger_poke(void);
void alloc_scavenger_after_fork_child(void);
typedef struct alloc_heap_stats {
    uint64_t mapped, released, span_bytes, free_bytes, large_bytes, large_count, scavenged;
} alloc_heap_stats;
void alloc_heap_get_stats(alloc_heap_stats *out); /* takes the heap lock */
/* Check the page heap's invariants: NULL if they hold, else what is wrong. Takes the heap
 * lock (the _locked form: the caller holds it). Tests call it; CGC_DEBUG=2 builds call it
 * after every page-heap operation. */
const char *alloc_heap_check(void);
const char *alloc_heap_check_locked(void);

/* ---- central lists (alloc/central.c) -------------------------------------------------- */
typedef struct alloc_central {
    pthread_mutex_t lock;
    alloc_span_list partial; /* unowned spans with free slots */
    alloc_span_list full;    /* unowned spans without */
    _Atomic size_t npartial; /* partial.count, for a lock-free peek */
} alloc_central;
extern alloc_central alloc_centrals[ALLOC_NCLASSES];
/* Take an unowned span with free slots for class c and make `owner` its owner, or NULL.
 * Pending remote frees are collected. */
alloc_span *alloc_central_adopt(unsigned c, struct alloc_cache *owner);
/* Give an owned span to the central list (thread exit). The caller is its owner. */
void alloc_central_abandon(alloc_span *s);
/* A remote free found the span unowned: collect its pending frees under the lock. */
void alloc_central_collect(alloc_span *s, unsigned cls); /* cls: read while s was alive */
/* A thread frees into an unowned span: make it the owner (mimalloc's reclaim-on-free), so
 * this and later frees into the span are local. False if someone else got it first. */
bool alloc_central_claim(alloc_span *s, struct alloc_cache *c);

/* ---- thread caches (alloc/cache.c) ---------------------------------------------------- */
typedef struct alloc_bin {
    void **hot;             /* blocks this thread freed last, LIFO (tcmalloc's thread cache):
                               still counted in their span's `used`, tagged free */
    uint32_t nhot, hot_max; /* when nhot passes hot_max, the older half goes back to spans */
    alloc_span *cur;        /* span allocations come from; never NULL (alloc_empty_span) */
    alloc_span_list avail;  /* other owned spans with free slots (cur is not on it); FIFO:
                               a span that got a slot back joins the tail, so by the time it
                               is used again it has gathered more (mimalloc's page queue) */
    alloc_span_list full;   /* owned spans with no free slot when last looked at */
} alloc_bin;
typedef struct alloc_cache {
    alloc_bin bins[ALLOC_NCLASSES];
    _Atomic uint32_t notify[ALLOC_NCLASSES]; /* remote frees arrived in a full span */
    _Atomic uint64_t nmalloc, nfree, nremote; /* [owner] statistics (relaxed counters) */
    alloc_span *gc_cur[ALLOC_GC_KINDS][ALLOC_NCLASSES]; /* collected kinds: current spans
                                      (the collector takes them back at each cycle) */
    /* [owner] a batch of gc_cur's slots, claimed (allocated, zeroed) and not yet handed
     * out: bit i is slot gc_word * 64 + i (gc/heap.c, "Batches") */
    uint64_t gc_free[ALLOC_GC_KINDS][ALLOC_NCLASSES];
    uint32_t gc_word[ALLOC_GC_KINDS][ALLOC_NCLASSES];
    uint64_t gc_alloc_local;                 /* [owner] bytes not yet added to the pacer */
    struct alloc_cache *reg_next;            /* registry: every cache ever created */
    uint8_t live;                            /* [registry lock] owned by a running thread */
} alloc_cache;
extern alloc_span alloc_empty_span;   /* a span with no free slot: the initial bins[].cur */
extern CGC_TLS alloc_cache *alloc_tls_cache;
#define ALLOC_CACHE_DEAD ((alloc_cache *)1)   /* this thread's cache was torn down */
extern pthread_mutex_t alloc_cache_registry_lock;
extern alloc_cache *alloc_cache_registry;
extern alloc_cache alloc_orphan_cache;       /* for threads without a cache; under its lock */
extern pthread_mutex_t alloc_orphan_lock;

/* Create the pthread key whose destructor tears a thread's cache down (init step 2). */
void alloc_cache_key_init(void);
/* Slow path of small allocation: refill c->bins[cls].cur and allocate. NULL on ENOMEM. */
void *alloc_cache_refill(alloc_cache *c, unsigned cls);
/* Put a span the cache just became owner of on its bin's avail or full list. */
void alloc_cache_take_span(alloc_cache *c, alloc_span *s);
/* Create the calling thread's cache (or return NULL if it cannot have one). */
alloc_cache *alloc_cache_create(void);
/* Thread exit: give every span away. c is unusable afterwards. */
void alloc_cache_destroy(alloc_cache *c);
/* Collect pending remote frees of s into its free list. The caller owns s (or holds the
 * central lock of an unowned s). */
void alloc_span_collect(alloc_span *s);
/* Fill in a fresh small span's class fields (size, count, divisor, kind); used = 0. */
void alloc_span_set_class(alloc_span *s, unsigned cls, unsigned kind);
/* Does s have a slot to hand out (on its free list or never used)? [owner] */
static inline bool alloc_span_has_room(const alloc_span *s) {
    return s->free != NULL ||
           atomic_load_explicit(&s->bump, memory_order_relaxed) < s->nelems;
}
/* Prepare a fresh small span (its free list is built lazily, a page at a time, so a span's
 * untouched tail costs no resident memory). */
void alloc_span_init_small(alloc_span *s, unsigned cls, unsigned kind);
/* Hook: the collector's allocator asks for spans of collected kinds through this. */
void alloc_cache_init(alloc_cache *c);
/* Local free of a slot that the caller's cache owns: slow part (span left full list or
 * became empty). */
void alloc_cache_free_slow(alloc_cache *c, alloc_span *s);
/* The hot list of a bin passed hot_max: return its older half to the blocks' spans. */
void alloc_cache_flush_hot(alloc_cache *c, alloc_bin *b);
/* Is p on the hot list of bin b? (double-free confirmation) */
bool alloc_cache_on_hot(const alloc_bin *b, const void *p);
/* Free by a thread that does not own the span. */
void alloc_remote_free(alloc_span *s, void *p, uint32_t idx);
/* Abandon the caches of threads that no longer exist (fork child). */
void alloc_cache_fork_child(void);

/* ---- initialisation, options, errors (alloc/init.c) ----------------------------------- */
typedef struct alloc_options {
    int stats;             /* CGC_STATS: print statistics at exit */
    int on_error_warn;     /* CGC_ON_ERROR=warn: report and continue instead of aborting */
    uint64_t decay_ns;     /* CGC_DECAY_MS: free pages are returned to the OS within this */
    int scavenger;         /* CGC_SCAVENGER=0 disables the background thread */
} alloc_options;
extern alloc_options alloc_opt;
extern _Atomic int alloc_ready; /* 0 until the core may serve allocations */
void alloc_init_slow(void);
/* Read the CGC_* environment into alloc_opt (at init; tests call it again after setenv). */
void alloc_read_options(void);
static inline void alloc_ensure_init(void) {
    if (CGC_UNLIKELY(!atomic_load_explicit(&alloc_ready, memory_order_acquire)))
        alloc_init_slow();
}
/* Report a bad free/realloc of p ("double free", "invalid free", ...); aborts unless
 * CGC_ON_ERROR=warn. */
void alloc_report_error(const char *what, const void *p);
/* Format helpers that never allocate. */
size_t alloc_fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* fork() from a signal handler that interrupted this very thread inside cgc (holding a lock,
 * or collecting): the prepare handlers would take a lock the thread already holds and
 * deadlock. The first prepare handler to run detects it and sets alloc_tls_fork_skip
 * (1: allocator handlers only, 2: collector handlers too); every handler then does nothing,
 * the last one clears it. The child of such a fork may only call async-signal-safe
 * functions (POSIX's rule for a fork from a signal handler): _exit or exec. A fork from a
 * handler that interrupted code outside cgc is an ordinary fork. alloc_tls_fork_checked:
 * the collector's prepare handler decided "ordinary" (its own no-stop region is not a sign
 * of being inside cgc). */
extern CGC_TLS unsigned char alloc_tls_fork_skip, alloc_tls_fork_checked;
void alloc_fork_prepare(void);
void alloc_fork_parent(void);
void alloc_fork_child(void);

/* ---- entry points (alloc/malloc.c) ---------------------------------------------------- */
extern _Atomic uint64_t alloc_orphan_nlarge, alloc_orphan_nfree, alloc_orphan_nremote;
void *alloc_malloc_slow(size_t n, bool zero);
void *alloc_large(size_t n, size_t align, bool zero);
void *alloc_aligned(size_t align, size_t n);
void alloc_free_slow(void *p, alloc_span *s);

/* ---- locks and the collector's stop requests -----------------------------------------------
 * A thread the collector wants stopped must not be stopped while it holds an allocator lock
 * or is half-way through a collected allocation: the collector may need that lock or that
 * cache while the world is stopped. alloc_tls_nostop counts such regions; the stop signal
 * handler defers while it is non-zero, and leaving the outermost region calls the hook the
 * collector registered (DESIGN §1: the allocator calls the collector only through hooks). */
extern CGC_TLS volatile unsigned alloc_tls_nostop;
extern CGC_TLS volatile unsigned alloc_tls_stop_deferred;
extern void (*alloc_deferred_stop_hook)(void);
/* Set by the collector: give a recycled cache's collected spans back (thread exit). */
extern void (*alloc_gc_cache_release_hook)(struct alloc_cache *c);
/* Set by the collector: in a fork child, make the collector's span-list locks usable before
 * alloc_fork_child hands the dead threads' collected spans back through the hook above. The
 * forking thread holds those locks (the collector's prepare handler took them), and the
 * collector's own child handler runs only after the allocator's: without this, the child
 * deadlocks on a lock it holds itself (found by stress/hostile_fork.c). */
extern void (*alloc_gc_fork_child_hook)(void);
/* Set by the collector: fill the collected-heap part of cgc_stats. */
extern void (*alloc_gc_stats_hook)(cgc_stats *st);
/* Set by leak mode (gc/leak.c): fill the leak part of cgc_stats. */
extern void (*alloc_leak_stats_hook)(cgc_stats *st);
/* The signal fences keep the compiler from moving the counter update across the check of
 * the deferred flag (the handler runs on this thread, between any two instructions):
 * otherwise a stop that arrives between them is neither taken nor deferred. */
static inline void alloc_nostop_enter(void) {
    alloc_tls_nostop++;
    atomic_signal_fence(memory_order_seq_cst);
}
static inline void alloc_nostop_leave(void) {
    atomic_signal_fence(memory_order_seq_cst);
    unsigned n = --alloc_tls_nostop;
    atomic_signal_fence(memory_order_seq_cst);
    if (n == 0 && CGC_UNLIKELY(alloc_tls_stop_deferred)) alloc_deferred_stop_hook();
}
static inline void alloc_lock(pthread_mutex_t *m) {
    alloc_nostop_enter();
    pthread_mutex_lock(m);
}
static inline void alloc_unlock(pthread_mutex_t *m) {
    pthread_mutex_unlock(m);
    alloc_nostop_leave();
}

/* ---- bit helpers ---------------------------------------------------------------------- */
static inline uint32_t alloc_slot_index(const alloc_span *s, uintptr_t p) {
    return (uint32_t)(((uint64_t)(p - s->start) * s->divmul) >> 32);
}
/* Slot index of p, and whether p is exactly a slot's start: the low half of the same
 * product is below divmul exactly when the offset is a multiple of the size (proven for
 * every class and offset by tests/test_sizeclass.c). Saves a second multiply on free. */
static inline uint32_t alloc_slot_index_exact(const alloc_span *s, uintptr_t p, bool *exact) {
    uint64_t prod = (uint64_t)(p - s->start) * s->divmul;
    *exact = (uint32_t)prod < s->divmul;
    return (uint32_t)(prod >> 32);
}
static inline uint64_t alloc_bits_load(_Atomic uint64_t *w) {
    return atomic_load_explicit(w, memory_order_relaxed);
}
/* The tag a free block carries in its second word (see alloc_span). Per-process random key,
 * so program data equals it with probability 2^-64. */
extern uintptr_t alloc_tag_key;
static inline uintptr_t alloc_freed_tag(const void *p) { return alloc_tag_key ^ (uintptr_t)p; }
/* A counter only one thread writes but others may read: a plain add, no lock prefix. */
static inline void alloc_count(_Atomic uint64_t *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}
static inline bool alloc_cache_valid(const alloc_cache *c) {
    return (uintptr_t)c > (uintptr_t)ALLOC_CACHE_DEAD;
}

#endif /* CGC_INTERNAL_H */
