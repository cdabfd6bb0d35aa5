/* gc/bdw_kinds.c — Boehm GC kinds, mark procedures and descriptors on cgc's spans.
 *
 * A Boehm "kind" says how the collector traces an object: a mark descriptor (a length to
 * scan conservatively, a bitmap of pointer words, or a mark procedure the program supplies)
 * plus whether the object's size is added to it. cgc keeps each custom kind's objects in
 * spans of kind TYPED1 whose type (span->gctype) is a cgc_type made for (kind, size class):
 * its nwords is GC_BDW_TYPE, which sends the marker to bdw_scan (gc/mark.c's one hook), and
 * its ptrmap points back at the kind. Large objects of a kind are single TYPED1 spans carrying
 * the kind's large type (gc_alloc_large_typed1). The predefined kinds map onto cgc's own:
 * PTRFREE -> leaf, NORMAL -> conservative, UNCOLLECTABLE -> gc/bdw.c.
 *
 * Mark procedures run on the marking threads (the collector and its helpers) with the world
 * stopped. GC_mark_and_push shades the object at once (cgc's work list is the mark stack),
 * so a procedure that only uses it never touches the stack it was given; entries a procedure
 * pushes itself are read back after it returns (length descriptors only; others fail loudly).
 *
 * Kinds and procedures are registered at start-up and never removed: the tables are written
 * under kinds_lock and read without it by the marker (a kind is published before its index
 * is returned, and no object of it exists before that).
 */
#include "cgc/bdw.h"

#include <string.h>

#define MAX_KINDS 64
#define MSTACK_ENTRIES 4096

typedef struct bdw_kind {
    GC_word descr;                    /* the template; + object size when adjust */
    int adjust;
    int index;
    const uint64_t *long_bitmap;      /* typed kinds with more than 62 words: bit i = word i */
    size_t long_words;
    cgc_type types[ALLOC_NCLASSES];   /* per size class; [0] is the large objects' type */
} bdw_kind;

static pthread_mutex_t kinds_lock = PTHREAD_MUTEX_INITIALIZER;
static bdw_kind *_Atomic kinds[MAX_KINDS];
static unsigned n_kinds = BDW_KIND_FIRST_CUSTOM; /* [kinds_lock] */
static GC_mark_proc _Atomic procs[BDW_MAX_MARK_PROCS];
static unsigned n_procs;                         /* [kinds_lock] */

/* ---- the scan hook -------------------------------------------------------------------------- */
static CGC_TLS struct GC_ms_entry *mstack; /* per marking thread, mapped (never scanned) */

static inline void shade_word(GC_word v) {
    if (v >= 4096 && !(v >> ALLOC_ADDR_BITS)) gc_shade((uintptr_t)v);
}

static void scan_bitmap(uintptr_t base, size_t size, GC_word d) {
    const GC_word *w = (const GC_word *)base;
    for (size_t i = 0; i < 62 && (i + 1) * 8 <= size; i++)
        if ((d >> (63 - i)) & 1) shade_word(w[i]);
}

static void run_proc(uintptr_t base, GC_word d) {
    unsigned pi = (unsigned)((d >> BDW_DS_TAG_BITS) & (BDW_MAX_MARK_PROCS - 1));
    GC_word env = d >> (BDW_DS_TAG_BITS + BDW_LOG_MAX_MARK_PROCS);
    GC_mark_proc p = atomic_load_explicit(&procs[pi], memory_order_acquire);
    if (p == NULL) bdw_unsupported("mark procedure", "a kind names a procedure never registered");
    if (mstack == NULL) {
        mstack = plat_map(MSTACK_ENTRIES * sizeof(struct GC_ms_entry));
        if (mstack == NULL) bdw_unsupported("mark procedure", "out of memory for its mark stack");
    }
    struct GC_ms_entry *top = p((GC_word *)base, mstack, mstack + MSTACK_ENTRIES - 1, env);
    /* Entries the procedure pushed itself: [mstack + 1, top]. */
    for (struct GC_ms_entry *e = mstack + 1; e <= top; e++) {
        GC_word ed = e->mse_descr.w;
        if ((ed & BDW_DS_TAGS) != BDW_DS_LENGTH)
            bdw_unsupported("mark procedure", "pushed an entry whose descriptor is not a length");
        gc_mark_range((uintptr_t)e->mse_start, (uintptr_t)e->mse_start + ed);
    }
}

static void bdw_scan(const cgc_type *t, uintptr_t base) {
    const bdw_kind *k = (const bdw_kind *)(const void *)t->ptrmap;
    size_t size = t->size;
    if (size == 0) { /* large */
        alloc_span *s = alloc_span_of((const void *)base);
        size = s ? s->npages * ALLOC_PAGE_SIZE : 0;
    }
    GC_word d = k->descr;
    if (k->long_bitmap) {
        const GC_word *w = (const GC_word *)base;
        for (size_t i = 0; i < k->long_words && (i + 1) * 8 <= size; i++)
            if ((k->long_bitmap[i / 64] >> (i % 64)) & 1) shade_word(w[i]);
        return;
    }
    switch (d & BDW_DS_TAGS) {
    case BDW_DS_LENGTH: {
        size_t len = (size_t)d + (k->adjust ? size : 0);
        if (len > size) len = size;
        gc_mark_range(base, base + len);
        break;
    }
    case BDW_DS_BITMAP:
        scan_bitmap(base, size, d);
        break;
    case BDW_DS_PROC:
        run_proc(base, d);
        break;
    default:
        bdw_unsupported("GC_new_kind", "per-object descriptors (GC_DS_PER_OBJECT)");
    }
}

GC_API_EXPORT struct GC_ms_entry *GC_mark_and_push(void *obj, struct GC_ms_entry *msp,
                                                   struct GC_ms_entry *lim, void **src) {
    (void)lim;
    (void)src;
    shade_word((GC_word)obj);
    return msp;
}

/* ---- kinds and procedures ------------------------------------------------------------------- */
GC_API_EXPORT void **GC_new_free_list(void) {
    bdw_init();
    /* Boehm's inline allocators read objects from this list; cgc never fills it (every object
     * comes from GC_generic_malloc(_many)), so it stays empty. */
    void **fl = alloc_meta_new(257 * sizeof(void *));
    if (fl == NULL) bdw_unsupported("GC_new_free_list", "out of memory");
    return fl;
}
GC_API_EXPORT void **GC_new_free_list_inner(void) { return GC_new_free_list(); }

static unsigned new_kind(GC_word descr, int adjust, const uint64_t *long_bitmap, size_t long_words) {
    if ((descr & BDW_DS_TAGS) == BDW_DS_PER_OBJECT && long_bitmap == NULL)
        bdw_unsupported("GC_new_kind", "per-object descriptors (GC_DS_PER_OBJECT)");
    bdw_kind *k = alloc_meta_new(sizeof(bdw_kind));
    if (k == NULL) bdw_unsupported("GC_new_kind", "out of memory");
    k->descr = descr;
    k->adjust = adjust;
    k->long_bitmap = long_bitmap;
    k->long_words = long_words;
    for (unsigned c = 0; c < ALLOC_NCLASSES; c++) {
        k->types[c].size = c ? alloc_classes[c].size : 0;
        k->types[c].nwords = GC_BDW_TYPE;
        k->types[c].ptrmap = (const uint64_t *)(void *)k;
        k->types[c].name = "Boehm kind";
    }
    pthread_mutex_lock(&kinds_lock);
    if (n_kinds == MAX_KINDS) {
        pthread_mutex_unlock(&kinds_lock);
        bdw_unsupported("GC_new_kind", "more than 60 kinds");
    }
    k->index = (int)n_kinds;
    atomic_store_explicit(&kinds[n_kinds], k, memory_order_release);
    unsigned idx = n_kinds++;
    pthread_mutex_unlock(&kinds_lock);
    return idx;
}

GC_API_EXPORT unsigned GC_new_kind(void **free_list, GC_word descr, int adjust, int clear) {
    bdw_init();
    (void)free_list;
    (void)clear; /* cgc clears every new object */
    return new_kind(descr, adjust, NULL, 0);
}
GC_API_EXPORT unsigned GC_new_kind_inner(void **fl, GC_word d, int a, int c) {
    return GC_new_kind(fl, d, a, c);
}

GC_API_EXPORT unsigned GC_new_proc(GC_mark_proc p) {
    bdw_init();
    pthread_mutex_lock(&kinds_lock);
    if (n_procs == BDW_MAX_MARK_PROCS) {
        pthread_mutex_unlock(&kinds_lock);
        bdw_unsupported("GC_new_proc", "more than 64 mark procedures");
    }
    unsigned i = n_procs++;
    atomic_store_explicit(&procs[i], p, memory_order_release);
    pthread_mutex_unlock(&kinds_lock);
    return i;
}
GC_API_EXPORT unsigned GC_new_proc_inner(GC_mark_proc p) { return GC_new_proc(p); }

/* ---- allocation by kind --------------------------------------------------------------------- */
void *bdw_alloc_kind(size_t n, int kind) {
    if (kind == BDW_KIND_PTRFREE) return cgc_alloc_leaf(n);
    if (kind == BDW_KIND_NORMAL) return cgc_alloc(n);
    if (kind < BDW_KIND_FIRST_CUSTOM || kind >= MAX_KINDS)
        bdw_unsupported("GC_generic_malloc", "unknown kind");
    bdw_kind *k = atomic_load_explicit(&kinds[kind], memory_order_acquire);
    if (k == NULL) bdw_unsupported("GC_generic_malloc", "unknown kind");
    if (n == 0) n = 1;
    if (n <= ALLOC_SMALL_MAX) return gc_alloc_typed1(&k->types[alloc_size_class(n)]);
    return gc_alloc_large_typed1(&k->types[0], n);
}

int bdw_kind_of(uintptr_t base, alloc_span *s) {
    (void)base;
    switch (s->kind) {
    case ALLOC_KIND_GC_LEAF: return BDW_KIND_PTRFREE;
    case ALLOC_KIND_GC_TYPED1:
        if (s->gctype && ((const cgc_type *)s->gctype)->nwords == GC_BDW_TYPE)
            return ((const bdw_kind *)(const void *)((const cgc_type *)s->gctype)->ptrmap)->index;
        return BDW_KIND_NORMAL;
    case ALLOC_KIND_MALLOC: return BDW_KIND_UNCOLLECTABLE;
    default: return BDW_KIND_NORMAL;
    }
}

GC_API_EXPORT void *GC_generic_malloc(size_t n, int kind) {
    bdw_init();
    void *p;
    if (kind == BDW_KIND_UNCOLLECTABLE) {
        extern void *GC_malloc_uncollectable(size_t);
        return GC_malloc_uncollectable(n);
    }
    p = bdw_alloc_kind(n, kind);
    if (p == NULL) return bdw_oom(n);
    bdw_after_alloc();
    return p;
}

/* A list of objects linked through their first word. The objects wait in an array on this
 * stack until all are allocated: a collection in between must see each of them (the link
 * word of a pointer-free kind is not traced). */
#define MANY_MAX 128
GC_API_EXPORT void GC_generic_malloc_many(size_t n, int kind, void **result) {
    bdw_init();
    if (n < sizeof(void *)) n = sizeof(void *);
    size_t want = n >= 4096 ? 1 : 4096 / n;
    if (want > MANY_MAX) want = MANY_MAX;
    void *volatile objs[MANY_MAX];
    size_t got = 0;
    if (kind == BDW_KIND_PTRFREE || kind == BDW_KIND_NORMAL) /* a run from the current span */
        got = gc_alloc_small_many(n, kind == BDW_KIND_PTRFREE ? ALLOC_KIND_GC_LEAF : ALLOC_KIND_GC_SCAN,
                                  (void **)objs, want);
    for (; got < want; got++) {
        objs[got] = bdw_alloc_kind(n, kind);
        if (objs[got] == NULL) break;
    }
    if (got == 0) {
        *result = bdw_oom(n);
        if (*result) *(void **)*result = NULL;
        return;
    }
    for (size_t i = 0; i + 1 < got; i++) *(void **)objs[i] = objs[i + 1];
    *(void **)objs[got - 1] = NULL;
    *result = objs[0];
    bdw_after_alloc();
}

/* ---- explicitly typed objects (gc_typed.h) --------------------------------------------------
 * A descriptor of up to 62 words is a bitmap descriptor (the Boehm encoding); a longer one is
 * a record in metadata memory, tagged with the per-object tag bits so it can never be taken
 * for either. Each distinct descriptor gets a hidden kind, found again by a short search. */
typedef struct typed_rec {
    size_t words;
    uint64_t bits[];
} typed_rec;

static GC_descr typed_descr[MAX_KINDS];
static unsigned typed_kind[MAX_KINDS], n_typed; /* [kinds_lock] */

GC_API_EXPORT GC_descr GC_make_descriptor(const GC_word *bm, size_t len) {
    bdw_init();
    size_t last = 0, set = 0;
    for (size_t i = 0; i < len; i++)
        if ((bm[i / 64] >> (i % 64)) & 1) {
            last = i + 1;
            set++;
        }
    if (set == 0) return 0;                               /* nothing to scan */
    if (set == last) return (GC_descr)(last * 8) | BDW_DS_LENGTH; /* a prefix of pointers */
    if (last <= 62) {
        GC_descr d = BDW_DS_BITMAP;
        for (size_t i = 0; i < last; i++)
            if ((bm[i / 64] >> (i % 64)) & 1) d |= (GC_descr)1 << (63 - i);
        return d;
    }
    typed_rec *r = alloc_meta_new(sizeof(typed_rec) + (last + 63) / 64 * 8);
    if (r == NULL) bdw_unsupported("GC_make_descriptor", "out of memory");
    r->words = last;
    for (size_t i = 0; i < last; i++)
        if ((bm[i / 64] >> (i % 64)) & 1) r->bits[i / 64] |= (uint64_t)1 << (i % 64);
    return (GC_descr)(uintptr_t)r | BDW_DS_PER_OBJECT;
}

static int typed_kind_for(GC_descr d) {
    pthread_mutex_lock(&kinds_lock);
    for (unsigned i = 0; i < n_typed; i++) {
        if (typed_descr[i] == d) {
            unsigned k = typed_kind[i];
            pthread_mutex_unlock(&kinds_lock);
            return (int)k;
        }
    }
    pthread_mutex_unlock(&kinds_lock);
    unsigned k;
    if ((d & BDW_DS_TAGS) == BDW_DS_PER_OBJECT) {
        const typed_rec *r = (const typed_rec *)(uintptr_t)(d & ~(GC_descr)BDW_DS_TAGS);
        k = new_kind(0, 0, r->bits, r->words);
    } else {
        k = new_kind(d, 0, NULL, 0);
    }
    pthread_mutex_lock(&kinds_lock);
    if (n_typed < MAX_KINDS) {
        typed_descr[n_typed] = d;
        typed_kind[n_typed++] = k;
    }
    pthread_mutex_unlock(&kinds_lock);
    return (int)k;
}

GC_API_EXPORT void *GC_malloc_explicitly_typed(size_t n, GC_descr d) {
    bdw_init();
    void *p;
    if (d == 0) p = cgc_alloc_leaf(n);
    else if ((d & BDW_DS_TAGS) == BDW_DS_LENGTH && d >= n) p = cgc_alloc(n);
    else p = bdw_alloc_kind(n, typed_kind_for(d));
    if (p == NULL) return bdw_oom(n);
    bdw_after_alloc();
    return p;
}
GC_API_EXPORT void *GC_malloc_explicitly_typed_ignore_off_page(size_t n, GC_descr d) {
    return GC_malloc_explicitly_typed(n, d);
}

void bdw_kinds_init(void) { gc_bdw_scan_hook = bdw_scan; }
