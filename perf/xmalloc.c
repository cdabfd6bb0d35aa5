/* xmalloc.c — an xmalloc-test / mstress-like multi-threaded workload.
 *
 * Models a pipeline of worker threads that pass objects to each other (message queues,
 * task objects): every thread allocates many small objects; about half stay local (in a
 * small ring of recent objects, freed when overwritten: short-lived, same-thread frees),
 * the other half are pushed in batches onto one shared queue and freed by whichever
 * thread pops the batch.  Threads prefer batches that another thread filled, so most of
 * those become remote frees (about 40% of all frees with 4 threads on 2 cores, per cgc's
 * CGC_STATS=1 counters).  This stresses the remote-free path and
 * the speed at which memory freed by other threads becomes reusable, at a high
 * allocation rate and with contention on the shared queue (as in xmalloc-test).
 *
 * The work is fixed; the caller measures the time.  Which thread frees a given object
 * depends on scheduling, but the checksum does not: it is the sum of the tags of all
 * objects, each of which is freed exactly once.
 *
 * usage: xmalloc [scale=1] [threads=4]
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE_OPS 20000000L /* allocations over all threads at scale 1 */
#define RING 512          /* locally kept objects per thread */
#define BATCH 62          /* pointers per queue batch: the batch is ~512 B itself */
#define QUEUE_HIGH 64     /* above this many queued batches, a thread frees its own too */
#define YIELD_EVERY 16    /* see worker() */
#define LOOK 8            /* how far down the queue a thread looks for a foreign batch */

typedef struct batch {
    struct batch *next;
    uint32_t n;
    int owner;            /* thread that filled it */
    void *p[BATCH];
} batch;

static struct {
    pthread_mutex_t mu;
    batch *head, *tail;
    long len;
} queue = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0};

static _Atomic uint64_t global_sum;

static uint64_t next_rand(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void die(const char *msg)
{
    fprintf(stderr, "xmalloc: %s\n", msg);
    exit(2);
}

/* Mostly tiny objects with a long-ish tail, like typical C/C++ programs:
 * 16..64 B (60%), 64..256 B (30%), 256..2048 B (10%). */
static uint32_t pick_size(uint64_t r)
{
    uint32_t sel = (uint32_t)(r % 10);
    uint32_t v = (uint32_t)(r >> 8);
    if (sel < 6) return 16 + v % 49;
    if (sel < 9) return 64 + v % 193;
    return 256 + v % 1793;
}

/* Layout: [size:4][tag:4] ... [tag:4 at the end]; checked again by the freer. */
static void *new_obj(uint64_t r)
{
    uint32_t size = pick_size(r);
    unsigned char *p = malloc(size);
    if (!p) die("out of memory");
    uint32_t tag = (uint32_t)(r >> 32);
    memcpy(p, &size, 4);
    memcpy(p + 4, &tag, 4);
    memcpy(p + size - 4, &tag, 4);
    return p;
}

static uint64_t free_obj(void *obj)
{
    unsigned char *p = obj;
    uint32_t size, t1, t2;
    memcpy(&size, p, 4);
    if (size < 16 || size > 2048) die("corrupted object header");
    memcpy(&t1, p + 4, 4);
    memcpy(&t2, p + size - 4, 4);
    if (t1 != t2) die("corrupted object (head/tail tags differ)");
    free(p);
    return (uint64_t)t1 * 0x9e3779b97f4a7c15ull + size;
}

static void push_batch(batch *b)
{
    b->next = NULL;
    pthread_mutex_lock(&queue.mu);
    if (queue.tail) queue.tail->next = b;
    else queue.head = b;
    queue.tail = b;
    queue.len++;
    pthread_mutex_unlock(&queue.mu);
}

/* Takes a batch filled by another thread if one is near the head of the queue (owner < 0:
 * any batch).  With only own batches in sight it returns NULL and sets *crowded when the
 * queue has grown past QUEUE_HIGH. */
static batch *pop_batch(int owner, int *crowded)
{
    pthread_mutex_lock(&queue.mu);
    batch *prev = NULL, *b = queue.head;
    for (int i = 0; b && i < LOOK && owner >= 0 && b->owner == owner; i++) {
        prev = b;
        b = b->next;
    }
    if (b && owner >= 0 && b->owner == owner) b = NULL;
    if (b) {
        if (prev) prev->next = b->next;
        else queue.head = b->next;
        if (queue.tail == b) queue.tail = prev;
        queue.len--;
    }
    *crowded = queue.len > QUEUE_HIGH;
    pthread_mutex_unlock(&queue.mu);
    return b;
}

/* Frees a popped batch; the batch header itself is also a cross-thread free. */
static uint64_t consume(batch *b)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < b->n; i++) sum += free_obj(b->p[i]);
    free(b);
    return sum;
}

static batch *new_batch(int owner)
{
    batch *b = malloc(sizeof(batch));
    if (!b) die("out of memory");
    b->n = 0;
    b->owner = owner;
    return b;
}

typedef struct worker_arg {
    long ops;
    uint64_t seed;
    int id;
} worker_arg;

static void *worker(void *argp)
{
    worker_arg *arg = argp;
    uint64_t rng = arg->seed;
    uint64_t sum = 0;
    void *ring[RING] = {0};
    batch *out = new_batch(arg->id);
    unsigned crowded_count = 0;

    for (long i = 0; i < arg->ops; i++) {
        uint64_t r = next_rand(&rng);
        void *p = new_obj(r);
        if (r & (1ull << 7)) {
            size_t k = (size_t)i % RING;
            if (ring[k]) sum += free_obj(ring[k]);
            ring[k] = p;
            continue;
        }
        out->p[out->n++] = p;
        if (out->n < BATCH) continue;
        push_batch(out);
        out = new_batch(arg->id);
        /* Consume about as fast as we produce; a second try catches up after a stretch
         * in which no foreign batch was available. */
        int crowded;
        batch *in = pop_batch(arg->id, &crowded);
        if (in) {
            sum += consume(in);
            if ((in = pop_batch(arg->id, &crowded)) != NULL) sum += consume(in);
        } else if (crowded) {
            /* Only our own batches are queued: the other threads are not running (2 cores,
             * 4 threads, busy machine).  Now and then let them run, or this turns into a
             * single-thread benchmark for a whole time slice; but not every time, or it
             * turns into a benchmark of sched_yield. */
            if (++crowded_count % YIELD_EVERY == 0) sched_yield();
            if ((in = pop_batch(-1, &crowded)) != NULL) sum += consume(in);
        }
    }

    for (size_t k = 0; k < RING; k++)
        if (ring[k]) sum += free_obj(ring[k]);
    if (out->n) push_batch(out);
    else free(out);
    atomic_fetch_add(&global_sum, sum);
    return NULL;
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    int nthreads = argc > 2 ? atoi(argv[2]) : 4;
    if (scale <= 0 || nthreads < 1) {
        fprintf(stderr, "usage: xmalloc [scale>0] [threads>=1]\n");
        return 1;
    }
    long ops = (long)(BASE_OPS * scale / nthreads);
    if (ops < 1) ops = 1;

    pthread_t *th = malloc(sizeof(pthread_t) * (size_t)nthreads);
    worker_arg *args = malloc(sizeof(worker_arg) * (size_t)nthreads);
    if (!th || !args) die("out of memory");
    for (int t = 0; t < nthreads; t++) {
        args[t].ops = ops;
        args[t].seed = 0x1234567ull + (uint64_t)t * 1000003ull;
        args[t].id = t;
        if (pthread_create(&th[t], NULL, worker, &args[t]) != 0) die("pthread_create failed");
    }
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);

    /* Whatever is still queued is freed by main: yet another thread. */
    uint64_t sum = atomic_load(&global_sum);
    int crowded;
    for (batch *b; (b = pop_batch(-1, &crowded)) != NULL;) sum += consume(b);

    free(th);
    free(args);
    printf("xmalloc threads=%d ops=%ld checksum=%016llx\n", nthreads, ops * nthreads,
           (unsigned long long)sum);
    return 0;
}
