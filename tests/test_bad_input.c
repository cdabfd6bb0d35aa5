/* Bad input gets a C-library answer (NULL + errno) or one line and an abort; never a crash
 * and never a corrupted heap. */
#include <criterion/criterion.h>
#include <signal.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cgc/internal.h"

Test(bad_input, malloc_huge_is_enomem) {
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, (size_t)1 << 50, (size_t)1 << 47};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        errno = 0;
        cr_assert_null(cgc_malloc(sizes[i]), "malloc(%zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM);
    }
    void *p = cgc_malloc(10); /* still works */
    cr_assert(p);
    cgc_free(p);
}

Test(bad_input, calloc_overflow_is_enomem) {
    errno = 0;
    cr_assert_null(cgc_calloc(SIZE_MAX / 2, 3));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(cgc_calloc((size_t)1 << 33, (size_t)1 << 33));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(cgc_reallocarray(NULL, SIZE_MAX, 2));
    cr_assert_eq(errno, ENOMEM);
}

Test(bad_input, realloc_huge_keeps_the_old_block) {
    size_t sizes[] = {24, 5000, 200000};
    for (size_t k = 0; k < 3; k++) {
        unsigned char *p = cgc_malloc(sizes[k]);
        memset(p, 0x3c, sizes[k]);
        errno = 0;
        cr_assert_null(cgc_realloc(p, SIZE_MAX - 10));
        cr_assert_eq(errno, ENOMEM);
        for (size_t i = 0; i < sizes[k]; i++) cr_assert_eq(p[i], 0x3c);
        cr_assert(cgc_usable_size(p) >= sizes[k], "old block still live");
        cgc_free(p);
    }
}

Test(bad_input, posix_memalign_bad_alignment_is_einval_and_leaves_out_alone) {
    size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4097, SIZE_MAX, ((size_t)1 << 63) + 8};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *out = (void *)0x1234;
        cr_assert_eq(cgc_posix_memalign(&out, bad[i], 100), EINVAL, "align %zu", bad[i]);
        cr_assert_eq(out, (void *)0x1234, "align %zu touched *out", bad[i]);
    }
    void *out = (void *)0x1234;
    cr_assert_eq(cgc_posix_memalign(&out, (size_t)1 << 62, 100), ENOMEM);
    cr_assert_eq(out, (void *)0x1234);
    errno = 0;
    cr_assert_null(cgc_aligned_alloc(24, 100));
    cr_assert_eq(errno, EINVAL);
}

Test(bad_input, free_preserves_errno) {
    void *p = cgc_malloc(100), *q = cgc_malloc(100000);
    errno = 1234;
    cgc_free(p);
    cgc_free(q);
    cgc_free(NULL);
    cr_assert_eq(errno, 1234);
    (void)cgc_release_memory();
    cr_assert_eq(errno, 1234);
}

static void redirect(void) { cr_redirect_stderr(); }

Test(bad_input, double_free_aborts_with_one_line, .signal = SIGABRT, .init = redirect) {
    void *p = cgc_malloc(32);
    cgc_free(p);
    cgc_free(p);
}

Test(bad_input, interior_free_aborts, .signal = SIGABRT) {
    char *p = cgc_malloc(64);
    cgc_free(p + 16);
}

Test(bad_input, free_of_stack_pointer_aborts_cleanly, .signal = SIGABRT) {
    int x;
    cgc_free(&x);
}

static int a_global;
Test(bad_input, free_of_global_aborts_cleanly, .signal = SIGABRT) { cgc_free(&a_global); }

Test(bad_input, free_of_glibc_block_aborts_cleanly, .signal = SIGABRT) {
    cgc_init();
    void *g = malloc(100); /* glibc's: this test binary does not override malloc */
    cgc_free(g);
}

static void warn_mode(void) {
    setenv("CGC_ON_ERROR", "warn", 1);
    alloc_read_options(); /* the library constructor read the environment already */
    cr_redirect_stderr();
}

Test(bad_input, warn_mode_reports_and_continues, .init = warn_mode) {
    int x;
    char *p = cgc_malloc(32);
    char *big = cgc_malloc(100000);
    cgc_free(p);
    cgc_free(p);        /* double free */
    cgc_free(big);
    cgc_free(big);      /* double free, large */
    cgc_free(&x);       /* foreign */
    char *q = cgc_malloc(64);
    cgc_free(q + 8);    /* interior */
    errno = 0;
    cr_assert_null(cgc_realloc(&x, 10));
    cr_assert_eq(cgc_usable_size(&x), 0);
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.errors, 5, "errors %llu", (unsigned long long)st.errors);
    /* The heap still works and the double-freed slot is handed out once, not twice. */
    char *a = cgc_malloc(32), *b = cgc_malloc(32);
    cr_assert_neq(a, b);
    fflush(stderr);
    cr_assert_stderr_neq_str("");
}

Test(bad_input, error_message_names_the_pointer, .init = warn_mode) {
    char *p = cgc_malloc(32);
    cgc_free(p);
    cgc_free(p);
    char expect[128];
    snprintf(expect, sizeof expect, "cgc: error: double free: %p (pid %d)\n", (void *)p, (int)getpid());
    fflush(stderr);
    cr_assert_stderr_eq_str(expect);
}
