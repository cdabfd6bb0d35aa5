/* hostile_fork.c — fork at the worst moments (README "Reliability", hostile cases).
 *
 *   -m threads (default): 8 registered threads allocate (malloc'd and collected blocks) while
 *      one of them collects in a loop, so a collection is in progress or about to start at
 *      most forks; the main thread forks N times. Each child allocates, frees, builds a
 *      collected list, collects, checks the list and exits — within 5 s, or it counts as a
 *      hang (killed). The parent checks its own blocks after every fork.
 *   -m signal: the forks come from a SIGALRM handler (setitimer, every 2 ms) that interrupts
 *      the main thread wherever it is — inside malloc, inside a collected allocation, inside
 *      a collection it started — while 4 other threads allocate. fork() must return in both
 *      processes (no allocator or collector lock taken twice by the same thread); the child
 *      of a fork from a signal handler may only use async-signal-safe functions (POSIX), so
 *      it writes one byte and _exits. A watchdog aborts after 10 s without progress.
 *
 * Plain C (not criterion): it runs for minutes in its long form and forks constantly.
 * Links the static library (cgc_* calls). Exit status 0: every fork completed in time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgc.h"

#define NTHREADS 8
#define CHILD_LIMIT_MS 5000
#define KEEP 64

static atomic_int stop;
static atomic_ulong progress;

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

static size_t rand_size(uint64_t *s) {
    uint64_t r = xorshift(s);
    if (r % 100 < 90) return (size_t)(r >> 8) % 512 + 1;
    if (r % 100 < 99) return (size_t)(r >> 8) % 20000 + 1;
    return (size_t)(r >> 8) % (200 * 1024) + 1;
}

typedef struct node { struct node *next; uint64_t tag; uint64_t pad[2]; } node;

static void die(const char *msg) {
    fprintf(stderr, "hostile_fork: FAIL: %s\n", msg);
    abort();
}

/* A worker: malloc'd blocks with their size in the first byte pattern, and a collected
 * list held on this stack. Thread 0 also collects continuously. */
static void *worker(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM); /* the fork-from-handler signal goes to the main thread */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    cgc_thread_register();
    uint64_t seed = id * 0x9E3779B97F4A7C15ull + 7;
    unsigned char *keep[KEEP] = {0};
    size_t len[KEEP] = {0};
    node *list = NULL;
    unsigned nlist = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (id == 0) {
            cgc_collect();
            atomic_fetch_add(&progress, 1);
            continue;
        }
        unsigned i = (unsigned)(xorshift(&seed) % KEEP);
        if (keep[i]) {
            for (size_t k = 0; k < len[i]; k += 64)
                if (keep[i][k] != (unsigned char)(len[i] + k)) die("worker: malloc'd block changed");
            cgc_free(keep[i]);
        }
        len[i] = rand_size(&seed);
        keep[i] = cgc_malloc(len[i]);
        if (!keep[i]) die("worker: malloc failed");
        for (size_t k = 0; k < len[i]; k += 64) keep[i][k] = (unsigned char)(len[i] + k);
        node *n = cgc_alloc(sizeof *n);
        if (!n) die("worker: cgc_alloc failed");
        n->tag = (uint64_t)(uintptr_t)n ^ 0xfeed;
        n->next = nlist < 500 ? list : NULL; /* drop the old list now and then: garbage */
        nlist = nlist < 500 ? nlist + 1 : 0;
        list = n;
        for (node *m = list; m; m = m->next)
            if (m->tag != ((uint64_t)(uintptr_t)m ^ 0xfeed)) die("worker: collected node changed");
        atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
    }
    for (unsigned i = 0; i < KEEP; i++) cgc_free(keep[i]);
    return NULL;
}

/* The child of an ordinary fork: the whole API must work. */
static int child_main(void) {
    void *p[256];
    for (int r = 0; r < 4; r++) {
        for (int i = 0; i < 256; i++) {
            p[i] = cgc_malloc((size_t)(i * 37 % 3000) + 1);
            if (!p[i]) return 11;
            memset(p[i], i, (size_t)(i * 37 % 3000) + 1);
        }
        for (int i = 0; i < 256; i++) {
            if (((unsigned char *)p[i])[0] != (unsigned char)i) return 12;
            cgc_free(p[i]);
        }
    }
    node *list = NULL;
    for (int i = 0; i < 2000; i++) {
        node *n = cgc_alloc(sizeof *n);
        if (!n) return 13;
        n->tag = (uint64_t)i;
        n->next = list;
        list = n;
    }
    cgc_collect();
    int i = 1999;
    for (node *m = list; m; m = m->next, i--)
        if (m->tag != (uint64_t)i) return 14;
    if (i != -1) return 15;
    cgc_stats st;
    cgc_get_stats(&st);
    if (st.errors) return 16;
    return 0;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 0: exited 0 in time; 1: hung (killed); 2: failed. */
static int reap(pid_t pid, int iter) {
    long t0 = now_ms();
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) { perror("waitpid"); return 2; }
        if (now_ms() - t0 > CHILD_LIMIT_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "hostile_fork: fork %d: child hung for %d ms (killed)\n", iter, CHILD_LIMIT_MS);
            return 1;
        }
        struct timespec ms = {0, 1000000};
        cgc_blocking_enter(); /* a collection need not wait for us */
        nanosleep(&ms, NULL);
        cgc_blocking_leave();
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "hostile_fork: fork %d: child killed by signal %d\n", iter, WTERMSIG(status));
        return 2;
    }
    if (WEXITSTATUS(status)) {
        fprintf(stderr, "hostile_fork: fork %d: child exited %d (11-13 allocation failed, "
                "14/15 collected list broken, 16 errors reported)\n", iter, WEXITSTATUS(status));
        return 2;
    }
    return 0;
}

/* ---- -m signal ------------------------------------------------------------------------------ */
static atomic_int sig_forks, sig_fork_failed;
static pid_t sig_children[64];
static atomic_int sig_nchildren;

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    if (atomic_load(&sig_nchildren) < 64) {
        pid_t pid = fork();
        if (pid == 0) {
            char c = 'x';
            if (write(STDOUT_FILENO, &c, 0) < 0) _exit(3); /* async-signal-safe only */
            _exit(0);
        }
        if (pid < 0) atomic_fetch_add(&sig_fork_failed, 1);
        else sig_children[atomic_fetch_add(&sig_nchildren, 1)] = pid;
        atomic_fetch_add(&sig_forks, 1);
    }
    errno = saved;
}

static void *watchdog(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    unsigned long last = (unsigned long)-1;
    int still = 0;
    while (!atomic_load(&stop)) {
        sleep(1);
        unsigned long p = atomic_load(&progress) + (unsigned long)atomic_load(&sig_forks);
        still = p == last ? still + 1 : 0;
        last = p;
        if (still >= 10) {
            fprintf(stderr, "hostile_fork: FAIL: no progress for 10 s (a fork from a signal "
                    "handler deadlocked?)\n");
            abort();
        }
    }
    return NULL;
}

static int run_signal(int nforks) {
    pthread_t th[4], wd;
    atomic_store(&stop, 0);
    pthread_create(&wd, NULL, watchdog, NULL); /* never registered: never stopped */
    for (unsigned i = 0; i < 4; i++) pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_REAL, &it, NULL);
    uint64_t seed = 99;
    void *keep[32] = {0};
    node *list = NULL;
    unsigned n = 0, reaped = 0;
    while ((int)reaped < nforks) {
        /* The handler interrupts this loop anywhere: malloc, free, cgc_alloc, cgc_collect. */
        unsigned i = (unsigned)(xorshift(&seed) % 32);
        cgc_free(keep[i]);
        keep[i] = cgc_malloc(rand_size(&seed));
        node *m = cgc_alloc(sizeof *m);
        m->next = ++n % 300 ? list : NULL;
        list = m;
        if (n % 512 == 0) cgc_collect();
        atomic_fetch_add_explicit(&progress, 1, memory_order_relaxed);
        if (atomic_load(&sig_nchildren) >= 16) { /* reap with the timer held off */
            sigset_t s, old;
            sigemptyset(&s);
            sigaddset(&s, SIGALRM);
            pthread_sigmask(SIG_BLOCK, &s, &old);
            int k = atomic_load(&sig_nchildren);
            for (int c = 0; c < k; c++) {
                if (reap(sig_children[c], (int)reaped) != 0) return 1;
                reaped++;
            }
            atomic_store(&sig_nchildren, 0);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int c = 0; c < atomic_load(&sig_nchildren); c++) waitpid(sig_children[c], NULL, 0);
    atomic_store(&stop, 1);
    for (unsigned i = 0; i < 4; i++) pthread_join(th[i], NULL);
    pthread_join(wd, NULL);
    for (unsigned i = 0; i < 32; i++) cgc_free(keep[i]);
    if (atomic_load(&sig_fork_failed)) {
        fprintf(stderr, "hostile_fork: %d forks from the handler failed\n", atomic_load(&sig_fork_failed));
        return 1;
    }
    printf("hostile_fork: signal: %u forks from a signal handler, 0 hangs, 0 failures\n", reaped);
    return 0;
}

static int run_threads(int nforks) {
    pthread_t th[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i);
    unsigned char *mine = cgc_malloc(4096);
    memset(mine, 0xab, 4096);
    int hangs = 0, failures = 0;
    for (int iter = 0; iter < nforks; iter++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); failures++; break; }
        if (pid == 0) _exit(child_main());
        int r = reap(pid, iter);
        hangs += r == 1;
        failures += r == 2;
        for (int k = 0; k < 4096; k++)
            if (mine[k] != 0xab) die("parent: block changed across fork");
        if (hangs + failures > 5) break;
    }
    atomic_store(&stop, 1);
    cgc_blocking_enter();
    for (unsigned i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    cgc_blocking_leave();
    cgc_free(mine);
    cgc_stats st;
    cgc_get_stats(&st);
    printf("hostile_fork: threads: %d forks with %d threads allocating and collecting "
           "(%llu collections), %d hangs, %d failures\n",
           nforks, NTHREADS, (unsigned long long)st.gc_cycles, hangs, failures);
    return hangs || failures;
}

int main(int argc, char **argv) {
    int nforks = 1000, opt;
    const char *mode = "threads";
    while ((opt = getopt(argc, argv, "n:m:")) != -1) {
        if (opt == 'n') nforks = atoi(optarg);
        else if (opt == 'm') mode = optarg;
        else {
            fprintf(stderr, "usage: %s [-n forks] [-m threads|signal]\n", argv[0]);
            return 2;
        }
    }
    cgc_thread_register();
    if (strcmp(mode, "signal") == 0) return run_signal(nforks);
    return run_threads(nforks);
}
