/* fuzz_api.c — libFuzzer target: the input is a program of API operations on both heaps.
 *
 * Each input byte string is decoded into a sequence of operations (malloc, calloc, realloc,
 * free, the aligned family, usable_size; cgc_alloc, cgc_alloc_leaf, cgc_alloc_typed,
 * cgc_alloc_array; cgc_add_roots / cgc_remove_roots; a pointer store into a collected
 * object; cgc_collect). A shadow model records every block: its size and a key from which
 * its whole content is derived (a fill pattern, plus the pointers stored into collected
 * objects). A block is checked against the model whenever an operation touches it, every
 * block at every collection and at the end of the input, and the heap checkers
 * (alloc_heap_check after every operation, gc_heap_check after a collection) run too. Any
 * mismatch aborts, which libFuzzer records as a crash with the input that caused it.
 *
 * Keeping the model honest with a conservative collector:
 *   - collected objects are kept alive only by what the model says keeps them alive: root
 *     arrays (mmap'd, so never scanned unless registered) registered with cgc_add_roots, and
 *     pointer words of other live collected objects. CGC_ROOTS=explicit: the fuzzer's (and
 *     libFuzzer's) data and bss are not roots.
 *   - the model stores addresses disguised (XOR with a mask), so the model itself never
 *     keeps an object alive; when an object becomes unreachable in the model, it is dropped
 *     from the model (the collector may free it from then on; the conservative stack scan
 *     may keep it longer, which is allowed, so nothing checks that it dies).
 *   - every input starts from empty root arrays and ends by freeing every malloc block and
 *     clearing every root, so inputs are independent (the crash input reproduces alone).
 *
 * Built twice (tests/fuzz/meson.build): fuzz_api, everything above, with ASan and UBSan and
 * the allocator's expensive checks (CGC_DEBUG=2); fuzz_malloc (-DFUZZ_MALLOC_ONLY), the
 * explicit-free operations only, UBSan only: ten times the executions per second, for the
 * long runs.
 *
 * Pointer stores go through FUZZ_STORE, which is cgc_store() (the write barrier) when
 * <cgc/barrier.h> exists and a plain store before that.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cgc/gc.h"

#if defined(__has_include)
#if __has_include(<cgc/barrier.h>)
#include <cgc/barrier.h>
#define FUZZ_HAVE_BARRIER 1
#endif
#endif
#ifdef FUZZ_HAVE_BARRIER
#define FUZZ_STORE(slot, v) cgc_store((void **)(slot), (void *)(v))
#else
#define FUZZ_STORE(slot, v) (*(void *volatile *)(slot) = (void *)(v))
#endif

#define NMALLOC 48   /* malloc'd block slots */
#define NOBJ 64      /* collected object slots in the model */
#define NARRAYS 4    /* root arrays */
#define ROOTS_PER 8  /* slots per root array */
#define NSTORES 4    /* pointer slots per collected object that the model tracks */
#define MASK ((uintptr_t)0xa5a5a5a5a5a5a5a5ull)
#ifndef MAX_COLLECTS
#define MAX_COLLECTS 3 /* per input: a collection costs a stop and a full mark */
#endif

static void fail(const char *what, const void *p, size_t off) __attribute__((noreturn));
static void fail(const char *what, const void *p, size_t off) {
    fprintf(stderr, "fuzz_api: FAIL: %s (block %p, offset %zu)\n", what, p, off);
    abort();
}

/* The pattern loops touch every byte of every block: compiled without coverage feedback
 * (coverage-ignore.txt: it would only count loop iterations; kept out of line so no copy
 * is inlined into an instrumented caller) and without ASan checks (cgc's heap is its own
 * mmap'd memory, which ASan does not track anyway), they cost a tenth as much. Nor UBSan's:
 * its pointer-overflow check on every word is a check of this loop, not of cgc, and it
 * kept the loops from being vectorised. */
#if defined(__clang__)
#define FUZZ_HOT __attribute__((noinline, no_sanitize("address", "undefined")))
#else
#define FUZZ_HOT __attribute__((noinline))
#endif

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27; x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}
/* Word w of a block with this key (the key is already mixed: a multiply per word suffices). */
static inline uint64_t pat(uint64_t key, size_t word) { return key ^ (word * 0x9E3779B97F4A7C15ULL); }

FUZZ_HOT static void fill(unsigned char *p, size_t n, uint64_t key) {
    size_t w = 0;
    for (; 8 * w + 8 <= n; w++) {
        uint64_t v = pat(key, w);
        memcpy(p + 8 * w, &v, 8);
    }
    if (n > 8 * w) {
        uint64_t v = pat(key, w);
        memcpy(p + 8 * w, &v, n - 8 * w);
    }
}

FUZZ_HOT static void check_fill(const unsigned char *p, size_t n, uint64_t key, const char *what) {
    size_t w = 0;
    for (; 8 * w + 8 <= n; w++) {
        uint64_t v;
        memcpy(&v, p + 8 * w, 8);
        if (v != pat(key, w)) fail(what, p, 8 * w);
    }
    if (n > 8 * w) {
        uint64_t v = pat(key, w), got = 0;
        memcpy(&got, p + 8 * w, n - 8 * w);
        if (((got ^ v) << (8 * (8 - (n - 8 * w)))) != 0) fail(what, p, 8 * w);
    }
}

FUZZ_HOT static void check_zero(const unsigned char *p, size_t n, const char *what) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (v) break;
    }
    for (; i < n; i++)
        if (p[i]) fail(what, p, i);
}

/* ---- the input reader --------------------------------------------------------------------- */
static const uint8_t *in_p;
static size_t in_n;
static unsigned take8(void) {
    if (in_n == 0) return 0;
    in_n--;
    return *in_p++;
}
static unsigned take16(void) { unsigned a = take8(); return a | take8() << 8; }

/* Mostly small (size classes), some medium, rarely large (page heap). */
static size_t take_size(void) {
    unsigned sel = take8(), v = take16();
    if (sel < 210) return v % 1024 + (sel & 1); /* includes 0 */
    if (sel < 252) return 1024 + v % (40 * 1024);
    return 32 * 1024 + (size_t)v * 4; /* up to ~290 KiB */
}

/* ---- malloc model ----------------------------------------------------------------------- */
typedef struct mblk {
    uintptr_t px; /* address ^ MASK, 0: empty */
    size_t n;
    uint64_t key;
} mblk;
static mblk mb[NMALLOC];
static uint64_t serial;

static unsigned char *mptr(const mblk *b) { return (unsigned char *)(b->px ^ MASK); }

static void m_set(mblk *b, void *p, size_t n) {
    b->px = (uintptr_t)p ^ MASK;
    b->n = n;
    b->key = mix(++serial ^ (uintptr_t)p);
    fill(p, n, b->key);
}

static void m_check(const mblk *b, const char *what) {
    unsigned char *p = mptr(b);
    size_t u = cgc_usable_size(p);
    if (u < b->n || (u == 0 && b->n == 0 && 0)) fail("usable size below the requested size", p, u);
    check_fill(p, b->n, b->key, what);
}

static void check_align(const void *p, size_t n, size_t align) {
    if (align < 16 && n >= 16) align = 16;
    if ((uintptr_t)p & (align - 1)) fail("misaligned block", p, align);
}

static void m_free(mblk *b) {
    if (!b->px) return;
    m_check(b, "pattern changed before free");
    cgc_free(mptr(b));
    b->px = 0;
}

static void op_malloc(unsigned kind) {
    mblk *b = &mb[take8() % NMALLOC];
    m_free(b);
    size_t n = take_size();
    void *p;
    switch (kind) {
    case 0:
        p = cgc_malloc(n);
        if (!p) fail("malloc returned NULL", NULL, n);
        check_align(p, n, 1);
        break;
    case 1: {
        size_t cnt = take8() % 8 + 1, sz = n / cnt;
        n = cnt * sz;
        p = cgc_calloc(cnt, sz);
        if (!p) fail("calloc returned NULL", NULL, n);
        check_align(p, n, 1);
        check_zero(p, n, "calloc block not zero");
        break;
    }
    default: {
        unsigned sel = take8();
        size_t align = (size_t)8 << (sel % 14); /* 8 .. 64 KiB */
        int how = (sel >> 4) % 3;
        if (how == 0) {
            p = NULL;
            if (cgc_posix_memalign(&p, align, n) != 0 || !p) fail("posix_memalign failed", NULL, n);
        } else if (how == 1) {
            n = (n + align - 1) & ~(align - 1);
            p = cgc_aligned_alloc(align, n);
            if (!p) fail("aligned_alloc failed", NULL, n);
        } else {
            p = cgc_memalign(align, n);
            if (!p) fail("memalign failed", NULL, n);
        }
        check_align(p, n, align);
        break;
    }
    }
    m_set(b, p, n);
}

static void op_realloc(void) {
    mblk *b = &mb[take8() % NMALLOC];
    size_t n = take_size();
    if (!b->px) { /* realloc(NULL, n) is malloc */
        void *p = cgc_realloc(NULL, n ? n : 1);
        if (!p) fail("realloc(NULL) returned NULL", NULL, n);
        m_set(b, p, n ? n : 1);
        return;
    }
    m_check(b, "pattern changed before realloc");
    if (n == 0) { /* glibc semantics: frees, returns NULL */
        if (cgc_realloc(mptr(b), 0) != NULL) fail("realloc(p, 0) did not return NULL", mptr(b), 0);
        b->px = 0;
        return;
    }
    unsigned char *q = cgc_realloc(mptr(b), n);
    if (!q) fail("realloc returned NULL", mptr(b), n);
    check_align(q, n, 1);
    check_fill(q, n < b->n ? n : b->n, b->key, "realloc did not preserve the prefix");
    m_set(b, q, n);
}

static void op_free(void) { m_free(&mb[take8() % NMALLOC]); }

static void op_usable(void) {
    mblk *b = &mb[take8() % NMALLOC];
    if (b->px) m_check(b, "pattern changed (spot check)");
    if (cgc_usable_size(NULL) != 0) fail("usable_size(NULL) != 0", NULL, 0);
}

/* ---- collected model -------------------------------------------------------------------- */
enum { K_SCAN, K_LEAF, K_TYPED, K_ARRAY };
typedef struct gobj {
    uintptr_t px;   /* address ^ MASK, 0: not in the model */
    size_t n;       /* user bytes */
    uint64_t key;
    uint8_t kind;
    uint8_t nslots; /* pointer-capable words the model may store into */
    uint16_t slot_word[NSTORES]; /* word index of each pointer slot */
    int16_t target[NSTORES];     /* model index of the object stored there, -1: NULL */
    bool mark;      /* reachability pass */
} gobj;
static gobj go[NOBJ];

/* Root arrays: mmap'd (not scanned unless registered), entry = model index or -1. */
static void **root_arr[NARRAYS];
static bool root_reg[NARRAYS];
static int16_t root_idx[NARRAYS][ROOTS_PER];

/* Typed objects: 8 words, pointers in words 1 and 4 (a mixed map: span-of-type path);
 * arrays of a 3-word element with a pointer in word 0. */
static const uint64_t t8_map[1] = {(1u << 1) | (1u << 4)};
static const cgc_type t8 = {64, 8, t8_map, "fuzz8"};
static const uint64_t e3_map[1] = {1u << 0};
static const cgc_type e3 = {24, 3, e3_map, "fuzz_elem3"};

static unsigned char *gptr(const gobj *o) { return (unsigned char *)(o->px ^ MASK); }

/* Is word w of o one of its pointer slots? Which one? */
FUZZ_HOT static int slot_of(const gobj *o, size_t w) {
    for (int i = 0; i < o->nslots; i++)
        if (o->slot_word[i] == w) return i;
    return -1;
}

/* A collected object differs from its model: say what it is and what its span looks like
 * now (clobbered: swept as unreachable; zero: reused), then fail. */
static void g_fail(const gobj *o, const char *what, size_t off, uint64_t got, uint64_t want)
    __attribute__((noreturn, noinline));
static void g_fail(const gobj *o, const char *what, size_t off, uint64_t got, uint64_t want) {
    static const char *const kinds[] = {"scan", "leaf", "typed", "array"};
    const void *p = (const void *)(o->px ^ MASK);
    alloc_span *s = alloc_span_of(p);
    fprintf(stderr, "fuzz_api: %s object %p, %zu bytes, model index %d: word at offset %zu is "
            "%#llx, want %#llx\n", kinds[o->kind & 3], p, o->n, (int)(o - go), off,
            (unsigned long long)got, (unsigned long long)want);
    if (s)
        fprintf(stderr, "fuzz_api: its span %p: start %#lx, %zu pages, state %u, kind %u, "
                "elem_size %zu, nelems %u\n", (void *)s, (unsigned long)s->start,
                (size_t)s->npages, (unsigned)alloc_span_state(s), (unsigned)s->kind,
                (size_t)s->elem_size, (unsigned)s->nelems);
    for (int i = 0; i < NOBJ; i++)
        for (int k = 0; k < go[i].nslots; k++)
            if (go[i].px && go[i].target[k] == (int)(o - go))
                fprintf(stderr, "fuzz_api: referred to by model object %d slot word %u\n", i,
                        (unsigned)go[i].slot_word[k]);
    for (int a = 0; a < NARRAYS; a++)
        for (int r = 0; r < ROOTS_PER; r++)
            if (root_reg[a] && root_idx[a][r] == (int)(o - go))
                fprintf(stderr, "fuzz_api: referred to by root array %d slot %d (holds %p)\n", a,
                        r, root_arr[a][r]);
    fail(what, p, off);
}

FUZZ_HOT static void g_check(const gobj *o, const char *what) {
    const unsigned char *p = gptr(o);
    for (size_t w = 0; w * 8 < o->n; w++) {
        int s = slot_of(o, w);
        uint64_t want = pat(o->key, w), got = 0;
        size_t len = o->n - 8 * w < 8 ? o->n - 8 * w : 8;
        if (s >= 0) {
            int t = o->target[s];
            if (t >= 0 && !go[t].px) fail("model: a stored target left the model", p, 8 * w);
            want = t < 0 ? 0 : (uint64_t)(go[t].px ^ MASK);
        }
        if (len == 8) memcpy(&got, p + 8 * w, 8);
        else for (size_t b = 0; b < len; b++) got |= (uint64_t)p[8 * w + b] << (8 * b);
        if (((got ^ want) << (8 * (8 - len))) != 0) g_fail(o, what, 8 * w, got, want);
    }
}

/* Fill a fresh object's data words with its pattern; pointer slots stay NULL (zero). */
FUZZ_HOT static void g_fill(gobj *o) {
    unsigned char *p = gptr(o);
    for (size_t w = 0; w * 8 < o->n; w++) {
        if (slot_of(o, w) >= 0) continue;
        uint64_t v = pat(o->key, w);
        /* A constant-size copy for whole words: it compiles to one store, where a variable
         * size went through ASan's memcpy interceptor (12% of fuzz_api's time). */
        if (o->n - 8 * w >= 8) memcpy(p + 8 * w, &v, 8);
        else for (size_t b = 0; b < o->n - 8 * w; b++) p[8 * w + b] = (unsigned char)(v >> (8 * b));
    }
}

/* Drop from the model every object no registered root reaches (it may be freed now). */
static void g_reach(void) {
    int stack[NOBJ], sp = 0;
    for (int i = 0; i < NOBJ; i++) go[i].mark = false;
    for (int a = 0; a < NARRAYS; a++) {
        if (!root_reg[a]) continue;
        for (int r = 0; r < ROOTS_PER; r++) {
            int i = root_idx[a][r];
            if (i >= 0 && !go[i].mark) { go[i].mark = true; stack[sp++] = i; }
        }
    }
    while (sp > 0) {
        gobj *o = &go[stack[--sp]];
        for (int s = 0; s < o->nslots; s++) {
            int t = o->target[s];
            if (t >= 0 && !go[t].mark) { go[t].mark = true; stack[sp++] = t; }
        }
    }
    for (int i = 0; i < NOBJ; i++)
        if (go[i].px && !go[i].mark) go[i].px = 0;
}

static int free_gslot(void) {
    for (int i = 0; i < NOBJ; i++)
        if (!go[i].px) return i;
    return -1;
}

/* Allocate a collected object into root slot (a, r) of a registered array. */
static void op_gc_alloc(unsigned kind) {
    unsigned a = take8() % NARRAYS, r = take8() % ROOTS_PER;
    size_t n = take_size();
    if (!root_reg[a]) return; /* the object would be unreachable at once */
    int i = free_gslot();
    if (i < 0) return;
    gobj *o = &go[i];
    memset(o, 0, sizeof *o);
    void *p;
    size_t count = 1;
    switch (kind) {
    case K_SCAN: p = cgc_alloc(n); break;
    case K_LEAF: p = cgc_alloc_leaf(n); break;
    case K_TYPED: n = t8.size; p = cgc_alloc_typed(&t8); break;
    default: count = n / 512 + 1; n = count * e3.size; p = cgc_alloc_array(&e3, count); break;
    }
    if (!p) fail("collected allocation returned NULL", NULL, n);
    if ((uintptr_t)p & 15) fail("collected object not 16-aligned", p, 0);
    check_zero(p, n, "fresh collected object not zero");
    o->n = n;
    o->kind = (uint8_t)kind;
    o->key = mix(++serial ^ (uintptr_t)p);
    /* Pointer slots: scanned objects any word (chosen by the input), typed the map's words,
     * arrays word 0 of some elements, leaves none. */
    size_t words = n / 8;
    if (kind == K_SCAN && words) {
        o->nslots = (uint8_t)(take8() % (NSTORES + 1));
        for (int s = 0; s < o->nslots; s++) {
            uint16_t w = (uint16_t)(take16() % words);
            if (slot_of(o, w) >= 0) { o->nslots = (uint8_t)s; break; }
            o->slot_word[s] = w;
        }
    } else if (kind == K_TYPED) {
        o->nslots = 2;
        o->slot_word[0] = 1;
        o->slot_word[1] = 4;
    } else if (kind == K_ARRAY) {
        o->nslots = (uint8_t)(count < NSTORES ? count : NSTORES);
        for (int s = 0; s < o->nslots; s++) o->slot_word[s] = (uint16_t)(s * (count / o->nslots) * 3);
    }
    for (int s = 0; s < NSTORES; s++) o->target[s] = -1;
    o->px = (uintptr_t)p ^ MASK;
    g_fill(o);
    /* Into the root slot: the previous occupant may become unreachable. */
    FUZZ_STORE(&root_arr[a][r], p);
    root_idx[a][r] = (int16_t)i;
    p = NULL;
    g_reach();
    g_check(o, "collected object changed right after allocation");
}

/* Store a pointer to object t (or NULL) into pointer slot s of object o. */
static void op_store(void) {
    unsigned oi = take8() % NOBJ, ti = take8(), si = take8();
    gobj *o = &go[oi];
    if (!o->px || o->nslots == 0) return;
    int s = (int)(si % o->nslots);
    int t = ti % (NOBJ + 8); /* some stores are NULL */
    if (t >= NOBJ || !go[t].px) t = -1;
    g_check(o, "collected object changed (before a store)");
    void **slot = (void **)(gptr(o) + 8 * o->slot_word[s]);
    FUZZ_STORE(slot, t < 0 ? NULL : (void *)(go[t].px ^ MASK));
    o->target[s] = (int16_t)t;
    g_reach();
    if (t >= 0) g_check(&go[t], "collected object changed (store target)");
}

/* Overwrite a root slot with another root's object, or NULL. */
static void op_root_set(void) {
    unsigned a = take8() % NARRAYS, r = take8() % ROOTS_PER, from = take8();
    if (!root_reg[a]) return;
    int i = -1;
    unsigned fa = from % NARRAYS, fr = (from >> 2) % ROOTS_PER;
    if (from & 0x80 && root_reg[fa]) i = root_idx[fa][fr];
    FUZZ_STORE(&root_arr[a][r], i < 0 ? NULL : (void *)(go[i].px ^ MASK));
    root_idx[a][r] = (int16_t)i;
    g_reach();
}

static void op_add_roots(void) {
    unsigned a = take8() % NARRAYS;
    if (root_reg[a]) return;
    /* Its slots hold stale pointers from before it was removed: clear them first. */
    for (int r = 0; r < ROOTS_PER; r++) { root_arr[a][r] = NULL; root_idx[a][r] = -1; }
    cgc_add_roots(root_arr[a], ROOTS_PER * sizeof(void *));
    root_reg[a] = true;
}

static void op_remove_roots(void) {
    unsigned a = take8() % NARRAYS;
    if (!root_reg[a]) return;
    cgc_remove_roots(root_arr[a]);
    root_reg[a] = false;
    g_reach();
}

static void check_all(const char *when) {
    for (int i = 0; i < NMALLOC; i++)
        if (mb[i].px) m_check(&mb[i], when);
    for (int i = 0; i < NOBJ; i++)
        if (go[i].px) g_check(&go[i], when);
}

static void op_collect(int *collects) {
    if ((*collects)++ >= MAX_COLLECTS) return;
    cgc_collect();
    const char *err = gc_heap_check();
    if (err) fail(err, NULL, 0);
    check_all("block changed across a collection");
}

/* ---- the target ---------------------------------------------------------------------------- */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* Only the root arrays are roots (not libFuzzer's tables, not our model), and clobbering
     * makes a wrongly reclaimed object visible at once. */
    setenv("CGC_ROOTS", "explicit", 1);
    setenv("CGC_CLOBBER", "1", 1);
    setenv("CGC_ON_ERROR", "abort", 1);
    alloc_read_options();
    cgc_thread_register();
    for (int a = 0; a < NARRAYS; a++) {
        root_arr[a] = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (root_arr[a] == MAP_FAILED) abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    in_p = data;
    in_n = size;
    int collects = 0;
    for (int a = 0; a < NARRAYS; a++) { /* start: arrays 0 and 1 registered, all empty */
        if (root_reg[a]) cgc_remove_roots(root_arr[a]);
        root_reg[a] = false;
        memset(root_arr[a], 0, ROOTS_PER * sizeof(void *));
        for (int r = 0; r < ROOTS_PER; r++) root_idx[a][r] = -1;
    }
    memset(go, 0, sizeof go);
    for (int a = 0; a < 2; a++) {
        cgc_add_roots(root_arr[a], ROOTS_PER * sizeof(void *));
        root_reg[a] = true;
    }
    while (in_n > 0) {
#ifdef FUZZ_MALLOC_ONLY
        unsigned op = take8() % 8;
#else
        unsigned op = take8() % 16;
#endif
        switch (op) {
        case 0: case 1: op_malloc(0); break;
        case 2: op_malloc(1); break;
        case 3: op_malloc(2); break;
        case 4: op_realloc(); break;
        case 5: case 6: op_free(); break;
        case 7: op_usable(); break;
        case 8: op_gc_alloc(K_SCAN); break;
        case 9: op_gc_alloc(take8() & 1 ? K_LEAF : K_SCAN); break;
        case 10: op_gc_alloc(take8() & 1 ? K_TYPED : K_ARRAY); break;
        case 11: op_store(); break;
        case 12: op_root_set(); break;
        case 13: op_add_roots(); break;
        case 14: op_remove_roots(); break;
        default: op_collect(&collects); break;
        }
        const char *err = alloc_heap_check();
        if (err) fail(err, NULL, 0);
    }
    check_all("block changed (end of input)");
    for (int i = 0; i < NMALLOC; i++) m_free(&mb[i]);
    for (int a = 0; a < NARRAYS; a++) {
        if (root_reg[a]) cgc_remove_roots(root_arr[a]);
        root_reg[a] = false;
        memset(root_arr[a], 0, ROOTS_PER * sizeof(void *));
    }
    memset(go, 0, sizeof go);
    cgc_stats st;
    cgc_get_stats(&st);
    if (st.errors) fail("cgc reported a double or invalid free", NULL, (size_t)st.errors);
    return 0;
}
