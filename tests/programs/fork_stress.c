/* fork() from the main thread while 8 threads allocate and free: the child must be
 * able to malloc/free (no allocator lock left held by a thread that does not exist in
 * the child) and must see the parent's heap intact. A hang in a child (> 10 s) or in
 * fork() itself (global alarm) is a failure, as is any non-zero child status. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* gettid */
#endif
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#define NTHREADS 8
#define NFORKS 200
#define CHILD_TIMEOUT_MS 10000
#define KEEP 32

static atomic_int stop;

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

/* Mostly small; rare large blocks are kept moderate because every mmap/munmap
 * contends with fork() for the address-space lock. */
static size_t rand_size(uint64_t *s) {
    uint64_t r = xorshift(s), pick = r % 1000;
    r >>= 10;
    if (pick < 900) return r % 512 + 1;
    if (pick < 999) return r % 16384 + 1;
    return r % (256 * 1024) + 1;
}

static void *churn(void *arg) {
    uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15u + 1;
    void *keep[KEEP] = {0};
    /* 9 busy threads on 2 cores starve the forking thread; lower the churners. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned i = xorshift(&seed) % KEEP;
        free(keep[i]);
        size_t n = rand_size(&seed);
        keep[i] = malloc(n);
        if (!keep[i]) { fprintf(stderr, "thread malloc(%zu) failed\n", n); abort(); }
        memset(keep[i], (int)(n & 0xFF), n < 256 ? n : 256);
    }
    for (int i = 0; i < KEEP; i++) free(keep[i]);
    return NULL;
}

static void on_alarm(int sig) {
    static const char msg[] = "fork_stress: parent hung (global alarm) -- fork() or malloc deadlock?\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
    _exit(3);
}

/* Blocks owned by the main thread before each fork; the child checks and frees them. */
static unsigned char *inherited[16];
static size_t inherited_len[16];

static int child(int iter) {
    for (int i = 0; i < 16; i++) {
        for (size_t k = 0; k < inherited_len[i]; k++)
            if (inherited[i][k] != (unsigned char)(iter + i + k)) return 10;
        free(inherited[i]);
    }
    uint64_t seed = (uint64_t)iter * 7 + 3;
    void *p[32];
    size_t n[32];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 32; i++) {
            n[i] = rand_size(&seed);
            p[i] = malloc(n[i]);
            if (!p[i]) return 11;
            memset(p[i], i + round, n[i]);
        }
        p[0] = realloc(p[0], n[0] * 2 + 1);
        if (!p[0]) return 12;
        for (int i = 0; i < 32; i++) {
            unsigned char *b = p[i];
            if (b[0] != (unsigned char)(i + round) || b[n[i] - 1] != (unsigned char)(i + round)) return 13;
            free(p[i]);
        }
    }
    return 0;
}

/* Returns 0 if the child exited 0 in time; kills it and returns -1 on a hang. */
static int wait_child(pid_t pid, int *status) {
    struct timespec ms = {0, 1000000};
    for (int waited = 0; waited < CHILD_TIMEOUT_MS; waited++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) return 0;
        if (r < 0) { perror("waitpid"); return -1; }
        nanosleep(&ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, status, 0);
    return -1;
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(120);
    pthread_t th[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        if (pthread_create(&th[i], NULL, churn, (void *)(i + 1)) != 0) { perror("pthread_create"); return 1; }

    int failures = 0;
    for (int iter = 0; iter < NFORKS && failures == 0; iter++) {
        for (int i = 0; i < 16; i++) {
            inherited_len[i] = (size_t)(iter * 131 + i * 977) % 20000 + 1;
            inherited[i] = malloc(inherited_len[i]);
            if (!inherited[i]) { fprintf(stderr, "malloc failed\n"); return 1; }
            for (size_t k = 0; k < inherited_len[i]; k++) inherited[i][k] = (unsigned char)(iter + i + k);
        }
        fflush(NULL); /* no duplicated stdio buffers in children */
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) _exit(child(iter));
        for (int i = 0; i < 16; i++) free(inherited[i]);
        int status = 0;
        if (wait_child(pid, &status) != 0) {
            fprintf(stderr, "fork %d: child %d hung for more than %d ms (killed)\n", iter, (int)pid, CHILD_TIMEOUT_MS);
            failures++;
        } else if (WIFSIGNALED(status)) {
            fprintf(stderr, "fork %d: child killed by signal %d\n", iter, WTERMSIG(status));
            failures++;
        } else if (WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork %d: child exited with status %d (10: inherited block corrupt, "
                    "11/12: allocation failed, 13: content check failed)\n", iter, WEXITSTATUS(status));
            failures++;
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    if (failures) return 1;
    printf("fork_stress: %d forks with %d allocating threads ok\n", NFORKS, NTHREADS);
    return 0;
}
