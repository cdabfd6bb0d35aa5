/* Thread exit: caches are flushed, frees that arrive after cgc's own teardown still work. */
#include <criterion/criterion.h>
#include <signal.h>
#include <pthread.h>
#include <string.h>

#include "cgc/internal.h"

static void *churn(void *arg) {
    (void)arg;
    void *keep[64];
    for (int i = 0; i < 64; i++) keep[i] = cgc_malloc((size_t)(i + 1) * 24);
    for (int i = 0; i < 64; i += 2) cgc_free(keep[i]);
    return NULL; /* half the blocks stay allocated: their spans must move to central */
}

Test(thread_exit, caches_are_reused_and_spans_flushed) {
    cgc_init();
    for (int i = 0; i < 200; i++) {
        pthread_t t;
        pthread_create(&t, NULL, churn, NULL);
        pthread_join(t, NULL);
    }
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.threads, 200);
    cr_assert_eq(st.malloc_count, 200 * 64);
    /* Live: 200 threads x blocks of 48, 96, ..., 1536 bytes. Exited threads' spans are
     * adopted by the next thread, so spans hold little more than the live data (one
     * private span per class per thread would be 200 x 32 spans of 8 KiB or more = 50 MiB). */
    uint64_t live = 200ull * 24 * (64 * 66 / 4);
    cr_assert(st.span_bytes < live + live / 4 + (1u << 20), "%llu bytes in spans for %llu live",
              (unsigned long long)st.span_bytes, (unsigned long long)live);
}

/* A destructor of a key created after cgc's: runs after cgc tore the cache down. */
static pthread_key_t late_key;
static void *late_block;
static _Atomic int late_ok;

static void late_destructor(void *arg) {
    cgc_free(arg);                   /* free of a block this thread allocated, after teardown */
    void *p = cgc_malloc(200);       /* allocation after teardown */
    memset(p, 1, 200);
    late_block = p;                  /* freed later by the main thread */
    void *q = cgc_realloc(cgc_malloc(10), 5000);
    cgc_free(q);
    atomic_store(&late_ok, 1);
}

static void *uses_late_key(void *arg) {
    (void)arg;
    void *p = cgc_malloc(77);
    pthread_setspecific(late_key, p);
    return NULL;
}

Test(thread_exit, frees_and_mallocs_after_cache_teardown) {
    cgc_init();
    void *warm = cgc_malloc(8); /* make sure cgc's key exists before ours */
    pthread_key_create(&late_key, late_destructor);
    for (int i = 0; i < 50; i++) {
        atomic_store(&late_ok, 0);
        pthread_t t;
        pthread_create(&t, NULL, uses_late_key, NULL);
        pthread_join(t, NULL);
        cr_assert(atomic_load(&late_ok));
        cgc_free(late_block);
    }
    cgc_free(warm);
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.errors, 0);
}

static void *only_frees(void *arg) {
    void **v = arg;
    for (int i = 0; i < 100; i++) cgc_free(v[i]);
    return NULL;
}

Test(thread_exit, thread_that_only_frees) {
    for (int r = 0; r < 100; r++) {
        void *v[100];
        for (int i = 0; i < 100; i++) v[i] = cgc_malloc((size_t)i * 10 + 1);
        pthread_t t;
        pthread_create(&t, NULL, only_frees, v);
        pthread_join(t, NULL);
    }
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.free_count, st.malloc_count);
}
