/* trace_demo.c — a GC-heavy program to trace: `make run` shows its trace, and the trace-file
 * test checks the file it leaves.
 *
 *   trace_demo [--threads N] [--ms MS] [--fork] [--stats FILE]
 *
 * N registered threads (default 4) build binary trees on the collected heap for MS
 * milliseconds (default 500): each keeps a window of a few large trees alive (the live heap)
 * and throws away many small ones (the garbage the pacer collects). The main thread calls
 * cgc_collect() every 50 ms as well. --fork: halfway through, the main thread forks a child
 * that allocates and collects on its own (its trace goes to its own file). At the end, the
 * statistics the program saw (cycles, total stopped time) are printed to stdout, and written
 * to FILE with --stats, for comparison with the trace.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cgc.h>

typedef struct node {
    struct node *left, *right;
    long value;
} node;

static node *tree(int depth) {
    node *n = cgc_alloc(sizeof(node));
    n->value = depth;
    if (depth > 0) {
        n->left = tree(depth - 1);
        n->right = tree(depth - 1);
    }
    return n;
}

static long count(const node *n) { return n ? 1 + count(n->left) + count(n->right) : 0; }

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double run_ms = 500;
static volatile long checksum;

/* Allocate until `until`: a window of 3 big trees (live), small trees in between (garbage). */
static void churn(double until, unsigned seed) {
    node *window[3] = {0}; /* on this stack: a root */
    for (unsigned i = 0; now_ms() < until; i++) {
        window[i % 3] = tree(12 + (int)((seed + i) % 2));
        for (int k = 0; k < 64; k++) { /* garbage, used a while before it is dropped */
            node *t = tree(6);
            for (int r = 0; r < 6; r++) checksum += count(t);
        }
    }
    for (int i = 0; i < 3; i++) checksum += count(window[i]);
}

static void *worker(void *arg) {
    cgc_thread_register();
    churn(now_ms() + run_ms, (unsigned)(size_t)arg);
    cgc_thread_unregister();
    return NULL;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    cgc_blocking_enter(); /* a collection need not wait for a sleeping thread */
    nanosleep(&ts, NULL);
    cgc_blocking_leave();
}

int main(int argc, char **argv) {
    int threads = 4, do_fork = 0;
    const char *stats_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc) run_ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--fork")) do_fork = 1;
        else if (!strcmp(argv[i], "--stats") && i + 1 < argc) stats_path = argv[++i];
        else {
            fprintf(stderr, "usage: trace_demo [--threads N] [--ms MS] [--fork] [--stats FILE]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64) threads = 4;
    cgc_thread_register();
    pthread_t t[64];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(size_t)i);
    double start = now_ms();
    int forked = 0;
    while (now_ms() - start < run_ms) {
        sleep_ms(50);
        cgc_collect();
        if (do_fork && !forked && now_ms() - start >= run_ms / 2) {
            forked = 1;
            pid_t pid = fork();
            if (pid == 0) { /* the child: one thread, its own heap and trace */
                for (int i = 0; i < 3; i++) {
                    checksum += count(tree(14));
                    cgc_collect();
                }
                exit(0); /* exit, not _exit: the trace is flushed and closed */
            }
            int status = 0;
            cgc_blocking_enter();
            waitpid(pid, &status, 0);
            cgc_blocking_leave();
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "trace_demo: child failed (status %d)\n", status);
                return 1;
            }
        }
    }
    cgc_blocking_enter();
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    cgc_blocking_leave();
    cgc_collect();
    cgc_stats st;
    cgc_get_stats(&st);
    char line[200];
    snprintf(line, sizeof line, "cycles %llu pause_total_ns %llu pause_max_ns %llu\n",
             (unsigned long long)st.gc_cycles, (unsigned long long)st.gc_pause_total_ns,
             (unsigned long long)st.gc_pause_max_ns);
    fputs(line, stdout);
    if (stats_path) {
        FILE *f = fopen(stats_path, "w");
        if (f == NULL || fputs(line, f) < 0 || fclose(f) != 0) {
            perror(stats_path);
            return 1;
        }
    }
    return 0;
}
