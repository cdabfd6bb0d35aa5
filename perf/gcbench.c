/* gcbench.c — GCBench (Ellis, Kovac and Boehm's classic collector benchmark), rewritten
 * from its description for cgc, the Boehm GC and malloc/free (perf/gcalloc.h picks which).
 *
 * What it models: a program with a moderate long-lived heap (a complete binary tree of
 * depth 16 — 131071 nodes — and an array of 500,000 doubles that the collector must not
 * scan) that keeps building and dropping short-lived binary trees of every size from
 * 31 nodes to 131071.  Each size is built the same number of node-allocations in total
 * (2 * treeSize(stretch) nodes), once "top-down" (allocate a node, then store freshly
 * allocated children into it: stores of young pointers into older objects, the write
 * barrier's case) and once "bottom-up" (children first, the parent is born pointing at
 * them).  Before that a "stretch" tree of depth 18 sets the heap's high-water mark.
 *
 * Node = {left, right, i, j}: two pointer words and two ints.  Every node records its
 * depth in i and a function of it in j; every dropped tree is walked once to count and sum
 * its nodes (so a collector that reclaims or overwrites a reachable node changes the
 * checksum or fails), and the malloc variant frees the nodes during that walk.  At the end
 * the long-lived tree and array are checked again.
 *
 * usage: gcbench [depth=16]     long-lived tree and largest short-lived trees have this
 *                               depth; the stretch tree has depth+2; minimum 4
 * stdout: one line that must be identical in all variants; stderr: timings, and last the
 * gcstats line (see gcalloc.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "gcalloc.h"

#define MIN_DEPTH 4
#define ARRAY_SIZE 500000

typedef struct node {
    struct node *left, *right; /* the only pointer words (gcalloc.h's node type) */
    int i, j;
} node;

static int stretch_depth, long_lived_depth, max_depth;

static long tree_size(int depth) { return (1L << (depth + 1)) - 1; }
static long num_iters(int depth) { return 2 * tree_size(stretch_depth) / tree_size(depth); }

static node *new_node(node *left, node *right, int depth)
{
    node *n = ga_node();
    GA_STORE(n->left, left);
    GA_STORE(n->right, right);
    n->i = depth;
    n->j = depth * 7 + 1;
    return n;
}

/* Top-down: n exists; give it two fresh children and recurse into them. */
static void populate(int depth, node *n)
{
    if (depth <= 0) return;
    depth--;
    GA_STORE(n->left, new_node(NULL, NULL, depth));
    GA_STORE(n->right, new_node(NULL, NULL, depth));
    populate(depth, n->left);
    populate(depth, n->right);
}

/* Bottom-up: the children exist before their parent. */
static node *make_tree(int depth)
{
    if (depth <= 0) return new_node(NULL, NULL, 0);
    node *l = make_tree(depth - 1);
    node *r = make_tree(depth - 1);
    return new_node(l, r, depth);
}

struct walk {
    long nodes;
    long bad; /* nodes whose fields do not fit their place in the tree */
    unsigned long long sum;
};

/* Counts and checks the tree; frees it too if release (malloc variant, dropped trees). */
static void walk(const node *n, int depth, struct walk *w, int release)
{
    while (n) {
        w->nodes++;
        w->sum = w->sum * 31 + (unsigned)n->i;
        if (n->i != depth || n->j != depth * 7 + 1 || (!n->left) != (!n->right) ||
            (depth == 0) != (!n->left))
            w->bad++;
        walk(n->left, depth - 1, w, release);
        const node *next = n->right;
        if (release) ga_free((void *)n);
        n = next;
        depth--;
    }
}

static void drop_tree(node *t, int depth, struct walk *w)
{
    walk(t, depth, w, GA_EXPLICIT_FREE);
}

static void time_construction(int depth, struct walk *w)
{
    long iters = num_iters(depth);
    uint64_t t0 = ga_now_ns();
    for (long k = 0; k < iters; k++) {
        node *t = new_node(NULL, NULL, depth);
        populate(depth, t);
        drop_tree(t, depth, w);
    }
    uint64_t t1 = ga_now_ns();
    for (long k = 0; k < iters; k++) {
        node *t = make_tree(depth);
        drop_tree(t, depth, w);
    }
    uint64_t t2 = ga_now_ns();
    fprintf(stderr, "depth %2d: %7ld trees  top-down %7.1f ms  bottom-up %7.1f ms\n", depth,
            iters, (t1 - t0) / 1e6, (t2 - t1) / 1e6);
}

int main(int argc, char **argv)
{
    long_lived_depth = argc > 1 ? atoi(argv[1]) : 16;
    if (long_lived_depth < MIN_DEPTH || long_lived_depth > 24) {
        fprintf(stderr, "usage: gcbench [depth=16]   (%d..24)\n", MIN_DEPTH);
        return 2;
    }
    max_depth = long_lived_depth;
    stretch_depth = long_lived_depth + 2;
    ga_init(sizeof(node));
    uint64_t t0 = ga_now_ns();

    struct walk w = {0, 0, 0};
    drop_tree(make_tree(stretch_depth), stretch_depth, &w); /* stretch the heap */
    long expect = tree_size(stretch_depth);

    node *long_lived = new_node(NULL, NULL, long_lived_depth);
    populate(long_lived_depth, long_lived);

    double *array = ga_leaf(ARRAY_SIZE * sizeof(double));
    for (long k = 0; k < ARRAY_SIZE / 2; k++) array[k] = 1.0 / (double)k; /* [0] = inf */
    for (long k = ARRAY_SIZE / 2; k < ARRAY_SIZE; k++) array[k] = (double)k;

    for (int d = MIN_DEPTH; d <= max_depth; d += 2) {
        time_construction(d, &w);
        expect += 2 * num_iters(d) * tree_size(d);
    }

    /* The long-lived structures must have survived every collection untouched. */
    struct walk lw = {0, 0, 0};
    walk(long_lived, long_lived_depth, &lw, 0);
    int array_ok = 1;
    for (long k = 1; k < ARRAY_SIZE; k++)
        if (array[k] != (k < ARRAY_SIZE / 2 ? 1.0 / (double)k : (double)k)) array_ok = 0;
    int ok = w.nodes == expect && w.bad == 0 && lw.nodes == tree_size(long_lived_depth) &&
             lw.bad == 0 && array_ok && array[1000] == 1.0 / 1000;
    uint64_t t1 = ga_now_ns();

    printf("gcbench depth %d stretch %d: %s nodes %ld checksum %016llx long-lived %ld/%016llx "
           "array %s\n", long_lived_depth, stretch_depth, ok ? "ok" : "FAILED", w.nodes,
           w.sum, lw.nodes, lw.sum, array_ok ? "ok" : "CORRUPT");
    fflush(stdout);
    fprintf(stderr, "gcbench-%s: %.3f s total\n", GA_NAME, (t1 - t0) / 1e9);
    ga_report();
    if (GA_EXPLICIT_FREE) {
        drop_tree(long_lived, long_lived_depth, &lw);
        ga_free(array);
    }
    return ok ? 0 : 1;
}
