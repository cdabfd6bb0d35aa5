/* dlopen_cgc.c — libcgc.so loaded with dlopen after the program started (README
 * "Reliability"). The program's malloc stays the C library's (RTLD_LOCAL); the cgc_*
 * entry points found with dlsym serve blocks and collected objects from the main thread
 * and from 4 threads, a collection runs, and dlclose leaves the library loaded
 * (-z nodelete: its threads and atfork handlers stay valid). Usage: dlopen_cgc LIB */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgc.h"

static void *(*p_malloc)(size_t);
static void (*p_free)(void *);
static size_t (*p_usable)(const void *);
static int (*p_register)(void);
static void (*p_unregister)(void);
static void *(*p_alloc)(size_t);
static void (*p_collect)(void);
static void (*p_stats)(cgc_stats *);

static void fail(const char *m) {
    fprintf(stderr, "dlopen_cgc: FAIL: %s\n", m);
    exit(1);
}

typedef struct node { struct node *next; uint64_t v; } node;

static void *worker(void *arg) {
    uint64_t id = (uintptr_t)arg;
    if (p_register() != 0) fail("register");
    node *list = NULL;
    for (int i = 0; i < 20000; i++) {
        unsigned char *b = p_malloc((size_t)i % 3000 + 1);
        if (!b || p_usable(b) < (size_t)i % 3000 + 1) fail("malloc");
        b[0] = 1;
        p_free(b);
        node *n = p_alloc(sizeof *n);
        if (!n) fail("alloc");
        n->v = id * 100000 + (uint64_t)i;
        n->next = i % 500 ? list : NULL;
        list = n;
    }
    for (node *m = list; m && m->next; m = m->next)
        if (m->v != m->next->v + 1) fail("collected list broken");
    p_unregister();
    return NULL;
}

#define SYM(var, name) do { *(void **)&var = dlsym(h, name); if (!var) fail("dlsym " name); } while (0)

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: dlopen_cgc path/to/libcgc.so");
    void *glibc_block = malloc(100); /* before the load: must stay the C library's */
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen_cgc: %s\n", dlerror());
        fail("dlopen");
    }
    SYM(p_malloc, "cgc_malloc");
    SYM(p_free, "cgc_free");
    SYM(p_usable, "cgc_usable_size");
    SYM(p_register, "cgc_thread_register");
    SYM(p_unregister, "cgc_thread_unregister");
    SYM(p_alloc, "cgc_alloc");
    SYM(p_collect, "cgc_collect");
    SYM(p_stats, "cgc_get_stats");
    if (p_usable(glibc_block) != 0) fail("cgc claims the C library's block");
    free(glibc_block);
    p_register();
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    for (int i = 0; i < 20; i++) p_collect();
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    p_collect();
    cgc_stats st;
    p_stats(&st);
    if (st.errors || st.gc_cycles < 20 || st.malloc_count < 80000) fail("statistics");
    void *q = malloc(10); /* the program's malloc still works */
    free(q);
    dlclose(h);
    printf("dlopen_cgc: ok (%llu collections)\n", (unsigned long long)st.gc_cycles);
    return 0;
}
