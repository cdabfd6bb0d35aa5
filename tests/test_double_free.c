/* Double and invalid free detection (README "Reliability").
 *
 * For every size class and several large sizes, in every arrangement of who frees first
 * and who frees again (the owner thread, another thread, a third thread; with the block on
 * the owner's hot list, on its span's free list, or pending as a remote free), a second free
 * of a block that is still free must be reported — every time, with one line — and ignored
 * (CGC_ON_ERROR=warn). Stray pointers (stack, global, misaligned, interior, glibc's, a
 * collected object, addresses that are not mapped at all) passed to free, realloc and
 * malloc_usable_size are reported or ignored and never followed into a crash.
 *
 * The messages go to fd 2, which these tests point at a temporary file (criterion's pipe
 * redirect would fill up) and read back to count the lines.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgc/internal.h"

static FILE *captured;
static int saved_fd2 = -1;

static void warn_and_capture(void) {
    setenv("CGC_ON_ERROR", "warn", 1);
    alloc_read_options(); /* the library constructor read the environment already */
    captured = tmpfile();
    cr_assert(captured);
    fflush(stderr);
    saved_fd2 = dup(2);
    dup2(fileno(captured), 2);
}

/* Restore fd 2; count captured lines containing `what`, and check that every line is one
 * well-formed report ("cgc: error: <what>: 0x... (pid N)"). */
static unsigned captured_lines(const char *what) {
    fflush(stderr);
    dup2(saved_fd2, 2);
    rewind(captured);
    char line[512];
    unsigned n = 0;
    while (fgets(line, sizeof line, captured)) {
        cr_assert(strncmp(line, "cgc: error: ", 12) == 0, "unexpected output: %s", line);
        cr_assert(strstr(line, " (pid ") && line[strlen(line) - 1] == '\n', "not one line: %s", line);
        if (strstr(line, what)) n++;
    }
    return n;
}

static uint64_t errors(void) {
    cgc_stats st;
    cgc_get_stats(&st);
    return st.errors;
}

/* Run fn(arg) on a fresh thread and wait for it. */
typedef struct job { void (*fn)(void *); void *arg; } job;
static void *job_main(void *j) {
    ((job *)j)->fn(((job *)j)->arg);
    return NULL;
}
static void in_thread(void (*fn)(void *), void *arg) {
    pthread_t t;
    job j = {fn, arg};
    cr_assert_eq(pthread_create(&t, NULL, job_main, &j), 0);
    pthread_join(t, NULL);
}
static void do_free(void *p) { cgc_free(p); }

/* A thread that allocates and returns a block (so the block's span belongs to it; the
 * thread then exits and its spans go to the central lists). */
typedef struct alloc_req { size_t n; void *p; } alloc_req;
static void do_alloc(void *r) {
    alloc_req *q = r;
    q->p = cgc_malloc(q->n);
}

static unsigned expected;

/* The second free of p (still free) must add exactly one error. */
static void expect_double_free(void (*how)(void *), void *p, const char *where, size_t n) {
    cr_assert_eq(cgc_usable_size(p), 0, "%s: block of %zu still live before the second free", where, n);
    uint64_t e0 = errors();
    how(p);
    cr_assert_eq(errors(), e0 + 1, "%s (size %zu): second free of %p not reported", where, n, p);
    expected++;
}
static void free_here(void *p) { cgc_free(p); }
static void free_other(void *p) { in_thread(do_free, p); }

/* Afterwards the class still hands out distinct, live blocks (the slot was not put on a free
 * list twice). */
static void class_still_sane(size_t n) {
    enum { K = 300 };
    void *v[K];
    for (int i = 0; i < K; i++) {
        v[i] = cgc_malloc(n);
        cr_assert(v[i] && cgc_usable_size(v[i]) >= n);
        memset(v[i], 0x5a, n);
    }
    for (int i = 0; i < K; i++)
        for (int j = i + 1; j < K; j++) cr_assert_neq(v[i], v[j], "slot handed out twice (size %zu)", n);
    for (int i = 0; i < K; i++) cgc_free(v[i]);
}

static void scenarios_for(size_t n) {
    void *p, *q[300];
    /* 1. owner frees twice: the block is on the owner's hot list */
    p = cgc_malloc(n);
    cgc_free(p);
    expect_double_free(free_here, p, "owner, owner (hot list)", n);
    /* 2. owner frees, the hot list is flushed (older half back to the span), owner again */
    for (int i = 0; i < 300; i++) q[i] = cgc_malloc(n);
    p = cgc_malloc(n);
    cgc_free(p);
    for (int i = 0; i < 300; i++) cgc_free(q[i]);
    expect_double_free(free_here, p, "owner, owner (span free list)", n);
    /* 3. owner frees (hot list), another thread frees again: a remote double free */
    p = cgc_malloc(n);
    cgc_free(p);
    expect_double_free(free_other, p, "owner, other thread (hot list)", n);
    /* 4. the same with the block back in its span */
    for (int i = 0; i < 300; i++) q[i] = cgc_malloc(n);
    p = cgc_malloc(n);
    cgc_free(p);
    for (int i = 0; i < 300; i++) cgc_free(q[i]);
    expect_double_free(free_other, p, "owner, other thread (span free list)", n);
    /* 5. another thread frees (pending remote free), the same other thread frees again */
    p = cgc_malloc(n);
    in_thread(do_free, p);
    expect_double_free(free_other, p, "other thread, other thread (remote pending)", n);
    /* 6. another thread frees, the owner frees again */
    p = cgc_malloc(n);
    in_thread(do_free, p);
    expect_double_free(free_here, p, "other thread, owner (remote pending)", n);
    /* 7. a block whose allocating thread has exited (span unowned, central list): freed by
     *    us, then again by us and by a third thread */
    alloc_req r = {n, NULL};
    in_thread(do_alloc, &r);
    cr_assert(r.p);
    cgc_free(r.p);
    expect_double_free(free_here, r.p, "dead owner: us, us", n);
    expect_double_free(free_other, r.p, "dead owner: us, third thread", n);
    class_still_sane(n);
}

Test(double_free, every_size_class_every_arrangement, .init = warn_and_capture, .timeout = 240) {
    expected = 0;
    for (unsigned c = 1; c < ALLOC_NCLASSES; c++) scenarios_for(alloc_classes[c].size);
    /* and sizes that are not a class's exact size: the smallest and mid-class */
    scenarios_for(1);
    scenarios_for(100);
    unsigned n = captured_lines("double free");
    cr_assert_eq(n, expected, "%u double-free lines for %u double frees", n, expected);
    cr_assert(expected >= 8 * (ALLOC_NCLASSES - 1));
    cr_assert_null(alloc_heap_check());
}

Test(double_free, large_blocks, .init = warn_and_capture, .timeout = 120) {
    static const size_t sizes[] = {ALLOC_SMALL_MAX + 1, 65536, 100000, 1 << 20, 5 << 20};
    expected = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        /* a neighbour on each side, so the freed run coalesces with neither, or with one */
        void *before = cgc_malloc(n), *p = cgc_malloc(n), *after = cgc_malloc(n);
        cgc_free(p);
        expect_double_free(free_here, p, "large: owner, owner", n);
        expect_double_free(free_other, p, "large: owner, other thread", n);
        cgc_free(before); /* now p's pages are inside a bigger free run */
        expect_double_free(free_here, p, "large: coalesced run", n);
        p = cgc_malloc(n);
        in_thread(do_free, p);
        expect_double_free(free_here, p, "large: other thread, owner", n);
        cgc_free(after);
    }
    unsigned n = captured_lines("double free");
    cr_assert_eq(n, expected, "%u double-free lines for %u double frees", n, expected);
    cr_assert_null(alloc_heap_check());
}

/* ---- invalid pointers --------------------------------------------------------------------- */
static int a_global[64];

/* free, realloc and usable_size of p: reported or ignored; never a crash, never a live
 * block handed back. */
static void stray(void *p, const char *what) {
    cr_assert_eq(cgc_usable_size(p), 0, "usable_size(%s) != 0", what);
    uint64_t e0 = errors();
    cgc_free(p);
    cr_assert_eq(errors(), e0 + 1, "free(%s) not reported", what);
    errno = 0;
    cr_assert_null(cgc_realloc(p, 64), "realloc(%s) returned a block", what);
    cr_assert_eq(errno, EINVAL, "realloc(%s): errno %d", what, errno);
    cr_assert_eq(errors(), e0 + 2, "realloc(%s) not reported", what);
}

Test(invalid_free, stray_pointers_are_reported_never_followed, .init = warn_and_capture) {
    int on_stack[4];
    stray(on_stack, "stack");
    stray(&a_global[3], "global");
    void *g = malloc(100); /* the C library's (or ASan's) block */
    stray(g, "glibc block");
    free(g);
    stray((void *)0x10, "near NULL");
    stray((void *)0x7fff00001000ull, "unmapped user address");
    stray((void *)0xffff800000001000ull, "kernel address");
    stray((void *)0x0000800000000000ull, "non-canonical address");
    stray((void *)(uintptr_t)-16, "top of the address space");

    size_t sizes[] = {16, 48, 1000, 32768, 100000, 3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        char *p = cgc_malloc(n);
        memset(p, 0x77, n);
        stray(p + 1, "misaligned");
        if (n >= 32) stray(p + 16, "interior");
        if (n >= 3 * ALLOC_PAGE_SIZE) stray(p + 2 * ALLOC_PAGE_SIZE, "interior page of a large block");
        stray(p + n + (n >= 3 << 20 ? ALLOC_PAGE_SIZE : 0) + 8, "past the end");
        for (size_t k = 0; k < n; k++) cr_assert_eq((unsigned char)p[k], 0x77, "block changed");
        cr_assert(cgc_usable_size(p) >= n, "block no longer live");
        cgc_free(p);
    }
    /* A collected object: reported (collected memory is never freed by hand). */
    cgc_thread_register();
    void *obj = cgc_alloc(64);
    stray(obj, "collected object");
    void *big = cgc_alloc(200000);
    stray(big, "large collected object");
    stray((char *)big + 16, "interior of a large collected object");
    unsigned n = captured_lines("");
    cr_assert(n > 0);
    cr_assert_null(alloc_heap_check());
    void *p = cgc_malloc(32); /* the heap still works */
    cr_assert(p);
    cgc_free(p);
}
