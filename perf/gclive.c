/* gclive.c — a large live heap that mutator threads keep rewriting: the pause benchmark's
 * workload (perf/pause-compare), for cgc, the Boehm GC and malloc/free (perf/gcalloc.h picks
 * which).  perf/go/gclive.go is the same program in Go and prints the same stdout.
 *
 * What it models: a server's in-memory data (a cache, an index) that is large and mostly
 * long-lived, while the program keeps replacing parts of it.  A stop-the-world collector's
 * pauses grow with the live heap here; a concurrent one's should not.  Marking work per
 * cycle is the whole live heap, the allocation that paces cycles is the replacements.
 *
 * The heap: a "forest", one collected array of LIVE_MIB pointers, each to a complete binary
 * tree of height 14 (32767 nodes of 32 bytes: two pointer words, a value, a spare word:
 * 1 MiB of nodes per tree), so the live size is LIVE_MIB MiB of nodes.  Then THREADS
 * mutator threads (registered with the collector) each perform operations on the trees they
 * own (tree i belongs to thread i % THREADS, so the final heap does not depend on how the
 * threads interleave): pick a tree and a height h in 2..14 at random, walk a random path
 * down to a subtree of height h, check it (shape, node count), build a fresh subtree of
 * height h and store it in place of the old one (a pointer store into a live node, or into
 * the forest for h = 14), and drop the old one.  Each thread stops once it has allocated
 * ROUNDS x (its share of the live nodes), so the work is fixed.
 *
 * Node values come from a per-tree / per-thread splitmix64 sequence in pre-order, so the
 * final checksum (sum and count over every node) is the same for every variant and for the
 * Go program.  A subtree reclaimed while still reachable shows up as a shape error, a wrong
 * count or a wrong checksum.
 *
 * usage: gclive [live_mib=1024] [rounds=4] [threads=2]
 * stdout: one line, identical across variants.  stderr: times, then (last) the gcstats line.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "gcalloc.h"

#define HEIGHT 14 /* of each tree of the forest: 2^15 - 1 nodes */
#define MIN_HEIGHT 2
#define MAX_THREADS 16

typedef struct node {
    struct node *left, *right; /* the only pointer words (gcalloc.h's node type) */
    uint64_t val;
    uint64_t spare; /* pads the node to 32 bytes, like the Go program's */
} node;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static node *build(int h, uint64_t *seed)
{
    node *n = ga_node();
    n->val = splitmix(seed);
    n->spare = 0;
    if (h > 0) {
        GA_STORE(n->left, build(h - 1, seed));
        GA_STORE(n->right, build(h - 1, seed));
    } else {
        GA_STORE(n->left, (node *)NULL);
        GA_STORE(n->right, (node *)NULL);
    }
    return n;
}

/* Nodes of a complete tree of height h, or -1 if the shape is wrong; adds values to *sum. */
static long check(const node *n, int h, uint64_t *sum)
{
    if (!n) return -1;
    *sum += n->val;
    if (h == 0) return n->left || n->right ? -1 : 1;
    long l = check(n->left, h - 1, sum);
    long r = check(n->right, h - 1, sum);
    return l < 0 || r < 0 ? -1 : 1 + l + r;
}

static void drop(node *n)
{
#if GA_EXPLICIT_FREE
    if (!n) return;
    drop(n->left);
    drop(n->right);
    ga_free(n);
#else
    (void)n;
#endif
}

static long ntrees;
static node **forest; /* collected: ntrees pointers */
static long rounds;
static int nthreads;

typedef struct {
    int id;
    long ops, replaced_roots, errors;
    uint64_t allocated; /* nodes */
    uint64_t checked;   /* sum of the values of the subtrees replaced */
} mutator;

static const long tree_nodes = (1L << (HEIGHT + 1)) - 1;

static void *mutate(void *arg)
{
    mutator *m = arg;
    ga_thread_begin();
    uint64_t seed = 0x5EED0000ull + (uint64_t)m->id;
    long mine = (ntrees - m->id + nthreads - 1) / nthreads; /* trees i with i % nthreads == id */
    uint64_t budget = (uint64_t)rounds * (uint64_t)mine * (uint64_t)tree_nodes;
    while (mine > 0 && m->allocated < budget) {
        uint64_t r = splitmix(&seed);
        long i = m->id + nthreads * (long)(r % (uint64_t)mine);
        int h = MIN_HEIGHT + (int)((r >> 32) % (HEIGHT - MIN_HEIGHT + 1));
        uint64_t path = splitmix(&seed);
        uint64_t sub_seed = splitmix(&seed);
        node *parent = NULL; /* NULL: the subtree is the whole tree, held by forest[i] */
        int right = 0;
        node *old = forest[i];
        for (int d = HEIGHT; d > h; d--, path >>= 1) {
            parent = old;
            right = (int)(path & 1);
            old = right ? parent->right : parent->left;
        }
        long want = (1L << (h + 1)) - 1;
        if (check(old, h, &m->checked) != want && m->errors++ == 0)
            fprintf(stderr, "gclive: thread %d op %ld: subtree of height %d in tree %ld is "
                    "damaged\n", m->id, m->ops, h, i);
        node *fresh = build(h, &sub_seed);
        if (!parent) {
            GA_STORE(forest[i], fresh);
            m->replaced_roots++;
        } else if (right) {
            GA_STORE(parent->right, fresh);
        } else {
            GA_STORE(parent->left, fresh);
        }
        drop(old);
        m->allocated += (uint64_t)want;
        m->ops++;
    }
    ga_thread_end();
    return NULL;
}

int main(int argc, char **argv)
{
    long live_mib = argc > 1 ? atol(argv[1]) : 1024;
    rounds = argc > 2 ? atol(argv[2]) : 4;
    nthreads = argc > 3 ? atoi(argv[3]) : 2;
    if (live_mib < 1 || live_mib > (1L << 20) || rounds < 0 || nthreads < 1 ||
        nthreads > MAX_THREADS) {
        fprintf(stderr, "usage: gclive [live_mib=1024 (>= 1)] [rounds=4 (>= 0)] "
                "[threads=2 (1..%d)]\n", MAX_THREADS);
        return 2;
    }
    ntrees = live_mib; /* one MiB of nodes per tree */
    ga_init(sizeof(node));
    uint64_t t0 = ga_now_ns();

    forest = ga_ptrs((size_t)ntrees);
    for (long i = 0; i < ntrees; i++) {
        uint64_t seed = (uint64_t)i * 0x100000001B3ull;
        GA_STORE(forest[i], build(HEIGHT, &seed));
    }
    uint64_t t1 = ga_now_ns();

    mutator m[MAX_THREADS] = {{0}};
    pthread_t tid[MAX_THREADS];
    for (int t = 0; t < nthreads; t++) {
        m[t].id = t;
        if (pthread_create(&tid[t], NULL, mutate, &m[t]) != 0) {
            fprintf(stderr, "gclive: pthread_create failed\n");
            return 3;
        }
    }
    ga_block_begin(); /* the main thread waits without touching the heap */
    for (int t = 0; t < nthreads; t++) pthread_join(tid[t], NULL);
    ga_block_end();
    uint64_t t2 = ga_now_ns();

    uint64_t sum = 0, checked = 0, allocated = 0;
    long nodes = 0, ops = 0, roots = 0, errors = 0;
    for (int t = 0; t < nthreads; t++) {
        ops += m[t].ops;
        roots += m[t].replaced_roots;
        errors += m[t].errors;
        checked += m[t].checked;
        allocated += m[t].allocated;
    }
    for (long i = 0; i < ntrees; i++) {
        long c = check(forest[i], HEIGHT, &sum);
        if (c != tree_nodes) {
            if (errors++ == 0) fprintf(stderr, "gclive: tree %ld is damaged at the end\n", i);
        } else {
            nodes += c;
        }
    }
    printf("gclive live %ld MiB rounds %ld threads %d: %ld ops, %ld trees replaced, "
           "%llu nodes allocated, %ld nodes live, checksum %016llx %016llx, %ld errors\n",
           live_mib, rounds, nthreads, ops, roots, (unsigned long long)allocated, nodes,
           (unsigned long long)sum, (unsigned long long)checked, errors);
    fflush(stdout);
    fprintf(stderr, "gclive-%s live %ld MiB rounds %ld threads %d: build %.3f s, mutate "
            "%.3f s, total %.3f s\n", GA_NAME, live_mib, rounds, nthreads, (t1 - t0) / 1e9,
            (t2 - t1) / 1e9, (ga_now_ns() - t0) / 1e9);
    ga_report();
    return errors ? 1 : 0;
}
