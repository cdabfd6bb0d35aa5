/* Frees from threads that do not own the span (mimalloc's thread_free, as bitmaps). */
#include <criterion/criterion.h>
#include <signal.h>
#include <pthread.h>
#include <string.h>

#include "cgc/internal.h"

enum { N = 50000 };
static void *blocks[N];

static void *free_all(void *arg) {
    (void)arg;
    for (int i = 0; i < N; i++) cgc_free(blocks[i]);
    return NULL;
}

Test(remote, freed_blocks_come_back_to_the_owner) {
    for (int i = 0; i < N; i++) {
        blocks[i] = cgc_malloc(48);
        memset(blocks[i], 7, 48);
    }
    cgc_stats s1;
    cgc_get_stats(&s1);
    pthread_t t;
    pthread_create(&t, NULL, free_all, NULL);
    pthread_join(t, NULL);
    cgc_stats s2;
    cgc_get_stats(&s2);
    cr_assert_eq(s2.remote_free_count - s1.remote_free_count, N);
    /* The owner allocates the same amount again: the freed slots are reused, so the heap
     * does not grow. */
    for (int i = 0; i < N; i++) blocks[i] = cgc_malloc(48);
    cgc_stats s3;
    cgc_get_stats(&s3);
    cr_assert(s3.span_bytes <= s1.span_bytes + 64 * 1024, "heap grew from %llu to %llu",
              (unsigned long long)s1.span_bytes, (unsigned long long)s3.span_bytes);
    cr_assert_eq(s3.mapped_bytes, s1.mapped_bytes);
}

static void *alloc_then_exit(void *arg) {
    (void)arg;
    for (int i = 0; i < N; i++) blocks[i] = cgc_malloc(100 + (size_t)(i % 7) * 16);
    return NULL;
}

Test(remote, frees_after_the_owner_exited_return_spans_to_the_heap) {
    pthread_t t;
    pthread_create(&t, NULL, alloc_then_exit, NULL);
    pthread_join(t, NULL);
    cgc_stats s1;
    cgc_get_stats(&s1);
    cr_assert(s1.span_bytes >= (uint64_t)N * 100);
    free_all(NULL); /* main thread frees into spans now on the central lists */
    cgc_stats s2;
    cgc_get_stats(&s2);
    cr_assert_eq(s2.span_bytes, 0, "%llu bytes still in spans", (unsigned long long)s2.span_bytes);
}

static void *double_free_remote(void *arg) {
    cgc_free(arg);
    cgc_free(arg);
    return NULL;
}

Test(remote, cross_thread_double_free_is_detected, .signal = SIGABRT) {
    void *p = cgc_malloc(64);
    pthread_t t;
    pthread_create(&t, NULL, double_free_remote, p);
    pthread_join(t, NULL);
}

static void *free_one(void *arg) {
    cgc_free(arg);
    return NULL;
}

Test(remote, remote_then_local_double_free_is_detected, .signal = SIGABRT) {
    void *p = cgc_malloc(64);
    pthread_t t;
    pthread_create(&t, NULL, free_one, p);
    pthread_join(t, NULL);
    cgc_free(p); /* owner frees it again while the remote free is still pending */
}

/* Producer/consumer ping-pong: many rounds of cross-thread frees with content checks. */
static void *consumer(void *arg) {
    unsigned char **q = arg;
    for (int i = 0; i < N; i++) {
        while (__atomic_load_n(&q[i], __ATOMIC_ACQUIRE) == NULL) {
        }
        unsigned char *p = q[i];
        size_t n = (size_t)(i % 300) + 1;
        for (size_t k = 0; k < n; k++)
            if (p[k] != (unsigned char)(i + k)) return (void *)1;
        cgc_free(p);
    }
    return NULL;
}

Test(remote, producer_consumer_content_survives) {
    static unsigned char *q[N];
    pthread_t t;
    pthread_create(&t, NULL, consumer, q);
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)(i % 300) + 1;
        unsigned char *p = cgc_malloc(n);
        for (size_t k = 0; k < n; k++) p[k] = (unsigned char)(i + k);
        __atomic_store_n(&q[i], p, __ATOMIC_RELEASE);
    }
    void *r;
    pthread_join(t, &r);
    cr_assert_null(r, "consumer saw corrupted content");
}
