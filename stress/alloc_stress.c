/* alloc_stress.c — multi-threaded allocator stress driver (see README.md).
 *
 * Every live block is described by a descriptor {pointer, size, key}. Descriptors are
 * owned by exactly one thread at a time: each thread has a row of local descriptor
 * indices and swaps indices with a shared slot array using atomic_exchange, which
 * hands the block (and the happens-before edge TSan needs) to whoever picks it up.
 * So blocks are freed and realloc'd by threads other than their allocator, and since
 * threads are re-created every round, by threads created after the allocator died.
 *
 * Built with -DSTRESS_CGC_API it calls cgc_* directly; otherwise plain malloc & co.,
 * so it can run under LD_PRELOAD (and against any other allocator). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgc.h"

#ifdef STRESS_CGC_API
#define X_MALLOC cgc_malloc
#define X_CALLOC cgc_calloc
#define X_REALLOC cgc_realloc
#define X_FREE cgc_free
#define X_POSIX_MEMALIGN cgc_posix_memalign
#define X_ALIGNED_ALLOC cgc_aligned_alloc
#define X_USABLE cgc_usable_size
#define API_NAME "cgc_*"
#else
#define X_MALLOC malloc
#define X_CALLOC calloc
#define X_REALLOC realloc
#define X_FREE free
#define X_POSIX_MEMALIGN posix_memalign
#define X_ALIGNED_ALLOC aligned_alloc
#define X_USABLE malloc_usable_size
#define API_NAME "malloc"
#endif

struct blk {
    unsigned char *p;
    size_t n;     /* requested size; the pattern covers exactly n bytes */
    uint64_t key; /* derived from address and serial: a stale or swapped block mismatches */
};

struct counts { uint64_t alloc, calloc, aligned, freed, realloc, xchg, bytes; };

/* Defaults: mimalloc's test-stress shape, 32 threads x scale 50 x 50 rounds; thread t does
 * 100 * scale * (1 + t % 8) operations per round (uneven, so threads finish at different
 * times), unless -o / STRESS_OPS fixes the count per thread. */
static struct {
    unsigned threads, rounds, nlocal, nshared, scale;
    unsigned long ops; /* 0: derived from scale */
    uint64_t seed;
} cfg = {32, 50, 256, 1024, 50, 0, 1};

static unsigned long ops_for(unsigned id) {
    return cfg.ops ? cfg.ops : 100ul * cfg.scale * (1 + id % 8);
}

static struct blk *desc;             /* threads*nlocal + nshared descriptors */
static uint32_t *local_idx;          /* row t: descriptor indices owned by thread t */
static _Atomic uint32_t *shared_idx; /* ownerless descriptors, exchanged atomically */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("alloc_stress: FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort(); /* core dump / debugger stop at the failing check */
}

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t mix(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27; x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* Mostly small (the size classes), some medium, rarely large (page heap / mmap). */
static size_t rand_size(uint64_t *s) {
    uint64_t r = rng_next(s), pick = r % 1000;
    r >>= 10;
    if (pick < 900) return (pick & 1) ? r % 128 + 1 : r % 1024 + 1;
    if (pick < 999) return r % (64 * 1024 - 1024) + 1025;
    return r % (1024 * 1024 - 64 * 1024) + 64 * 1024 + 1;
}

static inline uint64_t pat(uint64_t key, size_t word) { return key ^ (word * 0x9E3779B97F4A7C15ULL); }

static void fill(unsigned char *p, size_t n, uint64_t key) {
    size_t w = n / 8;
    for (size_t i = 0; i < w; i++) {
        uint64_t v = pat(key, i);
        memcpy(p + 8 * i, &v, 8);
    }
    if (n % 8) {
        uint64_t v = pat(key, w);
        memcpy(p + 8 * w, &v, n % 8);
    }
}

/* Verify the first n bytes of a block against key's pattern; die with details if not. */
static void check(const unsigned char *p, size_t n, uint64_t key, size_t blk_n, const char *what) {
    size_t w = n / 8, i = 0;
    for (; i < w; i++) {
        uint64_t v;
        memcpy(&v, p + 8 * i, 8);
        if (v != pat(key, i)) break;
    }
    for (size_t off = i * 8; off < n; off++) {
        uint64_t v = pat(key, off / 8);
        unsigned char want = (unsigned char)(v >> (8 * (off % 8)));
        if (p[off] != want)
            die("%s: block %p (size %zu) corrupt at offset %zu: byte 0x%02x, expected 0x%02x",
                what, (const void *)p, blk_n, off, p[off], want);
    }
}

static void check_align(const void *p, size_t n, size_t align, const char *what) {
    if (align == 0) align = n >= 16 ? 16 : n >= 8 ? 8 : 1; /* what malloc must guarantee */
    if ((uintptr_t)p & (align - 1)) die("%s(%zu) = %p is not %zu-aligned", what, n, p, align);
    size_t u = X_USABLE((void *)p);
    if (u < n) die("%s: usable size %zu of %p < requested %zu", what, u, p, n);
}

static void alloc_block(struct blk *b, uint64_t *rng, uint64_t serial, struct counts *c) {
    size_t n = rand_size(rng);
    uint64_t r = rng_next(rng);
    unsigned kind = r % 100;
    void *p = NULL;
    if (kind < 70) {
        p = X_MALLOC(n);
        if (!p) die("malloc(%zu) failed", n);
        check_align(p, n, 0, "malloc");
        c->alloc++;
    } else if (kind < 85) {
        size_t cnt = (r >> 8) % 4 + 1, sz = n / cnt + 1;
        n = cnt * sz;
        p = X_CALLOC(cnt, sz);
        if (!p) die("calloc(%zu, %zu) failed", cnt, sz);
        check_align(p, n, 0, "calloc");
        for (size_t i = 0; i < n; i++) /* freed blocks hold patterns, so reuse is caught */
            if (((unsigned char *)p)[i]) die("calloc(%zu, %zu) = %p: byte %zu is 0x%02x, not 0",
                                              cnt, sz, p, i, ((unsigned char *)p)[i]);
        c->calloc++;
    } else {
        unsigned shift = (r >> 8) % 50 == 0 ? 16 : 3 + (unsigned)((r >> 16) % 10); /* 8 .. 4096, rarely 64K */
        size_t align = (size_t)1 << shift;
        if (kind < 95) {
            int e = X_POSIX_MEMALIGN(&p, align, n);
            if (e || !p) die("posix_memalign(%zu, %zu) failed: %d", align, n, e);
        } else {
            n = (n + align - 1) & ~(align - 1); /* C11 aligned_alloc wants a multiple */
            p = X_ALIGNED_ALLOC(align, n);
            if (!p) die("aligned_alloc(%zu, %zu) failed", align, n);
        }
        check_align(p, n, align, "memalign");
        c->aligned++;
    }
    b->p = p;
    b->n = n;
    b->key = mix((uintptr_t)p ^ mix(serial));
    fill(b->p, n, b->key);
    c->bytes += n;
}

static void free_block(struct blk *b, struct counts *c) {
    check(b->p, b->n, b->key, b->n, "before free");
    X_FREE(b->p);
    b->p = NULL;
    c->freed++;
}

static void realloc_block(struct blk *b, uint64_t *rng, uint64_t serial, struct counts *c) {
    uint64_t r = rng_next(rng);
    size_t n;
    switch (r % 3) { /* grow (often in place), shrink, or jump to an unrelated size */
    case 0: n = b->n + b->n * ((r >> 4) % 4) / 2 + 1; break;
    case 1: n = b->n / ((r >> 4) % 4 + 2) + 1; break;
    default: n = rand_size(rng); break;
    }
    if (n > 2 * 1024 * 1024) n = 2 * 1024 * 1024;
    unsigned char *q = X_REALLOC(b->p, n);
    if (!q) die("realloc(%p, %zu) failed", (void *)b->p, n);
    check(q, n < b->n ? n : b->n, b->key, b->n, "after realloc (prefix not preserved)");
    check_align(q, n, 0, "realloc");
    b->p = q;
    b->n = n;
    b->key = mix((uintptr_t)q ^ mix(serial));
    fill(q, n, b->key);
    c->realloc++;
    c->bytes += n;
}

struct worker { pthread_t th; unsigned id, round; struct counts c; };

static void *worker_main(void *arg) {
    struct worker *w = arg;
    uint32_t *mine = &local_idx[(size_t)w->id * cfg.nlocal];
    uint64_t rng = mix(cfg.seed * 1000003 + w->round * 131 + w->id) | 1;
    uint64_t serial = ((uint64_t)w->round << 48) | ((uint64_t)w->id << 40);
    unsigned long nops = ops_for(w->id);
    for (unsigned long op = 0; op < nops; op++) {
        uint64_t r = rng_next(&rng);
        uint32_t *slot = &mine[r % cfg.nlocal];
        struct blk *b = &desc[*slot];
        unsigned act = (unsigned)((r >> 32) % 100);
        if (!b->p) {
            alloc_block(b, &rng, serial++, &w->c);
        } else if (act < 50) {
            free_block(b, &w->c);
        } else if (act < 65) {
            realloc_block(b, &rng, serial++, &w->c);
        } else if (act < 95) {
            /* Give this block away, take whatever another thread left there. */
            uint32_t got = atomic_exchange(&shared_idx[(r >> 16) % cfg.nshared], *slot);
            *slot = got;
            if (desc[got].p) check(desc[got].p, desc[got].n, desc[got].key, desc[got].n, "after exchange");
            w->c.xchg++;
        } else {
            check(b->p, b->n, b->key, b->n, "spot check");
        }
    }
    return NULL;
}

/* Behaviours the C library guarantees; cheap to check once. errno is only checked for
 * cgc (strict): some allocators (mimalloc 2.0) return NULL without setting it. */
static void edge_cases(int strict) {
    volatile size_t big = SIZE_MAX - 4096; /* volatile: keep gcc's size warnings quiet */
    errno = 0;
    void *huge = X_MALLOC(big);
    if (huge || (strict && errno != ENOMEM)) die("malloc(SIZE_MAX-4096) = %p errno %d (want NULL, ENOMEM)", huge, errno);
    errno = 0;
    huge = X_CALLOC(big / 2, 3);
    if (huge || (strict && errno != ENOMEM)) die("calloc overflow = %p errno %d (want NULL, ENOMEM)", huge, errno);
    void *p = NULL;
    if (X_POSIX_MEMALIGN(&p, 24, 10) != EINVAL) die("posix_memalign(24) did not fail with EINVAL");
    X_FREE(NULL);
    p = X_REALLOC(NULL, 100); /* realloc(NULL) is malloc */
    if (!p) die("realloc(NULL, 100) failed");
    check_align(p, 100, 0, "realloc(NULL)");
    X_FREE(p);
    p = X_MALLOC(0); /* may be NULL or unique; must be freeable */
    X_FREE(p);
}

typedef void (*stats_fn)(cgc_stats *);
typedef size_t (*release_fn)(void);

static unsigned long env_num(const char *name, unsigned long dflt) {
    const char *s = getenv(name);
    return s && *s ? strtoul(s, NULL, 0) : dflt;
}

int main(int argc, char **argv) {
    int require_cgc = 0, opt;
    cfg.threads = (unsigned)env_num("STRESS_THREADS", cfg.threads);
    cfg.rounds = (unsigned)env_num("STRESS_ROUNDS", cfg.rounds);
    cfg.ops = env_num("STRESS_OPS", cfg.ops);
    cfg.scale = (unsigned)env_num("STRESS_SCALE", cfg.scale);
    cfg.seed = env_num("STRESS_SEED", cfg.seed);
    while ((opt = getopt(argc, argv, "t:r:o:x:l:s:S:c")) != -1) {
        switch (opt) {
        case 't': cfg.threads = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'r': cfg.rounds = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'o': cfg.ops = strtoul(optarg, NULL, 0); break;
        case 'x': cfg.scale = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'l': cfg.nlocal = (unsigned)strtoul(optarg, NULL, 0); break;
        case 's': cfg.nshared = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'S': cfg.seed = strtoull(optarg, NULL, 0); break;
        case 'c': require_cgc = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t threads] [-r rounds] [-x scale] [-o ops/thread/round] [-l local slots/thread]\n"
                            "          [-s shared slots] [-S seed] [-c: require libcgc (preloaded)]\n", argv[0]);
            return 2;
        }
    }
    if (!cfg.threads || !cfg.nlocal || !cfg.nshared || (!cfg.ops && !cfg.scale))
        die("threads, -l, -s and the scale (or -o) must be > 0");

#ifdef STRESS_CGC_API
    stats_fn get_stats = cgc_get_stats;
    release_fn release = cgc_release_memory;
    (void)require_cgc; /* linked in: cgc is always the allocator */
#else /* under LD_PRELOAD the library's own entry points are visible */
    stats_fn get_stats = (stats_fn)dlsym(RTLD_DEFAULT, "cgc_get_stats");
    release_fn release = (release_fn)dlsym(RTLD_DEFAULT, "cgc_release_memory");
    if (require_cgc && !get_stats) die("-c given but cgc_get_stats is not loaded: libcgc.so not preloaded?");
#endif

    edge_cases(get_stats != NULL);

    /* Harness memory comes from the allocator under test too: more traffic, no harm. */
    size_t ndesc = (size_t)cfg.threads * cfg.nlocal + cfg.nshared;
    desc = X_CALLOC(ndesc, sizeof *desc);
    local_idx = X_MALLOC(sizeof *local_idx * cfg.threads * cfg.nlocal);
    shared_idx = X_MALLOC(sizeof *shared_idx * cfg.nshared);
    struct worker *ws = X_CALLOC(cfg.threads, sizeof *ws);
    if (!desc || !local_idx || !shared_idx || !ws) die("harness allocation failed");
    for (size_t i = 0; i < (size_t)cfg.threads * cfg.nlocal; i++) local_idx[i] = (uint32_t)i;
    for (size_t i = 0; i < cfg.nshared; i++)
        atomic_init(&shared_idx[i], (uint32_t)(cfg.threads * cfg.nlocal + i));

    struct counts total = {0};
    for (unsigned round = 0; round < cfg.rounds; round++) {
        for (unsigned t = 0; t < cfg.threads; t++) { /* fresh threads every round: churn */
            ws[t].id = t;
            ws[t].round = round;
            int e = pthread_create(&ws[t].th, NULL, worker_main, &ws[t]);
            if (e) die("pthread_create: %s", strerror(e));
        }
        if (release && round % 2) release(); /* concurrent with the workers' traffic */
        for (unsigned t = 0; t < cfg.threads; t++) {
            pthread_join(ws[t].th, NULL);
            struct counts *c = &ws[t].c;
            total.alloc += c->alloc; total.calloc += c->calloc; total.aligned += c->aligned;
            total.freed += c->freed; total.realloc += c->realloc; total.xchg += c->xchg;
            total.bytes += c->bytes;
            memset(c, 0, sizeof *c);
        }
    }

    struct counts last = {0};
    for (size_t i = 0; i < ndesc; i++) /* main thread frees what everyone left behind */
        if (desc[i].p) free_block(&desc[i], &last);
    X_FREE(ws);
    X_FREE(shared_idx);
    X_FREE(local_idx);
    X_FREE(desc);

    uint64_t nops = 0;
    for (unsigned t = 0; t < cfg.threads; t++) nops += ops_for(t);
    nops *= cfg.rounds;
    printf("alloc_stress: api=%s threads=%u rounds=%u scale=%u ops=%" PRIu64 " seed=%" PRIu64 ": malloc %" PRIu64
           " calloc %" PRIu64 " memalign %" PRIu64 " realloc %" PRIu64 " free %" PRIu64
           " exchange %" PRIu64 " (%" PRIu64 " MiB written)\n",
           API_NAME, cfg.threads, cfg.rounds, cfg.scale, nops, cfg.seed, total.alloc, total.calloc,
           total.aligned, total.realloc, total.freed + last.freed, total.xchg, total.bytes >> 20);
    if (get_stats) {
        cgc_stats st;
        memset(&st, 0, sizeof st);
        get_stats(&st);
        printf("alloc_stress: cgc stats: mallocs %" PRIu64 " frees %" PRIu64 " remote frees %" PRIu64
               " threads %" PRIu64 " errors %" PRIu64 "\n",
               st.malloc_count, st.free_count, st.remote_free_count, st.threads, st.errors);
        if (st.version != CGC_STATS_VERSION) die("cgc_stats version %u, expected %u", st.version, CGC_STATS_VERSION);
        if (st.errors) die("cgc reported %" PRIu64 " double/invalid frees", st.errors);
        if (st.malloc_count == 0) die("cgc counted no allocations: was it really used?");
    }
    /* One line for make stress's summary: every operation completed and checked. */
    printf("alloc_stress: ok: %" PRIu64 " operations, 0 corruptions\n", nops);
    return 0;
}
