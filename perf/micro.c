/* micro.c — micro benchmark bodies (see micro.h).
 *
 * The compiler may delete a malloc/free pair whose memory is never observed (GCC and
 * Clang both do), so every block is written to and "escaped" through an empty asm that
 * claims to read it.  Blocks are touched (one byte per page, plus the first byte) because
 * an allocator that hands out untouched pages would otherwise look free of cost, which it
 * is not for a real program.
 */
#include "micro.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define escape(p) __asm__ volatile("" : : "r"(p) : "memory")

static void oom(void)
{
    fputs("micro: out of memory\n", stderr);
    abort();
}

static void touch(char *p, size_t size)
{
    for (size_t i = 0; i < size; i += 4096) p[i] = (char)i;
    p[size - 1] = 1;
}

void micro_pairs(size_t size, long iters)
{
    for (long i = 0; i < iters; i++) {
        char *p = malloc(size);
        if (!p) oom();
        touch(p, size);
        escape(p);
        free(p);
    }
}

void micro_batch(size_t size, size_t n, long iters)
{
    void **v = malloc(n * sizeof(void *));
    if (!v) oom();
    for (long it = 0; it < iters; it++) {
        for (size_t i = 0; i < n; i++) {
            char *p = malloc(size);
            if (!p) oom();
            p[0] = (char)i;
            v[i] = p;
        }
        escape(v);
        for (size_t i = 0; i < n; i++) free(v[i]);
    }
    free(v);
}

/* SPSC ring: head/tail on separate cache lines so the two threads only share the slots
 * they hand over. */
#define RING 1024
typedef struct ring {
    _Alignas(64) _Atomic size_t head; /* next slot the producer fills */
    _Alignas(64) _Atomic size_t tail; /* next slot the consumer empties */
    _Alignas(64) void *slot[RING];
    long items;
} ring;

static void *consumer(void *arg)
{
    ring *r = arg;
    size_t tail = 0;
    for (long done = 0; done < r->items;) {
        size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        if (head == tail) {
            /* With 2 cores and a noisy machine, spinning can starve the producer. */
            sched_yield();
            continue;
        }
        for (; tail != head; tail++, done++) free(r->slot[tail % RING]);
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    return NULL;
}

void micro_prodcons(size_t size, long items)
{
    ring *r = aligned_alloc(64, sizeof(ring));
    if (!r) oom();
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->items = items;
    pthread_t th;
    if (pthread_create(&th, NULL, consumer, r) != 0) {
        fputs("micro: pthread_create failed\n", stderr);
        abort();
    }
    size_t head = 0;
    for (long i = 0; i < items; i++) {
        while (head - atomic_load_explicit(&r->tail, memory_order_acquire) >= RING)
            sched_yield();
        char *p = malloc(size);
        if (!p) oom();
        p[0] = (char)i;
        r->slot[head % RING] = p;
        head++;
        /* Publish in small groups: one release store per block would measure the cache
         * line ping-pong on `head` more than the allocator. */
        if ((head & 15) == 0 || i + 1 == items)
            atomic_store_explicit(&r->head, head, memory_order_release);
    }
    pthread_join(th, NULL);
    free(r);
}

void micro_realloc_grow(size_t step, size_t limit, long iters)
{
    for (long it = 0; it < iters; it++) {
        char *p = NULL;
        for (size_t n = step; n <= limit; n += step) {
            char *q = realloc(p, n);
            if (!q) oom();
            q[n - 1] = (char)n; /* the program writes what it appended */
            p = q;
        }
        escape(p);
        free(p);
    }
}
