/* walk_fp.c — part of walk_frames (see there), built with -fno-omit-frame-pointer. */
#include <stddef.h>
void *vla_frame(int n);
void *fp_chain(int depth, int n, int lose);

__attribute__((noinline)) void *fp_chain(int depth, int n, int lose) {
    void *p = depth == 0 ? vla_frame(n) : fp_chain(depth - 1, n, lose);
    if (lose && depth == 20) { /* the top of the lost block's chain: drop every reference */
        *(volatile char *)p = 1;
        return NULL;
    }
    return p;
}
