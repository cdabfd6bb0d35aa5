/* walk_frames: allocations under the frame shapes the leak-mode stack walker (gc/leak_walk.c)
 * must follow exactly as libunwind does, on two threads, many times (so its cached rules and
 * caller hints are reused and sometimes wrong):
 *   leaf_alloc  ordinary -O2 code: CFA = rsp + constant, rbp untouched
 *   vla_frame   a frame sized at run time (alloca): CFA = rbp + 16 (rbp is its frame pointer)
 *   fp_chain    built with -fno-omit-frame-pointer (walk_fp.c), 20 deep: every frame saves the
 *               caller's rbp, which the walk must restore to find the next CFA
 * One block is lost (its pointer dropped) on the main thread: check_walk.py names its stack.
 * Built without inlining or sibling calls, symbols exported, so every frame shows by name. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

void *fp_chain(int depth, int n, int lose);
void *leaf_alloc(size_t n);
void *vla_frame(int n);

__attribute__((noinline)) void *leaf_alloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) abort();
    return p;
}

__attribute__((noinline)) void *vla_frame(int n) {
    volatile char *buf = __builtin_alloca((size_t)n); /* the frame is addressed from rbp */
    buf[0] = (char)n;
    void *p = leaf_alloc(16 + (size_t)buf[0]);
    buf[n - 1] = 0;
    return p;
}

static void *run(void *arg) {
    int lose = arg != NULL;
    for (int i = 0; i < 2000; i++) {
        void *p = fp_chain(20 + i % 3, 8 + i % 5, lose && i == 0);
        if (p) free(p);
    }
    return NULL;
}

int main(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, run, NULL) != 0) return 1;
    run((void *)1);
    if (pthread_join(t, NULL) != 0) return 1;
    puts("done");
    return 0;
}
