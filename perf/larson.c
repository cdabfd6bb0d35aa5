/* larson.c — a fixed-work variant of the Larson & Krishnan "server" benchmark.
 *
 * Models a long-running server: every worker owns an array of live blocks and keeps
 * replacing random ones with fresh random-size blocks (16..1024 B), so the heap stays at a
 * steady size while it churns.  Workers are short-lived: after each round a worker hands
 * its array to a brand-new thread and exits.  The successor therefore frees blocks that a
 * dead thread allocated, which is what stresses an allocator's cross-thread free path and
 * its handling of abandoned per-thread caches.
 *
 * Unlike the original (which counts operations done in a fixed time) the amount of work is
 * fixed and the caller measures the time, so runs under different allocators do the same
 * work and print the same checksum.
 *
 * usage: larson [scale=1] [threads=4] [slots=5000]
 *   scale multiplies the number of rounds; stdout is a checksum line only.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SIZE 16
#define MAX_SIZE 1024
#define OPS_PER_ROUND 50000
#define BASE_ROUNDS 400

/* One chain of threads: the array (and everything that must survive a thread hand-off). */
typedef struct chain {
    void **slots;
    size_t nslots;
    uint64_t rng;
    uint64_t sum;          /* sum of the tags read back from freed blocks */
    long rounds_left;
    int has_prev;
    pthread_t prev;        /* the predecessor, joined by its successor */
    pthread_t last;        /* the final thread, joined by main */
} chain;

static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int chains_running;

static uint64_t next_rand(uint64_t *s) /* splitmix64: cheap and good enough */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void die(const char *msg)
{
    fprintf(stderr, "larson: %s\n", msg);
    exit(2);
}

/* The size lives in the block itself so that a block's tag can be checked on free without
 * a side table: [size:4][tag:4] ... [tag:4 at the end].  Writing both ends also makes a
 * block whose memory overlaps another live block show up as a checksum error. */
static void *new_block(chain *c)
{
    uint64_t r = next_rand(&c->rng);
    uint32_t size = MIN_SIZE + (uint32_t)(r % (MAX_SIZE - MIN_SIZE + 1));
    unsigned char *p = malloc(size);
    if (!p) die("out of memory");
    uint32_t tag = (uint32_t)(r >> 32);
    memcpy(p, &size, 4);
    memcpy(p + 4, &tag, 4);
    memcpy(p + size - 4, &tag, 4);
    return p;
}

static void free_block(chain *c, void *block)
{
    unsigned char *p = block;
    uint32_t size;
    uint32_t t1, t2;
    memcpy(&size, p, 4);
    if (size < MIN_SIZE || size > MAX_SIZE) die("corrupted block header");
    memcpy(&t1, p + 4, 4);
    memcpy(&t2, p + size - 4, 4);
    if (t1 != t2) die("corrupted block (head/tail tags differ)");
    c->sum += t1 * 0x9e3779b97f4a7c15ull + size;
    free(p);
}

static void *worker(void *arg)
{
    chain *c = arg;
    if (c->has_prev) pthread_join(c->prev, NULL);

    for (long i = 0; i < OPS_PER_ROUND; i++) {
        size_t k = (size_t)(next_rand(&c->rng) % c->nslots);
        free_block(c, c->slots[k]);
        c->slots[k] = new_block(c);
    }

    if (--c->rounds_left > 0) {
        /* Hand the array to a new thread; this one exits without freeing anything.
         * pthread_create orders our writes to *c before the successor reads them. */
        c->prev = pthread_self();
        c->has_prev = 1;
        pthread_t next;
        if (pthread_create(&next, NULL, worker, c) != 0) die("pthread_create failed");
        return NULL;
    }

    for (size_t k = 0; k < c->nslots; k++) free_block(c, c->slots[k]);
    free(c->slots);
    c->slots = NULL;
    pthread_mutex_lock(&done_mu);
    c->last = pthread_self();
    chains_running--;
    pthread_cond_signal(&done_cv);
    pthread_mutex_unlock(&done_mu);
    return NULL;
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    int nthreads = argc > 2 ? atoi(argv[2]) : 4;
    long nslots = argc > 3 ? atol(argv[3]) : 5000;
    if (scale <= 0 || nthreads < 1 || nslots < 1) {
        fprintf(stderr, "usage: larson [scale>0] [threads>=1] [slots>=1]\n");
        return 1;
    }
    long rounds = (long)(BASE_ROUNDS * scale / nthreads + 0.5);
    if (rounds < 1) rounds = 1;

    chain *chains = calloc((size_t)nthreads, sizeof(chain));
    if (!chains) die("out of memory");
    /* Fill every array from main first: the very first round then already frees blocks
     * that another thread (main) allocated. */
    for (int t = 0; t < nthreads; t++) {
        chain *c = &chains[t];
        c->rng = 4141u + (uint64_t)t * 7919u;
        c->nslots = (size_t)nslots;
        c->rounds_left = rounds;
        c->slots = malloc(sizeof(void *) * c->nslots);
        if (!c->slots) die("out of memory");
        for (size_t k = 0; k < c->nslots; k++) c->slots[k] = new_block(c);
    }

    chains_running = nthreads;
    for (int t = 0; t < nthreads; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, worker, &chains[t]) != 0) die("pthread_create failed");
    }
    pthread_mutex_lock(&done_mu);
    while (chains_running > 0) pthread_cond_wait(&done_cv, &done_mu);
    pthread_mutex_unlock(&done_mu);

    uint64_t sum = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(chains[t].last, NULL);
        sum = sum * 31 + chains[t].sum;
    }
    free(chains);
    printf("larson threads=%d slots=%ld rounds=%ld checksum=%016llx\n", nthreads, nslots,
           rounds, (unsigned long long)sum);
    return 0;
}
