/* Hostile cases a real process brings (README "Reliability"): thread churn with threads that
 * only free, whose first call is a remote free or a realloc, or that free from TLS
 * destructors after cgc's own thread teardown; a foreign, process-wide stop signal while
 * idle and during collections; allocation loops under RLIMIT_AS; sizes near SIZE_MAX after
 * warm-up. Forks are in stress/hostile_fork.c, early threads and dlopen in tests/programs. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgc/gc.h"

static uint64_t stat_errors(void) {
    cgc_stats st;
    cgc_get_stats(&st);
    return st.errors;
}

/* ---- 10,000 thread create/exit cycles ------------------------------------------------------- */
static pthread_key_t late_key;   /* created after cgc's: its destructor runs after teardown */
static void late_free(void *p) { cgc_free(p); }

typedef struct churn_arg { void *blocks[4]; unsigned kind; } churn_arg;

static void *churn_thread(void *a) {
    churn_arg *c = a;
    switch (c->kind % 4) {
    case 0: /* only frees: never allocates, first call is a remote free */
        for (int i = 0; i < 4; i++) cgc_free(c->blocks[i]);
        break;
    case 1: { /* first call is a realloc of another thread's block (remote free inside) */
        void *q = cgc_realloc(c->blocks[0], 5000);
        cr_assert(q);
        cgc_free(q);
        for (int i = 1; i < 4; i++) cgc_free(c->blocks[i]);
        break;
    }
    case 2: /* frees from a TLS destructor, after cgc tore this thread's cache down */
        pthread_setspecific(late_key, c->blocks[0]);
        for (int i = 1; i < 4; i++) cgc_free(c->blocks[i]);
        break;
    default: { /* allocates, frees some, leaves some for the next thread */
        void *mine = cgc_malloc(64 + c->kind % 1000);
        cr_assert(mine);
        for (int i = 0; i < 4; i++) cgc_free(c->blocks[i]);
        c->blocks[0] = mine; /* freed by the main thread */
        c->kind = 99;
        break;
    }
    }
    return NULL;
}

Test(hostile, ten_thousand_thread_lifetimes, .timeout = 300) {
    cgc_init();
    void *warm = cgc_malloc(8);
    cr_assert_eq(pthread_key_create(&late_key, late_free), 0);
    enum { N = 10000, PAR = 4 };
    churn_arg args[PAR];
    for (unsigned r = 0; r < N / PAR; r++) {
        pthread_t t[PAR];
        for (unsigned k = 0; k < PAR; k++) {
            args[k].kind = r * PAR + k;
            for (int i = 0; i < 4; i++) {
                size_t n = (size_t)((r * 7 + k * 131 + (unsigned)i * 977) % 3000) + 1;
                if (i == 3 && r % 50 == 0) n = 100000; /* a large block now and then */
                args[k].blocks[i] = cgc_malloc(n);
                cr_assert(args[k].blocks[i]);
                memset(args[k].blocks[i], 0x33, n < 64 ? n : 64);
            }
            cr_assert_eq(pthread_create(&t[k], NULL, churn_thread, &args[k]), 0);
        }
        for (unsigned k = 0; k < PAR; k++) {
            pthread_join(t[k], NULL);
            if (args[k].kind == 99) cgc_free(args[k].blocks[0]);
        }
    }
    cgc_free(warm);
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.errors, 0);
    cr_assert_eq(st.free_count, st.malloc_count, "mallocs %llu frees %llu",
                 (unsigned long long)st.malloc_count, (unsigned long long)st.free_count);
    cr_assert_null(alloc_heap_check());
}

/* ---- a foreign process-wide stop signal ------------------------------------------------------ */
typedef struct lnode { struct lnode *next; uint64_t check; } lnode;
static atomic_int sig_stop;

static void *gc_mutator(void *arg) {
    (void)arg;
    cgc_thread_register();
    lnode *list = NULL;
    unsigned n = 0;
    while (!atomic_load(&sig_stop)) {
        lnode *x = cgc_alloc(sizeof *x);
        cr_assert(x);
        x->check = (uintptr_t)x ^ 0xabcdef;
        x->next = ++n % 2000 ? list : NULL;
        list = x;
        if (n % 256 == 0)
            for (lnode *m = list; m; m = m->next)
                cr_assert_eq(m->check, (uintptr_t)m ^ 0xabcdef, "object changed under a foreign signal");
    }
    cgc_thread_unregister();
    return NULL;
}

/* A child process sends the collector's own signal to the whole process (kill(), as a
 * careless supervisor would) many times: first while no collection runs, then while
 * mutators allocate and collections run back to back. The collector must ignore signals it
 * did not send, and no thread may be left stopped. */
Test(hostile, foreign_stop_signal_idle_and_during_mark, .timeout = 120) {
    cgc_thread_register();
    gc_ensure_init(); /* the handler is installed: SIGPWR's default action would kill us */
    pid_t me = getpid();
    int sig = gc_opt.signal;
    pid_t killer = fork();
    if (killer == 0) {
        for (int i = 0; i < 3000; i++) {
            kill(me, sig);
            usleep(i < 1000 ? 300 : 100);
        }
        _exit(0);
    }
    /* idle: the first 1000 signals arrive while nothing collects */
    lnode *keep = cgc_alloc(sizeof *keep);
    keep->check = 42;
    usleep(300 * 1000);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, gc_mutator, NULL);
    cgc_stats st0, st1;
    cgc_get_stats(&st0);
    int status;
    /* Collections back to back while the signals come, then until at least 10 were done
     * (a count, not a time: sanitizer builds on a loaded machine are slow). */
    int during = 0;
    while (waitpid(killer, &status, WNOHANG) == 0) {
        cgc_collect();
        cr_assert_eq(keep->check, 42);
        during++;
    }
    for (int i = during; i < 10; i++) cgc_collect();
    atomic_store(&sig_stop, 1);
    cgc_blocking_enter();
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    cgc_blocking_leave();
    cgc_collect(); /* every thread still answers a real stop */
    cgc_get_stats(&st1);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert(during >= 1, "no collection finished while the signals came");
    cr_assert(st1.gc_cycles >= st0.gc_cycles + 10, "only %llu cycles",
              (unsigned long long)(st1.gc_cycles - st0.gc_cycles));
    cr_assert_eq(keep->check, 42);
    cr_assert_eq(st1.errors, 0);
}

/* ---- RLIMIT_AS ------------------------------------------------------------------------------ */
static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    cr_assert(f && fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* With the address space capped 256 MiB above what is mapped now, allocation loops of every
 * size end in NULL + ENOMEM, never a crash; once freed, the memory is usable again. */
Test(hostile, allocation_under_rlimit_as_ends_in_enomem, .timeout = 120) {
    cgc_thread_register();
    void *warm = cgc_malloc(100);
    void *gwarm = cgc_alloc(100);
    cr_assert(warm && gwarm);
    struct rlimit rl = {vm_size() + (256u << 20), RLIM_INFINITY};
    rl.rlim_max = rl.rlim_cur;
    cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
    static const size_t sizes[] = {24, 3000, 40000, 1 << 20, 16 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        void **head = NULL; /* the blocks form a list through their first word */
        size_t n = 0;
        for (;;) {
            errno = 0;
            void **p = cgc_malloc(sizes[k]);
            if (!p) {
                cr_assert_eq(errno, ENOMEM, "size %zu: NULL with errno %d", sizes[k], errno);
                break;
            }
            *p = head;
            head = p;
            n++;
            cr_assert(n < ((size_t)2 << 30) / sizes[k], "size %zu: the limit never hit", sizes[k]);
        }
        cr_assert(n > 0, "size %zu: nothing allocated under the limit", sizes[k]);
        while (head) {
            void **next = *head;
            cgc_free(head);
            head = next;
        }
        cgc_release_memory();
        void *again = cgc_malloc(sizes[k]);
        cr_assert(again, "size %zu: no memory after freeing everything", sizes[k]);
        cgc_free(again);
    }
    /* The collected heap: objects kept reachable (a chain from a root) until NULL. */
    void **root = cgc_alloc(sizeof(void *));
    cgc_add_roots(&root, sizeof root);
    size_t n = 0;
    for (;;) {
        errno = 0;
        void **o = cgc_alloc(1 << 16);
        if (!o) {
            cr_assert_eq(errno, ENOMEM, "cgc_alloc: NULL with errno %d", errno);
            break;
        }
        *o = *root;
        *root = o;
        n++;
        cr_assert(n < 40000, "cgc_alloc: the limit never hit");
    }
    cr_assert(n > 100);
    *root = NULL; /* all garbage now: a collection frees it and allocation works again */
    cgc_collect();
    cr_assert(cgc_alloc(1 << 16));
    cr_assert_null(alloc_heap_check());
    cr_assert_eq(stat_errors(), 0);
}

/* ---- sizes near SIZE_MAX after warm-up --------------------------------------------------------- */
Test(hostile, sizes_near_size_max_after_warm_up) {
    cgc_thread_register();
    void *keep[64];
    for (int i = 0; i < 64; i++) keep[i] = cgc_malloc((size_t)i * 1531 + 1); /* warm-up */
    void *big = cgc_malloc(5 << 20);
    for (int i = 0; i < 100; i++) cr_assert(cgc_alloc(200));
    static const size_t offs[] = {0, 1, 7, 8, 15, 16, 31, 4095, 4096, 8191, 8192, 65535,
                                  (size_t)1 << 20, (size_t)1 << 32, (size_t)1 << 47,
                                  (size_t)1 << 48, (size_t)1 << 62, SIZE_MAX / 2 - 1};
    static const uint64_t map[1] = {1};
    static const cgc_type t = {16, 2, map, "near-max"};
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        size_t n = SIZE_MAX - offs[i];
        void *p = (void *)1;
        errno = 0;
        cr_assert_null(cgc_malloc(n), "malloc(SIZE_MAX - %zu)", offs[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(cgc_calloc(1, n));
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(cgc_calloc(n, 1));
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(cgc_calloc(n / 16 + 1, 16));
        cr_assert_eq(errno, ENOMEM);
        cr_assert_eq(cgc_posix_memalign(&p, 4096, n), ENOMEM);
        cr_assert_eq(p, (void *)1);
        errno = 0;
        cr_assert_null(cgc_aligned_alloc(64, n & ~(size_t)63));
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(cgc_memalign(1 << 20, n));
        errno = 0;
        cr_assert_null(cgc_realloc(keep[5], n));
        cr_assert_eq(errno, ENOMEM);
        cr_assert(cgc_usable_size(keep[5]) >= 5 * 1531 + 1, "realloc failure freed the block");
        errno = 0;
        cr_assert_null(cgc_realloc(big, n));
        cr_assert(cgc_usable_size(big) >= (5u << 20));
        errno = 0;
        cr_assert_null(cgc_alloc(n), "cgc_alloc(SIZE_MAX - %zu)", offs[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(cgc_alloc_leaf(n));
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(cgc_alloc_array(&t, n / 8 + 1), "array of SIZE_MAX/8 elements");
        cr_assert_eq(errno, ENOMEM);
    }
    for (int i = 0; i < 64; i++) cgc_free(keep[i]);
    cgc_free(big);
    void *p = cgc_malloc(100);
    cr_assert(p);
    cgc_free(p);
    cr_assert(cgc_alloc(100));
    cr_assert_null(alloc_heap_check());
    cr_assert_eq(stat_errors(), 0);
}

/* ---- regression (found by tests/fuzz): a page run that held a large collected object, once
 * reclaimed, came back as a malloc'd large block still marked collected: free() rejected it
 * and malloc_usable_size said 0. */
__attribute__((noinline)) static void make_large_garbage(void) {
    for (int i = 0; i < 8; i++) cr_assert(cgc_alloc(200000 + (size_t)i * 8192));
}

Test(hostile, large_malloc_block_on_a_reclaimed_collected_run) {
    cgc_thread_register();
    make_large_garbage();
    for (int i = 0; i < 3; i++) cgc_collect(); /* the runs go back to the page heap */
    uint64_t e0 = stat_errors();
    for (int i = 0; i < 64; i++) {
        size_t n = 33000 + (size_t)i * 4096;
        void *p = cgc_malloc(n);
        cr_assert(p);
        cr_assert(cgc_usable_size(p) >= n, "malloc(%zu): usable size %zu", n, cgc_usable_size(p));
        cgc_free(p);
    }
    cr_assert_eq(stat_errors(), e0);
}
