/* gc_stress.c — multi-threaded torture driver for the collected heap (see README.md).
 *
 * Each mutator thread owns a random graph of nodes and keeps mutating it while collections
 * run (forced by cgc_collect at random, and by the pacer). Nodes are held in every kind of
 * root the collector must find: locals on the stack (also only as interior pointers, deep
 * in a recursion), a malloc'd array registered with cgc_add_roots (re-registered now and
 * then), fields of other nodes (conservative objects), pointer words of typed objects and
 * typed arrays, and a global exchange array (module bss, CGC_ROOTS=auto) through which
 * packets of fresh nodes move between threads with atomic_exchange — that exchange is
 * also the ownership hand-over: a node is touched by one thread at a time. Short-lived
 * helper threads add packets too, so objects outlive the thread that allocated them.
 *
 * A node's checksum covers every field the mutator sets, so a node that was collected
 * while reachable (then clobbered with CGC_CLOBBER=1, or reused) fails the verification
 * walk with a message naming the node and field. Finalizers and weak handles are checked
 * for their promises: a finalizer runs at most once and never for a reachable node; a weak
 * handle whose target is strongly held never reads NULL, and never comes back after NULL.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cgc.h"

#define NODE_MAGIC 0x4e4f44456e6f6465ull
#define TOBJ_MAGIC 0x54594f424a656374ull
#define CLOBBER 0xdeadbeefdeadbeefull
#define PACKET_OWNER 0xfffful /* owner of a node in flight between threads */
#define NSLOT 256            /* registered root slots per thread */
#define NLOCAL 16            /* stack slots per thread */
#define NWEAK 32             /* weak handle / strong reference pairs per thread */
#define NEXCH 64             /* global exchange slots */
#define FIN_MAX (1u << 22)   /* finalizer tickets (a bitmap detects a second run) */

typedef struct node node;
typedef struct tobj { /* typed: only words 1 and 6 are pointers */
    uint64_t magic;
    node *a;
    uint64_t seed, data[3];
    node *b;
} tobj;
static const uint64_t tobj_map[1] = {(1u << 1) | (1u << 6)};
static const cgc_type tobj_type = {sizeof(tobj), 7, tobj_map, "stress_tobj"};
typedef struct elem { /* typed array element: word 1 is a pointer, tag its node's id */
    uint64_t tag;
    node *p;
} elem;
static const uint64_t elem_map[1] = {1u << 1};
static const cgc_type elem_type = {sizeof(elem), 2, elem_map, "stress_elem"};

struct node {
    uint64_t magic, id, owner, sum;
    uint64_t visit;     /* last walk that reached it (not in the sum) */
    uint32_t nkids, fin; /* fin: finalizer ticket, 0 = none */
    uint64_t *leaf;     /* cgc_alloc_leaf buffer holding pattern(id, i) */
    size_t leafwords;
    tobj *t;
    elem *arr;          /* cgc_alloc_array(&elem_type, narr) */
    size_t narr;
    node *kids[];
};

typedef struct roots { /* malloc'd, registered with cgc_add_roots */
    node *slot[NSLOT];
    cgc_weak *weak[NWEAK];
    node *strong[NWEAK]; /* NULL: the weak target was let go */
} roots;

typedef struct ctx {
    unsigned idx;
    uint64_t rng, serial, ops, allocs;
    roots *r;
    node **locals;              /* the thread's stack array */
    uint64_t weak_id[NWEAK];    /* expected id of each weak target (not a pointer) */
    int weak_dead[NWEAK];       /* the handle read NULL once */
    node **stk;                 /* walk stack: malloc'd, but everything on it is reachable */
    size_t nstk, capstk;
} ctx;

static struct { uint64_t threads, cycles, seconds, nodes, seed, root_churn; } cfg = {8, 2000, 600, 3000, 1, 1};
static const struct { int opt; const char *env; uint64_t *v; } opts[] = { /* an option wins over its variable */
    {'t', "GC_STRESS_THREADS", &cfg.threads}, {'c', "GC_STRESS_CYCLES", &cfg.cycles},
    {'s', "GC_STRESS_SECONDS", &cfg.seconds}, {'n', "GC_STRESS_NODES", &cfg.nodes},
    {'S', "GC_STRESS_SEED", &cfg.seed}, {0, "GC_STRESS_ROOT_CHURN", &cfg.root_churn}, /* 0: never re-register */
};
static node *_Atomic g_exch[NEXCH]; /* bss: a root in CGC_ROOTS=auto mode */
static _Atomic int g_stop;
static _Atomic uint64_t g_pass, g_allocs, g_fin_set, g_fin_ran, g_weak_checks, g_weak_cleared;
static _Atomic uint64_t *g_ops; /* per-thread progress, for the watchdog */
static _Atomic uint64_t *fin_done; /* bitmap over tickets */

__attribute__((format(printf, 3, 4), noreturn)) static void fail(const ctx *c, const void *obj, const char *fmt, ...) {
    cgc_stats st;
    cgc_blocking_enter(); /* no stop can catch us in cgc_get_stats's locks */
    cgc_get_stats(&st);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gc_stress: FAIL (thread %d, op %" PRIu64 ", gc_cycles %" PRIu64 ", object %p): ",
            c ? (int)c->idx : -1, c ? c->ops : 0, st.gc_cycles, obj);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    abort(); /* stop here under gdb; a core otherwise */
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}
static uint64_t rnd(ctx *c) { c->rng ^= c->rng << 13; c->rng ^= c->rng >> 7; c->rng ^= c->rng << 17; return c->rng; }
static unsigned below(ctx *c, unsigned n) { return (unsigned)(rnd(c) % n); }
static uint64_t pattern(uint64_t id, size_t i) { uint64_t v = mix(id * 31 + i); return v == CLOBBER ? v ^ 1 : v; }

static uint64_t node_sum(const node *n) {
    uint64_t h = mix(n->id ^ 0x243f6a8885a308d3ull);
    h = mix(h ^ n->owner) + ((uint64_t)n->nkids << 32 | n->fin);
    h = mix(h ^ (uintptr_t)n->leaf) + n->leafwords;
    h = mix(h ^ (uintptr_t)n->t) + (uintptr_t)n->arr;
    h = mix(h ^ n->narr);
    for (uint32_t i = 0; i < n->nkids; i++) h = mix(h ^ (uintptr_t)n->kids[i]) + i;
    return h;
}

static void check_zero(ctx *c, const void *p, size_t bytes, const char *what) {
    const uint64_t *w = p;
    for (size_t i = 0; i < bytes / 8; i++)
        if (w[i]) fail(c, p, "fresh %s (%zu bytes) is not zeroed: word %zu = %#" PRIx64, what, bytes, i, w[i]);
}

/* ---- finalizers ------------------------------------------------------------------------ */
static void finalize(void *obj, void *arg) {
    node *n = obj;
    uint32_t ticket = (uint32_t)(uintptr_t)arg;
    if (n->magic != NODE_MAGIC)
        fail(NULL, n, "finalizer %u got a dead node: magic %#" PRIx64 "%s", ticket, n->magic,
             n->magic == CLOBBER ? " (CLOBBER: collected before its finalizer ran)" : "");
    if (n->fin != ticket) /* a live node may be changing under us: read nothing else */
        fail(NULL, n, "finalizer %u ran on node %#" PRIx64 " (finalizer ticket %u): its object was "
             "collected and the slot reused", ticket, n->id, n->fin);
    if (n->nkids > 20000 || n->sum != node_sum(n))
        fail(NULL, n, "finalizer %u: node %#" PRIx64 " fails its checksum", ticket, n->id);
    uint64_t bit = 1ull << (ticket & 63);
    if (atomic_fetch_or(&fin_done[ticket >> 6], bit) & bit)
        fail(NULL, n, "finalizer %u ran twice", ticket);
    atomic_fetch_add(&g_fin_ran, 1);
}

/* ---- building --------------------------------------------------------------------------- */
static node *alloc_node(ctx *c, uint32_t nkids, uint64_t owner) {
    size_t bytes = sizeof(node) + nkids * sizeof(node *);
    node *n = cgc_alloc(bytes);
    if (!n) fail(c, NULL, "cgc_alloc(%zu) returned NULL", bytes);
    check_zero(c, n, bytes, "node");
    n->magic = NODE_MAGIC;
    n->id = ((uint64_t)(c->idx + 1) << 40) | ++c->serial;
    n->owner = owner;
    n->nkids = nkids;
    c->allocs++;
    return n;
}

static node *pick(ctx *c); /* a random node reachable from our roots, or NULL */

/* A node with random extras: a leaf buffer, a typed object whose pointer words are the only
 * references to two fresh nodes, a typed array, a finalizer (depth < 3: extras nest at most
 * twice). With owner == PACKET_OWNER everything it reaches is fresh (it will be handed to
 * another thread). */
static node *new_node(ctx *c, uint64_t owner, int depth) {
    uint32_t nk = below(c, 9); /* rarely a large object: > 32 KiB, or > 128 KiB (scanned in chunks) */
    if (below(c, 2000) == 0) nk = below(c, 4) ? 4100 + below(c, 500) : 16500 + below(c, 2000);
    node *n = alloc_node(c, nk, owner);
    unsigned r = below(c, 100);
    if (r < 50) {
        size_t w = below(c, 1000) == 0 ? 4500 + below(c, 30000) : 1 + below(c, 64);
        uint64_t *leaf = cgc_alloc_leaf(w * 8);
        if (!leaf) fail(c, NULL, "cgc_alloc_leaf(%zu) returned NULL", w * 8);
        check_zero(c, leaf, w * 8, "leaf buffer");
        for (size_t i = 0; i < w; i++) leaf[i] = pattern(n->id, i);
        CGC_STORE(n->leaf, leaf), n->leafwords = w;
        c->allocs++;
    }
    if (depth < 2 && below(c, 100) < 25) {
        tobj *t = cgc_alloc_typed(&tobj_type);
        if (!t) fail(c, NULL, "cgc_alloc_typed returned NULL");
        check_zero(c, t, sizeof *t, "typed object");
        t->magic = TOBJ_MAGIC;
        t->seed = n->id;
        for (int i = 0; i < 3; i++) t->data[i] = pattern(n->id, 1000 + (size_t)i);
        CGC_STORE(n->t, t); /* before the sub-nodes: t must be reachable while they are allocated */
        c->allocs++;
        CGC_STORE(t->a, new_node(c, owner, depth + 1));
        if (below(c, 2)) CGC_STORE(t->b, new_node(c, owner, depth + 1));
    }
    if (depth < 2 && below(c, 100) < 10) {
        size_t cnt = below(c, 300) ? 1 + below(c, 40) : 3000 + below(c, 9000); /* up to 192 KiB */
        elem *arr = cgc_alloc_array(&elem_type, cnt);
        if (!arr) fail(c, NULL, "cgc_alloc_array(%zu) returned NULL", cnt);
        check_zero(c, arr, cnt * sizeof *arr, "typed array");
        CGC_STORE(n->arr, arr), n->narr = cnt;
        c->allocs++;
        for (size_t i = 0; i < cnt; i++) {
            node *p = below(c, 3) == 0 ? NULL
                    : owner != PACKET_OWNER && below(c, 2) ? pick(c)
                    : cnt <= 40 || i % 256 == 0 ? new_node(c, owner, depth + 1) : NULL;
            CGC_STORE(arr[i].p, p);
            arr[i].tag = p ? p->id : 0;
        }
    }
    if (depth < 3 && below(c, 100) < 8) {
        uint64_t ticket = atomic_fetch_add(&g_fin_set, 1) + 1;
        if (ticket < FIN_MAX) {
            n->fin = (uint32_t)ticket;
            cgc_set_finalizer(n, finalize, (void *)(uintptr_t)ticket);
        }
    }
    n->sum = node_sum(n);
    return n;
}

/* ---- walking and verifying --------------------------------------------------------------- */
static void push(ctx *c, node *n, uint64_t pass) {
    if (!n || n->visit == pass) return;
    n->visit = pass;
    if (c->nstk == c->capstk) {
        c->capstk = c->capstk ? c->capstk * 2 : 4096;
        c->stk = realloc(c->stk, c->capstk * sizeof *c->stk);
        if (!c->stk) fail(c, NULL, "out of memory for the walk stack");
    }
    c->stk[c->nstk++] = n;
}

/* Everything one node promises. Reached through `from` (for the message). */
static void check_node(ctx *c, const node *n, uint64_t owner, const char *from) {
    if (n->magic != NODE_MAGIC)
        fail(c, n, "reachable node (via %s) has magic %#" PRIx64 "%s", from, n->magic,
             n->magic == CLOBBER ? " = CLOBBER: it was collected while reachable" : "");
    if (n->owner != owner)
        fail(c, n, "node %#" PRIx64 " (via %s) has owner %#" PRIx64 ", expected %#" PRIx64
             " (slot reused by another thread?)", n->id, from, n->owner, owner);
    for (size_t i = 0; i < sizeof(node) / 8 + n->nkids; i++)
        if (((const uint64_t *)n)[i] == CLOBBER)
            fail(c, n, "node %#" PRIx64 " word %zu holds the clobber pattern", n->id, i);
    if (n->sum != node_sum(n)) fail(c, n, "node %#" PRIx64 " (via %s): checksum mismatch", n->id, from);
    if (n->fin && (atomic_load(&fin_done[n->fin >> 6]) >> (n->fin & 63) & 1))
        fail(c, n, "node %#" PRIx64 " is reachable but its finalizer %u has run", n->id, n->fin);
    for (size_t i = 0; i < n->leafwords; i++)
        if (n->leaf[i] != pattern(n->id, i))
            fail(c, n->leaf, "leaf buffer of node %#" PRIx64 " (%zu words): word %zu = %#" PRIx64
                 ", expected %#" PRIx64 "%s", n->id, n->leafwords, i, n->leaf[i], pattern(n->id, i),
                 n->leaf[i] == CLOBBER ? " (CLOBBER: collected while reachable)" : "");
    if (n->t) {
        const tobj *t = n->t;
        for (int i = 0; i < 3; i++)
            if (t->magic != TOBJ_MAGIC || t->seed != n->id || t->data[i] != pattern(n->id, 1000 + (size_t)i))
                fail(c, t, "typed object of node %#" PRIx64 ": magic %#" PRIx64 " seed %#" PRIx64
                     " data[%d] %#" PRIx64, n->id, t->magic, t->seed, i, t->data[i]);
    }
    for (size_t i = 0; i < n->narr; i++)
        if (n->arr[i].tag != (n->arr[i].p ? n->arr[i].p->id : 0))
            fail(c, n->arr, "typed array of node %#" PRIx64 ": element %zu tag %#" PRIx64 " but points to %p",
                 n->id, i, n->arr[i].tag, (void *)n->arr[i].p);
}

/* Walk everything reachable from `start` (or from all our roots if NULL); check every node;
 * with setowner, hand the nodes to us (a received packet). Returns the node count. */
static size_t walk(ctx *c, node *start, uint64_t owner, int setowner) {
    uint64_t pass = atomic_fetch_add(&g_pass, 1) + 1; /* global: packets come from other threads */
    c->nstk = 0;
    if (start) push(c, start, pass);
    else {
        for (int i = 0; i < NSLOT; i++) push(c, c->r->slot[i], pass);
        for (int i = 0; i < NLOCAL; i++) push(c, c->locals[i], pass);
        for (int i = 0; i < NWEAK; i++) push(c, c->r->strong[i], pass);
    }
    size_t count = 0;
    while (c->nstk) {
        node *n = c->stk[--c->nstk];
        check_node(c, n, owner, start ? "packet" : "roots");
        count++;
        if (setowner) n->owner = (uint64_t)c->idx + 1, n->sum = node_sum(n);
        for (uint32_t i = 0; i < n->nkids; i++) push(c, n->kids[i], pass);
        if (n->t) push(c, n->t->a, pass), push(c, n->t->b, pass);
        for (size_t i = 0; i < n->narr; i++) push(c, n->arr[i].p, pass);
    }
    return count;
}

static void check_weak(ctx *c) {
    for (int i = 0; i < NWEAK; i++) {
        if (!c->r->weak[i]) continue;
        node *p = cgc_weak_get(c->r->weak[i]);
        atomic_fetch_add_explicit(&g_weak_checks, 1, memory_order_relaxed);
        if (c->r->strong[i] && p != c->r->strong[i])
            fail(c, c->r->strong[i], "weak handle %d reads %p while its target is strongly held", i, (void *)p);
        if (p && c->weak_dead[i]) fail(c, p, "weak handle %d read NULL, then %p", i, (void *)p);
        if (p && (p->magic != NODE_MAGIC || p->id != c->weak_id[i]))
            fail(c, p, "weak handle %d: target magic %#" PRIx64 " id %#" PRIx64 ", expected id %#" PRIx64,
                 i, p->magic, p->id, c->weak_id[i]);
        if (!p && !c->weak_dead[i]) c->weak_dead[i] = 1, atomic_fetch_add(&g_weak_cleared, 1);
    }
}

/* ---- mutation --------------------------------------------------------------------------- */
static node *pick(ctx *c) {
    node *n = below(c, 4) ? c->r->slot[below(c, NSLOT)] : c->locals[below(c, NLOCAL)];
    for (int steps = (int)below(c, 4); n && n->nkids && steps > 0; steps--) {
        node *k = n->kids[below(c, n->nkids)];
        if (!k) break;
        n = k;
    }
    return n;
}

static void set_kid(node *n, uint32_t i, node *k) { CGC_STORE(n->kids[i], k), n->sum = node_sum(n); }

/* Place a node somewhere: a stack slot, a registered slot, or a child of a reachable node. */
static void place(ctx *c, node *n) {
    unsigned r = below(c, 10);
    node *parent;
    if (r < 4) c->locals[below(c, NLOCAL)] = n;
    else if (r < 7 || !(parent = pick(c)) || !parent->nkids) CGC_STORE(c->r->slot[below(c, NSLOT)], n);
    else set_kid(parent, below(c, parent->nkids), n);
}

/* Hold one node only as an interior pointer in this frame, recurse, collect at the bottom,
 * and check it on the way back: the conservative stack scan must keep every level alive. */
__attribute__((noinline)) static void deep_hold(ctx *c, int depth) {
    node *n = new_node(c, (uint64_t)c->idx + 1, 0);
    uint64_t id = n->id;
    char *volatile inner = (char *)n + offsetof(node, sum) + 3; /* not the object's start */
    n = NULL;
    if (depth > 0) deep_hold(c, depth - 1);
    else {
        for (int i = 0; i < 200; i++) (void)new_node(c, (uint64_t)c->idx + 1, 2); /* garbage */
        if (below(c, 2)) cgc_collect();
    }
    n = (node *)(inner - offsetof(node, sum) - 3);
    if (n->id != id) fail(c, n, "node held by an interior stack pointer: id %#" PRIx64 ", expected %#" PRIx64, n->id, id);
    check_node(c, n, (uint64_t)c->idx + 1, "interior stack pointer");
    if (below(c, 4) == 0) place(c, n);
}

static void exchange(ctx *c) {
    node *pk = new_node(c, PACKET_OWNER, 0);
    for (int i = (int)below(c, 6); i > 0; i--) {
        node *m = new_node(c, PACKET_OWNER, 0);
        if (pk->nkids) set_kid(pk, below(c, pk->nkids), m);
    }
    node *got = atomic_exchange(&g_exch[below(c, NEXCH)], pk);
    pk = NULL; /* another thread owns it now */
    if (got) {
        walk(c, got, PACKET_OWNER, 1);
        place(c, got);
    }
}

static void churn_roots(ctx *c) { /* a new registered array: added before the old one goes */
    roots *nr = malloc(sizeof *nr);
    if (!nr) fail(c, NULL, "out of memory");
    memcpy(nr, c->r, sizeof *nr);
    cgc_add_roots(nr, sizeof *nr);
    roots *old = c->r;
    c->r = nr;
    cgc_remove_roots(old);
    memset(old, 0, sizeof *old);
    free(old);
}

/* A short-lived thread allocates a packet into an empty exchange slot and exits (every other
 * one without cgc_thread_unregister: the exit destructor does it), so objects outlive the
 * thread and the thread cache that allocated them. */
static void *helper(void *arg) {
    ctx hc = {.idx = 128 + (unsigned)(uintptr_t)arg % 128};
    hc.rng = mix((uintptr_t)arg) | 1;
    if (cgc_thread_register() != 0) fail(&hc, NULL, "cgc_thread_register failed (helper)");
    node *pk = new_node(&hc, PACKET_OWNER, 0), *expect = NULL;
    for (int i = 0; i < NEXCH && !atomic_compare_exchange_strong(&g_exch[i], &expect, pk); i++) expect = NULL;
    atomic_fetch_add(&g_allocs, hc.allocs);
    if ((uintptr_t)arg % 2) cgc_thread_unregister();
    return NULL;
}

static void spawn_helper(ctx *c) {
    pthread_t t;
    if (pthread_create(&t, NULL, helper, (void *)(uintptr_t)rnd(c)) != 0) fail(c, NULL, "pthread_create");
    cgc_blocking_enter(); /* joining blocks */
    pthread_join(t, NULL);
    cgc_blocking_leave();
}

static void weak_op(ctx *c) {
    int i = (int)below(c, NWEAK);
    roots *r = c->r;
    if (!r->weak[i] || (c->weak_dead[i] && below(c, 2))) {
        /* depth 3: no typed extras, no finalizer, and nothing ever links to or from it (pick()
         * does not reach strong[]): no finalizable node reaches a weak target, so taking one
         * back from its handle never revives a node whose finalizer ran. */
        node *t = new_node(c, (uint64_t)c->idx + 1, 3);
        CGC_STORE(r->strong[i], t);
        c->weak_id[i] = t->id, c->weak_dead[i] = 0;
        CGC_STORE(r->weak[i], cgc_weak_new(t));
        if (!r->weak[i]) fail(c, t, "cgc_weak_new returned NULL");
        c->allocs++;
    } else if (r->strong[i]) {
        CGC_STORE(r->strong[i], NULL); /* let it go: the handle may clear from now on */
    } else if (below(c, 3) == 0) {
        node *p = cgc_weak_get(r->weak[i]); /* still there: take it back */
        if (p) check_node(c, p, (uint64_t)c->idx + 1, "weak handle"), CGC_STORE(r->strong[i], p);
    }
}

static void *mutator(void *arg) {
    node *locals[NLOCAL] = {0};
    ctx c = {.idx = (unsigned)(uintptr_t)arg, .locals = locals};
    c.rng = mix(cfg.seed * 1000003 + c.idx) | 1;
    if (cgc_thread_register() != 0) fail(&c, NULL, "cgc_thread_register failed");
    c.r = calloc(1, sizeof *c.r);
    if (!c.r) fail(&c, NULL, "out of memory");
    cgc_add_roots(c.r, sizeof *c.r);
    uint64_t me = (uint64_t)c.idx + 1;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        c.ops++;
        atomic_store_explicit(&g_ops[c.idx], c.ops, memory_order_relaxed);
        unsigned r = below(&c, 1000);
        if (r < 350) place(&c, new_node(&c, me, 0));
        else if (r < 500) { /* link two reachable nodes: sharing and cycles */
            node *a = pick(&c), *b = pick(&c);
            if (a && a->nkids) set_kid(a, below(&c, a->nkids), b);
            else if (a && a->narr && b) {
                size_t j = below(&c, (unsigned)a->narr);
                CGC_STORE(a->arr[j].p, b), a->arr[j].tag = b->id;
            }
        } else if (r < 600) {
            node *a = pick(&c);
            if (a && a->nkids) set_kid(a, below(&c, a->nkids), NULL);
        } else if (r < 700) { /* move between stack, registered slots and fields */
            int from = (int)below(&c, NSLOT);
            node *x = c.r->slot[from];
            CGC_STORE(c.r->slot[from], NULL);
            if (x) place(&c, x);
        } else if (r < 760) c.locals[below(&c, NLOCAL)] = NULL;
        else if (r < 820) CGC_STORE(c.r->slot[below(&c, NSLOT)], NULL);
        else if (r < 860) exchange(&c);
        else if (r < 900) weak_op(&c);
        else if (r < 905) deep_hold(&c, (int)below(&c, 40));
        else if (r < 906 && cfg.root_churn && below(&c, 4) == 0) churn_roots(&c);
        else if (r < 907 && below(&c, 2) == 0) spawn_helper(&c);
        else if (r < 1000) for (int i = 0; i < 8; i++) (void)new_node(&c, me, 1); /* garbage */
        if (below(&c, 1500) == 0) cgc_collect();
        if (below(&c, 3000) == 0) cgc_run_finalizers(); /* races the finalizer thread */
        if (c.ops % 500 == 0) {
            size_t n = walk(&c, NULL, me, 0);
            check_weak(&c);
            for (int round = 0; n > cfg.nodes && round < 2; round++) { /* keep the graph bounded */
                for (int i = 0; i < NSLOT; i++) if (below(&c, 2)) CGC_STORE(c.r->slot[i], NULL);
                for (int i = 0; i < NLOCAL; i++) if (below(&c, 2)) c.locals[i] = NULL;
            }
            atomic_fetch_add_explicit(&g_allocs, c.allocs, memory_order_relaxed);
            c.allocs = 0;
        }
    }
    walk(&c, NULL, me, 0);
    check_weak(&c);
    atomic_fetch_add(&g_allocs, c.allocs);
    cgc_remove_roots(c.r);
    free(c.r);
    free(c.stk);
    if (c.idx % 2) cgc_thread_unregister(); /* the others: the thread-exit destructor */
    return NULL;
}

/* ---- main ------------------------------------------------------------------------------------- */
static double now_s(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9; }

static void sleep_blocking(double s) { /* blocking region: a cycle need not signal us */
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    cgc_blocking_enter();
    nanosleep(&ts, NULL);
    cgc_blocking_leave();
}

static uint64_t sum_ops(void) {
    uint64_t sum = 0;
    for (unsigned i = 0; i < cfg.threads; i++) sum += atomic_load(&g_ops[i]);
    return sum;
}

/* Decides when to stop, reports progress, and is the watchdog: it is not registered, so a
 * stop never holds it up, and if a collection hangs (main included, held in its blocking
 * region) it sees that nothing moves for 30 s and aborts, leaving a core. */
static void *monitor(void *arg) {
    double t0 = *(double *)arg, last_report = t0;
    uint64_t last = 0;
    for (int still = 0;; usleep(20000)) {
        cgc_stats st;
        cgc_get_stats(&st);
        double t = now_s();
        if (!g_stop && (st.gc_cycles >= cfg.cycles || t - t0 >= (double)cfg.seconds))
            atomic_store(&g_stop, st.gc_cycles >= cfg.cycles ? 1 : 2);
        uint64_t now = sum_ops() + st.gc_cycles;
        still = now == last ? still + 1 : 0;
        last = now;
        if (still >= 1500) {
            fprintf(stderr, "gc_stress: FAIL: no progress for 30 s (gc_cycles %" PRIu64 ", ops", st.gc_cycles);
            for (unsigned i = 0; i < cfg.threads; i++) fprintf(stderr, " %" PRIu64, atomic_load(&g_ops[i]));
            fprintf(stderr, ")\n");
            abort();
        }
        if (t - last_report >= 10 && !g_stop) {
            printf("  %.0f s: %" PRIu64 " cycles, %" PRIu64 " ops\n", t - t0, st.gc_cycles, sum_ops());
            fflush(stdout);
            last_report = t;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if (getenv(opts[i].env) && *getenv(opts[i].env)) *opts[i].v = strtoull(getenv(opts[i].env), NULL, 0);
    for (int opt; (opt = getopt(argc, argv, "t:c:s:n:S:")) != -1;) {
        size_t i = 0;
        while (i < sizeof opts / sizeof *opts && opts[i].opt != opt) i++;
        if (i == sizeof opts / sizeof *opts) {
            fprintf(stderr, "usage: %s [-t threads] [-c cycles] [-s seconds] [-n nodes/thread] [-S seed]\n", argv[0]);
            return 2;
        }
        *opts[i].v = strtoull(optarg, NULL, 0);
    }
    if (cfg.threads < 1 || cfg.threads > 256) cfg.threads = 8;
    /* Explicitly: cgc_init() alone initialises only the allocator, and the collector registers
     * the thread that first touches the collected heap, which could be a mutator. */
    if (cgc_thread_register() != 0) return 2;
    const char *rootmode = getenv("CGC_ROOTS");
    if (rootmode && strcmp(rootmode, "explicit") == 0) cgc_add_roots(g_exch, sizeof g_exch);
    fin_done = calloc(FIN_MAX / 64, sizeof *fin_done);
    g_ops = calloc(cfg.threads, sizeof *g_ops);
    pthread_t *tids = calloc(cfg.threads + 1, sizeof *tids);
    if (!fin_done || !g_ops || !tids) return 2;
    printf("gc_stress: %" PRIu64 " threads, target %" PRIu64 " cycles or %" PRIu64 " s, %" PRIu64 " nodes/thread, seed %" PRIu64 "\n",
           cfg.threads, cfg.cycles, cfg.seconds, cfg.nodes, cfg.seed);
    fflush(stdout);
    double t0 = now_s();
    for (unsigned i = 0; i < cfg.threads; i++)
        if (pthread_create(&tids[i], NULL, mutator, (void *)(uintptr_t)i) != 0) return 2;
    if (pthread_create(&tids[cfg.threads], NULL, monitor, &t0) != 0) return 2;
    while (!atomic_load(&g_stop)) sleep_blocking(0.02);
    cgc_blocking_enter(); /* joining blocks: collections by the exiting threads go on */
    for (unsigned i = 0; i < cfg.threads; i++) pthread_join(tids[i], NULL);
    cgc_blocking_leave();
    double elapsed = now_s() - t0;
    /* Every graph is garbage now: collect, let the finalizer thread catch up. */
    for (int i = 0; i < 20 && atomic_load(&g_fin_ran) < atomic_load(&g_fin_set); i++) {
        cgc_collect();
        cgc_run_finalizers();
        sleep_blocking(0.01);
    }
    cgc_stats st;
    cgc_get_stats(&st);
    uint64_t fset = atomic_load(&g_fin_set), fran = atomic_load(&g_fin_ran);
    if (fset >= FIN_MAX) fset = FIN_MAX - 1;
    if (fset >= 1000 && fran == 0) fail(NULL, NULL, "%" PRIu64 " finalizers set, none ran", fset);
    printf("gc_stress: OK (%s): %" PRIu64 " cycles in %.1f s, %" PRIu64 " ops, %" PRIu64
           " objects allocated, %" PRIu64 " freed by the collector\n",
           atomic_load(&g_stop) == 1 ? "cycles reached" : "time limit", st.gc_cycles, elapsed, sum_ops(),
           atomic_load(&g_allocs), st.gc_freed_total);
    printf("gc_stress: pauses: max %.3f ms, mean %.3f ms; live after last cycle %.1f MiB\n",
           (double)st.gc_pause_max_ns / 1e6, st.gc_cycles ? (double)st.gc_pause_total_ns / 1e6 / (double)st.gc_cycles : 0.0,
           (double)st.gc_live_bytes / 1048576.0);
    printf("gc_stress: finalizers: %" PRIu64 " set, %" PRIu64 " ran (none twice, none while reachable); "
           "weak handles: %" PRIu64 " checks, %" PRIu64 " cleared\n", fset, fran,
           atomic_load(&g_weak_checks), atomic_load(&g_weak_cleared));
    return 0;
}
