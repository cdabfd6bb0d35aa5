/* early_threads.c — threads created before cgc is initialised (README "Reliability").
 *
 * A constructor with priority 101 runs before the library's own (default priority) and
 * starts 8 threads; it checks that cgc is not initialised yet, then releases them: their
 * first cgc calls race each other and the library constructor into initialisation. The
 * threads were created before the collector existed too: they register and allocate
 * collected objects while the main thread makes the collector's first use. Links the static
 * library. Exit 0: every block and object intact, no error counted. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgc/internal.h"

#define NT 8
static pthread_t th[NT];
static atomic_int go, gc_go;
static int was_ready_at_start = -1;

static void fail(const char *m) {
    fprintf(stderr, "early_threads: FAIL: %s\n", m);
    exit(1);
}

typedef struct node { struct node *next; uint64_t v; } node;

static void *early(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    while (!atomic_load(&go)) { /* spin: the first call must race initialisation */
    }
    unsigned char *p[200];
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t)(i * 97 + id) % 5000 + 1;
        p[i] = cgc_malloc(n);
        if (!p[i]) fail("malloc failed");
        memset(p[i], (int)id, n);
    }
    for (int i = 0; i < 200; i++) {
        if (p[i][0] != (unsigned char)id) fail("block changed");
        cgc_free(p[i]);
    }
    while (!atomic_load(&gc_go)) {
    }
    if (cgc_thread_register() != 0) fail("cgc_thread_register failed");
    node *list = NULL;
    for (int i = 0; i < 3000; i++) {
        node *n = cgc_alloc(sizeof *n);
        if (!n) fail("cgc_alloc failed");
        n->v = (uint64_t)i * NT + id;
        n->next = list;
        list = n;
        if (i % 1000 == 999) cgc_collect();
    }
    int i = 2999;
    for (node *m = list; m; m = m->next, i--)
        if (m->v != (uint64_t)i * NT + id) fail("collected list broken");
    cgc_thread_unregister();
    return NULL;
}

__attribute__((constructor(101))) static void start_early(void) {
    was_ready_at_start = atomic_load(&alloc_ready);
    for (unsigned i = 0; i < NT; i++)
        if (pthread_create(&th[i], NULL, early, (void *)(uintptr_t)i) != 0) fail("pthread_create");
    atomic_store(&go, 1);
}

int main(void) {
    if (was_ready_at_start != 0) fail("cgc was initialised before the early constructor: test is void");
    atomic_store(&gc_go, 1);
    node *mine = cgc_alloc(sizeof *mine); /* the collector's first use races the threads' */
    if (!mine) fail("cgc_alloc on main failed");
    mine->v = 7;
    cgc_blocking_enter();
    for (unsigned i = 0; i < NT; i++) pthread_join(th[i], NULL);
    cgc_blocking_leave();
    cgc_collect();
    if (mine->v != 7) fail("main's object changed");
    cgc_stats st;
    cgc_get_stats(&st);
    if (st.errors) fail("errors counted");
    printf("early_threads: %d threads created before initialisation: ok\n", NT);
    return 0;
}
