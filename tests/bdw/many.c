/* many.c — GC_generic_malloc_many on cgc's libgc.so.1 (libcgc-bdw.so), as Guile uses it: a
 * list of objects linked through their first word, for the pointer-free and the normal kind.
 *
 * Checks, for several sizes, across collections: every object of a list is zeroed apart from
 * its link word, starts an object (GC_base), is at least as large as asked (GC_size), and no
 * two live objects overlap — also after objects are freed (GC_free, collection) and their
 * slots handed out again between live ones, which is what a word-at-a-time allocation can get
 * wrong (a slot taken twice, a slot past the span's end, a reused slot not cleared). Also
 * GC_is_heap_ptr, which Guile calls on every set-car!/set-cdr!.
 * Prints "ok ..." and exits 0, or names the failed check and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void GC_init(void);
void GC_generic_malloc_many(size_t n, int kind, void **result);
void GC_gcollect(void);
void GC_free(void *p);
void *GC_base(void *p);
size_t GC_size(const void *p);
unsigned long GC_get_gc_no(void);
int GC_is_heap_ptr(const void *p);
void *GC_malloc_uncollectable(size_t n);

#define MAXOBJ 200000
/* Kept in bss, a root: the pointer-free kind's link word is not traced. */
static void *live[MAXOBJ];
static size_t live_size[MAXOBJ];
static size_t nlive;
static int failed;

static void fail(const char *what, size_t n, void *p) {
    fprintf(stderr, "FAIL: %s (size %zu, object %p)\n", what, n, p);
    failed = 1;
}

/* One batch: check it, fill it (so a reuse without clearing shows), keep it. */
static size_t take_batch(size_t n, int kind) {
    void *head = NULL;
    GC_generic_malloc_many(n, kind, &head);
    if (head == NULL) {
        fail("GC_generic_malloc_many returned no object", n, NULL);
        return 0;
    }
    size_t got = 0;
    for (void *p = head, *next; p; p = next, got++) {
        next = *(void **)p;
        if (GC_base(p) != p) fail("not the start of an object", n, p);
        if (GC_size(p) < n) fail("smaller than asked", n, p);
        if (!GC_is_heap_ptr(p)) fail("GC_is_heap_ptr says not in the heap", n, p);
        for (size_t i = sizeof(void *); i < n; i++)
            if (((unsigned char *)p)[i] != 0) {
                fail("not zeroed", n, p);
                break;
            }
        memset(p, 0xab, n);
        if (nlive < MAXOBJ) {
            live[nlive] = p;
            live_size[nlive++] = n;
        }
    }
    return got;
}

static int by_addr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)live[*(const size_t *)a], y = (uintptr_t)live[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* No two kept objects overlap, and each still holds its fill. */
static void check_live(const char *when) {
    static size_t order[MAXOBJ];
    for (size_t i = 0; i < nlive; i++) order[i] = i;
    qsort(order, nlive, sizeof order[0], by_addr);
    for (size_t k = 0; k + 1 < nlive; k++) {
        size_t i = order[k], j = order[k + 1];
        if ((uintptr_t)live[i] + live_size[i] > (uintptr_t)live[j]) {
            fprintf(stderr, "FAIL (%s): objects %p (size %zu) and %p overlap\n", when, live[i],
                    live_size[i], live[j]);
            failed = 1;
            return;
        }
    }
    for (size_t i = 0; i < nlive; i++)
        for (size_t b = 0; b < live_size[i]; b++)
            if (((unsigned char *)live[i])[b] != 0xab) {
                fprintf(stderr, "FAIL (%s): kept object %p (size %zu) changed at byte %zu\n",
                        when, live[i], live_size[i], b);
                failed = 1;
                return;
            }
}

int main(void) {
    static const size_t sizes[] = {8, 16, 24, 40, 48, 100, 256, 1000, 4000};
    GC_init();
    size_t total = 0;
    for (int round = 0; round < 3; round++) {
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
            for (int kind = 0; kind <= 1; kind++)
                for (int b = 0; b < 40; b++) total += take_batch(sizes[s], kind);
        check_live("after allocating");
        /* Free every third object explicitly and drop every third from the roots: both kinds
         * of hole are then handed out again, between objects that stay. */
        size_t keep = 0;
        for (size_t i = 0; i < nlive; i++) {
            if (i % 3 == 0) GC_free(live[i]);
            if (i % 3 == 0 || i % 3 == 1) continue;
            live[keep] = live[i];
            live_size[keep++] = live_size[i];
        }
        for (size_t i = keep; i < nlive; i++) live[i] = NULL;
        nlive = keep;
        GC_gcollect();
        check_live("after a collection");
    }
    if (GC_get_gc_no() < 3) fail("no collection ran", 0, NULL);
    /* GC_is_heap_ptr as the Boehm GC answers it: uncollectable objects are in the heap too;
     * static, stack and malloc'd memory are not. */
    void *u = GC_malloc_uncollectable(64), *m = malloc(64);
    int local;
    if (!GC_is_heap_ptr(u)) fail("GC_is_heap_ptr: an uncollectable object", 64, u);
    if (GC_is_heap_ptr(m) || GC_is_heap_ptr(&local) || GC_is_heap_ptr(live))
        fail("GC_is_heap_ptr: memory outside the heap", 0, m);
    free(m);
    GC_free(u);
    if (failed) return 1;
    printf("ok GC_generic_malloc_many: %zu objects in lists, %zu kept, %lu collections\n", total,
           nlive, GC_get_gc_no());
    return 0;
}
