/* binarytrees.c — the Computer Language Benchmarks Game's binary-trees, for cgc, the Boehm
 * GC and malloc/free (perf/gcalloc.h picks which), optionally with two threads.
 *
 * What it models: an allocation-bound program whose objects are tiny (two pointers) and
 * die young, beside one long-lived structure.  A "stretch" tree of depth max+1 is built,
 * checked and dropped; a long-lived tree of depth max is built; then for depth
 * d = 4, 6, ..., max, 2^(max - d + 4) trees of depth d are built bottom-up, checked (nodes
 * counted) and dropped — every depth allocates about the same number of nodes — and
 * finally the long-lived tree is checked.  The malloc variant frees each tree after its
 * check.
 *
 * With threads=2 the depths are shared between two worker threads (each takes the next
 * depth not yet taken; both registered with the collector) while the main thread, holding
 * the long-lived tree, waits; results are printed in depth order, so stdout is the same
 * for every variant and thread count: exactly the benchmarks game's output.
 *
 * usage: binarytrees [max_depth=20] [threads=1]
 * stderr: time, and last the gcstats line (see gcalloc.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "gcalloc.h"

#define MIN_DEPTH 4
#define MAX_THREADS 2

typedef struct node {
    struct node *left, *right; /* the only pointer words (gcalloc.h's node type) */
} node;

static node *bottom_up_tree(int depth)
{
    node *n = ga_node();
    if (depth > 0) {
        GA_STORE(n->left, bottom_up_tree(depth - 1));
        GA_STORE(n->right, bottom_up_tree(depth - 1));
    } else {
        GA_STORE(n->left, (node *)NULL);
        GA_STORE(n->right, (node *)NULL);
    }
    return n;
}

/* Number of nodes; an inner node with one child (a lost or overwritten pointer) is -1e6. */
static long check(const node *n)
{
    long c = 1;
    while (n->left) {
        if (!n->right) return -1000000;
        c += 1 + check(n->left);
        n = n->right;
    }
    if (n->right) return -1000000;
    return c;
}

static void drop(node *n)
{
#if GA_EXPLICIT_FREE
    while (n) {
        drop(n->left);
        node *next = n->right;
        ga_free(n);
        n = next;
    }
#else
    (void)n;
#endif
}

static long check_and_drop(node *t)
{
    long c = check(t);
    drop(t);
    return c;
}

static int max_depth;
static int ndepths;
static long results[32]; /* check sum per depth index */
static long iterations[32];
static int next_depth;   /* index of the next depth to take; atomic builtins */

/* Takes depths until none is left; arg != NULL: a thread of its own, to be registered. */
static void *worker(void *arg)
{
    int registered = arg != NULL;
    if (registered) ga_thread_begin();
    for (;;) {
        int k = __atomic_fetch_add(&next_depth, 1, __ATOMIC_RELAXED);
        if (k >= ndepths) break;
        int d = MIN_DEPTH + 2 * k;
        long iters = 1L << (max_depth - d + MIN_DEPTH);
        long sum = 0;
        for (long i = 0; i < iters; i++) sum += check_and_drop(bottom_up_tree(d));
        iterations[k] = iters;
        results[k] = sum;
    }
    if (registered) ga_thread_end();
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20;
    int nthreads = argc > 2 ? atoi(argv[2]) : 1;
    if (n < 0 || n > 28 || nthreads < 1 || nthreads > MAX_THREADS) {
        fprintf(stderr, "usage: binarytrees [max_depth=20 (0..28)] [threads=1 (1..%d)]\n",
                MAX_THREADS);
        return 2;
    }
    max_depth = n < MIN_DEPTH + 2 ? MIN_DEPTH + 2 : n;
    ndepths = (max_depth - MIN_DEPTH) / 2 + 1;
    ga_init(sizeof(node));
    uint64_t t0 = ga_now_ns();

    int stretch = max_depth + 1;
    printf("stretch tree of depth %d\t check: %ld\n", stretch,
           check_and_drop(bottom_up_tree(stretch)));

    node *long_lived = bottom_up_tree(max_depth);

    if (nthreads == 1) {
        worker(NULL); /* the main thread is registered already */
    } else {
        static int own_thread = 1;
        pthread_t tid[MAX_THREADS];
        for (int t = 0; t < nthreads; t++)
            if (pthread_create(&tid[t], NULL, worker, &own_thread) != 0) {
                fprintf(stderr, "binarytrees: pthread_create failed\n");
                return 3;
            }
        ga_block_begin(); /* the main thread waits without touching the heap */
        for (int t = 0; t < nthreads; t++) pthread_join(tid[t], NULL);
        ga_block_end();
    }

    for (int k = 0; k < ndepths; k++)
        printf("%ld\t trees of depth %d\t check: %ld\n", iterations[k], MIN_DEPTH + 2 * k,
               results[k]);
    printf("long lived tree of depth %d\t check: %ld\n", max_depth,
           check_and_drop(long_lived));
    fflush(stdout);
    uint64_t t1 = ga_now_ns();
    fprintf(stderr, "binarytrees-%s depth %d threads %d: %.3f s\n", GA_NAME, max_depth,
            nthreads, (t1 - t0) / 1e9);
    ga_report();
    return 0;
}
