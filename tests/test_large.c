/* Large objects (> 32 KiB): whole spans from the page heap. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "cgc/internal.h"

Test(large, sizes_alignment_usable_and_content) {
    size_t sizes[] = {32769, 40000, 65536, 100000, 1 << 20, (1 << 20) + 1, 10 << 20,
                      (64 << 20) + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        unsigned char *p = cgc_malloc(n);
        cr_assert(p, "malloc(%zu)", n);
        cr_assert_eq((uintptr_t)p % ALLOC_PAGE_SIZE, 0);
        cr_assert(cgc_usable_size(p) >= n);
        cr_assert(cgc_usable_size(p) < n + ALLOC_PAGE_SIZE);
        memset(p, 0xab, n);
        cr_assert_eq(p[n - 1], 0xab);
        cgc_free(p);
    }
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.large_bytes, 0);
    cr_assert_eq(st.large_count, 8);
}

Test(large, calloc_is_zero_even_when_pages_are_reused) {
    for (int round = 0; round < 5; round++) {
        size_t n = 300000 + (size_t)round * 1000;
        unsigned char *p = cgc_calloc(1, n);
        cr_assert(p);
        for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], 0, "round %d byte %zu", round, i);
        memset(p, 0x5a, n); /* dirty the pages for the next round */
        cgc_free(p);
    }
}

Test(large, realloc_grows_and_shrinks_keeping_content) {
    size_t n = 16;
    unsigned char *p = cgc_malloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)i;
    while (n < (8u << 20)) {
        size_t m = n * 3 / 2 + 7;
        p = cgc_realloc(p, m);
        cr_assert(p);
        for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], (unsigned char)i, "byte %zu after %zu", i, m);
        for (size_t i = n; i < m; i++) p[i] = (unsigned char)i;
        n = m;
    }
    p = cgc_realloc(p, 100); /* shrink back to a small class */
    for (size_t i = 0; i < 100; i++) cr_assert_eq(p[i], (unsigned char)i);
    cr_assert(cgc_usable_size(p) < 1000);
    cgc_free(p);
}

Test(large, interior_pointer_of_large_block_is_rejected, .signal = SIGABRT) {
    char *p = cgc_malloc(100000);
    cgc_free(p + 4096);
}

Test(large, double_free_of_large_block_is_detected, .signal = SIGABRT) {
    char *p = cgc_malloc(100000);
    cgc_free(p);
    cgc_free(p);
}
