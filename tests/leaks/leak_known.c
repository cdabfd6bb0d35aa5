/* leak_known.c — a program with known leaks, for leak mode (CGC_LEAKS=report).
 *
 * Three blocks are lost, each from its own allocation site and in its own way:
 *   lost_overwritten  the only pointer (a global) is overwritten
 *   lost_owned        the struct that owned it is freed
 *   lost_in_thread    the thread that held it exits
 * Six blocks are kept, each reachable from exactly one kind of root: a global, main's
 * stack, a heap chain (global -> node -> node -> node), a __thread variable of main,
 * another (live) thread's stack and that thread's __thread variable.
 * The program prints what the check must find ("lost SITE SIZE") and must not find
 * ("kept SITE SIZE"); tests/leaks/check_known.py runs it and compares the report.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

void *global_keep;
void *global_overwritten;
struct node {
    struct node *next;
    char pad[1000];
};
struct node *global_chain;
__thread void *tls_keep;
struct owner {
    char pad[16];
    void *child; /* beyond the two words free() reuses: still there after the free */
};

static void say(const char *what, const char *site, size_t size) {
    printf("%s %s %zu\n", what, site, size);
}

/* Allocation sites (exported: the report names them through the dynamic symbol table). */
NOINLINE void *lost_overwritten(void) { return malloc(111); }
NOINLINE void *lost_owned(void) { return malloc(222); }
NOINLINE void *lost_in_thread(void) { return malloc(333); }
NOINLINE void *kept_global(void) { return malloc(1001); }
NOINLINE void *kept_stack(void) { return malloc(1002); }
NOINLINE struct node *kept_chain(struct node *next) {
    struct node *n = malloc(sizeof *n);
    memset(n, 0, sizeof *n);
    n->next = next;
    return n;
}
NOINLINE void *kept_tls(void) { return malloc(1004); }
NOINLINE void *kept_thread_stack(void) { return malloc(1005); }
NOINLINE void *kept_thread_tls(void) { return malloc(1006); }

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int keeper_ready;

static void *thread_that_exits(void *arg) {
    (void)arg;
    void *volatile p = lost_in_thread();
    memset((void *)p, 1, 333);
    return NULL; /* p dies with the thread */
}

static void *keeper(void *arg) {
    (void)arg;
    void *volatile on_my_stack = kept_thread_stack();
    tls_keep = kept_thread_tls();
    pthread_mutex_lock(&mu);
    keeper_ready = 1;
    pthread_cond_broadcast(&cv);
    for (;;) pthread_cond_wait(&cv, &mu); /* alive (and holding on_my_stack) at exit */
    return (void *)on_my_stack;
}

NOINLINE static void make_leaks(void) {
    global_overwritten = lost_overwritten();
    global_overwritten = NULL;
    say("lost", "lost_overwritten", 111);

    struct owner *o = malloc(sizeof *o);
    o->child = lost_owned();
    free(o);
    say("lost", "lost_owned", 222);

    pthread_t t;
    pthread_create(&t, NULL, thread_that_exits, NULL);
    pthread_join(t, NULL);
    say("lost", "lost_in_thread", 333);
}

NOINLINE static void make_kept(void) {
    global_keep = kept_global();
    say("kept", "kept_global", 1001);
    global_chain = kept_chain(kept_chain(kept_chain(NULL)));
    say("kept", "kept_chain", sizeof(struct node));
    tls_keep = kept_tls();
    say("kept", "kept_tls", 1004);
    pthread_t t;
    pthread_create(&t, NULL, keeper, NULL);
    pthread_mutex_lock(&mu);
    while (!keeper_ready) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    say("kept", "kept_thread_stack", 1005);
    say("kept", "kept_thread_tls", 1006);
}

/* Stale copies of lost pointers in dead stack frames would hide them (conservative
 * scanning): clear the stack below main before checking. */
NOINLINE static void scrub_stack(void) {
    volatile char buf[1 << 16];
    memset((char *)buf, 0, sizeof buf);
}

/* exit() from below main's frame: main's locals are still on the stack during the check. */
NOINLINE static void finish(void *volatile *keep) {
    (void)keep;
    fflush(stdout);
    exit(0);
}

int main(void) {
    make_leaks();
    make_kept();
    void *volatile on_stack = kept_stack();
    say("kept", "kept_stack", 1002);
    scrub_stack();
    finish(&on_stack);
}
