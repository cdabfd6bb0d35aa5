/* malloc_usable_size >= n, and alignment, for every size and alignment tried. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "cgc/internal.h"

Test(usable, every_size_up_to_70000) {
    for (size_t n = 0; n <= 70000; n += (n < 4096 ? 1 : 61)) {
        unsigned char *p = cgc_malloc(n);
        cr_assert(p, "malloc(%zu)", n);
        size_t u = cgc_usable_size(p);
        cr_assert(u >= n, "usable %zu < %zu", u, n);
        cr_assert_eq((uintptr_t)p % 16, 0, "malloc(%zu) = %p not 16-aligned", n, (void *)p);
        memset(p, 0xee, u); /* the whole usable size is ours */
        cgc_free(p);
    }
}

Test(usable, every_alignment_and_size) {
    for (size_t align = 8; align <= ((size_t)1 << 20); align *= 2) {
        for (size_t n = 1; n < 300000; n = n * 3 + 1) {
            void *p = NULL;
            cr_assert_eq(cgc_posix_memalign(&p, align, n), 0, "align %zu n %zu", align, n);
            cr_assert_eq((uintptr_t)p % align, 0, "posix_memalign(%zu, %zu) = %p", align, n, p);
            cr_assert(cgc_usable_size(p) >= n);
            memset(p, 1, n);
            void *q = cgc_aligned_alloc(align, n);
            cr_assert_eq((uintptr_t)q % align, 0);
            cr_assert(cgc_usable_size(q) >= n);
            void *r = cgc_memalign(align, n);
            cr_assert_eq((uintptr_t)r % align, 0);
            cr_assert(cgc_usable_size(r) >= n);
            cgc_free(p);
            cgc_free(q);
            cgc_free(r);
        }
    }
}

Test(usable, memalign_rounds_odd_alignment_up) {
    void *p = cgc_memalign(48, 10);
    cr_assert(p);
    cr_assert_eq((uintptr_t)p % 64, 0);
    cgc_free(p);
}

Test(usable, calloc_every_small_size_is_zero) {
    for (size_t n = 1; n <= 4096; n++) {
        unsigned char *d = cgc_malloc(n);
        memset(d, 0xff, n);
        cgc_free(d); /* the next calloc of this class gets the dirty slot back */
        unsigned char *p = cgc_calloc(1, n);
        for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], 0, "calloc(%zu) byte %zu", n, i);
        cgc_free(p);
    }
}

Test(usable, realloc_small_keeps_content_across_classes) {
    unsigned char *p = NULL;
    size_t old = 0;
    for (size_t n = 1; n < 40000; n += 37) {
        p = cgc_realloc(p, n);
        cr_assert(p);
        for (size_t i = 0; i < old && i < n; i++) cr_assert_eq(p[i], (unsigned char)(i * 7));
        for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 7);
        old = n;
    }
    cr_assert_null(cgc_realloc(p, 0), "realloc(p, 0) frees and returns NULL, as glibc");
}
