/* leaky_loop.c [ITERATIONS [reuse]] — loses 1 MiB per iteration (10,000 by default) and prints a
 * checksum of what it wrote. Under CGC_LEAKS=collect its peak RSS must stay bounded (the
 * lost blocks are freed by leak cycles); it prints VmHWM (peak RSS) on stderr at exit so
 * tests/leaks/check_collect.py can check that, and the checksum on stdout must not change.
 * With "reuse" it writes one block over and over instead: the same output without a leak
 * (the reference run). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define escape(p) __asm__ volatile("" : : "r"(p) : "memory")

static long vm_hwm_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000;
    int reuse = argc > 2 && strcmp(argv[2], "reuse") == 0;
    unsigned char *one = NULL;
    const size_t mib = (size_t)1 << 20;
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        unsigned char *p = reuse && one ? one : malloc(mib);
        if (p == NULL) {
            fprintf(stderr, "leaky_loop: out of memory at iteration %ld\n", i);
            return 1;
        }
        memset(p, (int)(i & 0xff), mib);
        escape(p);
        sum = sum * 31 + p[(size_t)i * 4099 % mib] + i;
        if (reuse) one = p;
        /* else p is dropped here: lost */
    }
    printf("iterations %ld checksum %lu\n", n, sum);
    fprintf(stderr, "leaky_loop: VmHWM %ld KiB\n", vm_hwm_kib());
    return 0;
}
