/* trace_stress.c — the trace file's lock-free buffer under contention (gc/tracefile.c).
 *
 *   trace_stress [-t THREADS] [-n EVENTS] [-s SLEEP_US] FILE
 *
 * THREADS threads record EVENTS spans each as fast as they can (numbered 1..EVENTS in the
 * cycle field) while the main thread flushes in a loop, so chunks are swapped under writers
 * all the time; with -s it sleeps between flushes, so chunks fill up and records are dropped
 * (the path where one reservation crosses the end of the chunk). The file is then read back: every line
 * must be a whole record (nothing torn or interleaved), each thread's records must appear in
 * the order it made them, and records written + records the file reports as dropped must
 * equal THREADS x EVENTS. Built twice: against libcgc.a and, with ThreadSanitizer, from the
 * sources, which checks the memory orders of the reservation / writers / swap protocol.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgc/internal.h"
#include "cgc/trace.h"

static int nthreads = 4;
static long nevents = 100000;
static long sleep_us;
static atomic_int running;

static void *writer(void *arg) {
    (void)arg;
    for (long i = 1; i <= nevents; i++) {
        uint64_t t = plat_now_ns();
        trace_span((uint64_t)i, "stress", "worker", t, t + 1);
    }
    atomic_fetch_sub(&running, 1);
    return NULL;
}

typedef struct seen {
    long tid, last, count;
} seen;

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "t:n:s:")) != -1) {
        if (opt == 't') nthreads = atoi(optarg);
        else if (opt == 's') sleep_us = atol(optarg);
        else if (opt == 'n') nevents = atol(optarg);
        else return 2;
    }
    if (optind != argc - 1 || nthreads < 1 || nthreads > 64 || nevents < 1) {
        fprintf(stderr, "usage: trace_stress [-t THREADS] [-n EVENTS] [-s SLEEP_US] FILE\n");
        return 2;
    }
    const char *path = argv[optind];
    unlink(path);
    setenv("CGC_TRACE_FILE", path, 1);
    trace_file_init();
    if (!trace_file_enabled()) {
        fprintf(stderr, "trace_stress: trace file not enabled\n");
        return 1;
    }
    pthread_t t[64];
    atomic_store(&running, nthreads);
    for (int i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, writer, NULL);
    long flushes = 0;
    while (atomic_load(&running) > 0) {
        trace_file_flush();
        flushes++;
        if (sleep_us) usleep((useconds_t)sleep_us);
    }
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
    trace_file_flush();

    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    static char line[4096];
    seen s[65] = {{0}};
    int ns = 0, bad = 0;
    long dropped = 0, written = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len == 2 && line[0] == '[') continue;
        if (len < 3 || line[0] != '{' || strcmp(line + len - 3, "},\n") != 0) {
            if (bad++ < 5) fprintf(stderr, "trace_stress: torn line: %s", line);
            continue;
        }
        const char *d = strstr(line, "\"dropped\":");
        if (d) dropped += atol(d + 10);
        if (!strstr(line, "\"name\":\"stress\"")) continue;
        const char *tp = strstr(line, "\"tid\":"), *cp = strstr(line, "\"cycle\":");
        if (!tp || !cp || strstr(cp + 1, "\"name\"")) { /* two records run together */
            if (bad++ < 5) fprintf(stderr, "trace_stress: malformed: %s", line);
            continue;
        }
        long tid = atol(tp + 6), cyc = atol(cp + 8);
        int k = 0;
        while (k < ns && s[k].tid != tid) k++;
        if (k == ns) {
            if (ns == 64) return 1;
            s[ns++] = (seen){tid, 0, 0};
        }
        if (cyc <= s[k].last) {
            if (bad++ < 5)
                fprintf(stderr, "trace_stress: tid %ld: record %ld after %ld\n", tid, cyc, s[k].last);
        }
        s[k].last = cyc;
        s[k].count++;
        written++;
    }
    fclose(f);
    long want = (long)nthreads * nevents;
    printf("trace_stress: %d threads x %ld records, %ld flushes: %ld written, %ld dropped "
           "(buffer full), %d bad lines\n", nthreads, nevents, flushes, written, dropped, bad);
    if (bad || written + dropped != want || ns > nthreads || (sleep_us && dropped == 0)) {
        fprintf(stderr, "trace_stress: FAILED: written + dropped = %ld, want %ld\n",
                written + dropped, want);
        return 1;
    }
    return 0;
}
