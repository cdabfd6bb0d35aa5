/* The page heap: spans split from free runs, coalesce when freed, and honour alignment. */
#include <criterion/criterion.h>
#include <signal.h>

#include "cgc/internal.h"

static void setup(void) { cgc_init(); }

static alloc_span *span_at(uintptr_t a) { return alloc_span_of((void *)a); }

Test(pageheap, split_then_coalesce_in_any_order, .init = setup) {
    alloc_span *a = alloc_heap_alloc(3, 1, true);
    alloc_span *b = alloc_heap_alloc(5, 1, true);
    alloc_span *c = alloc_heap_alloc(2, 1, true);
    cr_assert(a && b && c);
    /* a fresh heap hands out address-ordered neighbours */
    cr_assert_eq(b->start, a->start + 3 * ALLOC_PAGE_SIZE);
    cr_assert_eq(c->start, b->start + 5 * ALLOC_PAGE_SIZE);
    uintptr_t base = a->start;
    /* every page of an in-use span maps to it */
    for (size_t i = 0; i < 5; i++) cr_assert_eq(span_at(b->start + i * ALLOC_PAGE_SIZE), b);

    alloc_heap_free(b);
    alloc_span *fb = span_at(base + 3 * ALLOC_PAGE_SIZE);
    cr_assert(fb && fb->state == SPAN_FREE && fb->npages == 5, "b alone is a 5-page run");
    cr_assert_null(span_at(base + 5 * ALLOC_PAGE_SIZE), "interior pages of a free run map to NULL");

    alloc_heap_free(a); /* merges with b on its right */
    alloc_span *fab = span_at(base);
    cr_assert(fab->state == SPAN_FREE && fab->npages == 8, "a+b coalesced (got %zu)", fab->npages);
    cr_assert_eq(span_at(base + 7 * ALLOC_PAGE_SIZE), fab, "last page maps to the run");

    alloc_heap_free(c); /* merges left with a+b and right with the rest of the arena */
    alloc_span *all = span_at(base);
    cr_assert_eq(all->state, SPAN_FREE);
    cr_assert(all->npages >= 10, "a+b+c+tail coalesced (got %zu)", all->npages);

    /* the whole run is reusable for one big request at the same place */
    alloc_span *d = alloc_heap_alloc(10, 1, true);
    cr_assert_eq(d->start, base);
    alloc_heap_free(d);
    cr_assert_null(alloc_heap_check());
}

Test(pageheap, checker_holds_under_random_operations, .init = setup) {
    enum { N = 400 };
    alloc_span *live[N] = {0};
    uint64_t x = 12345;
    for (int step = 0; step < 20000; step++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int i = (int)((x >> 33) % N);
        if (live[i]) {
            alloc_heap_free(live[i]);
            live[i] = NULL;
        } else {
            size_t pages = 1 + (x >> 50) % 200;
            live[i] = alloc_heap_alloc(pages, (x >> 20) % 4 == 0 ? 4 : 1, true);
            cr_assert(live[i]);
        }
        if (step % 1000 == 0) {
            const char *err = alloc_heap_check();
            cr_assert_null(err, "step %d: %s", step, err);
        }
    }
    for (int i = 0; i < N; i++)
        if (live[i]) alloc_heap_free(live[i]);
    cr_assert_null(alloc_heap_check());
    alloc_heap_stats st;
    alloc_heap_get_stats(&st);
    cr_assert_eq(st.free_bytes, st.mapped, "everything coalesced back");
}

Test(pageheap, aligned_spans, .init = setup) {
    alloc_span *pad = alloc_heap_alloc(1, 1, true);
    for (size_t align = 2; align <= 256; align *= 2) {
        alloc_span *s = alloc_heap_alloc(3, align, true);
        cr_assert(s);
        cr_assert_eq((s->start >> ALLOC_PAGE_SHIFT) % align, 0, "align %zu pages", align);
        cr_assert_eq(s->npages, 3);
        alloc_heap_free(s);
    }
    alloc_heap_free(pad);
    alloc_heap_stats st;
    alloc_heap_get_stats(&st);
    cr_assert_eq(st.span_bytes, 0, "every span returned (%llu bytes left)",
                 (unsigned long long)st.span_bytes);
    cr_assert_eq(st.free_bytes, st.mapped, "all mapped memory is free again");
}

Test(pageheap, grows_past_one_arena_and_coalesces_across, .init = setup) {
    size_t pages = ALLOC_ARENA_PAGES + 100; /* needs two arenas */
    alloc_span *s = alloc_heap_alloc(pages, 1, true);
    cr_assert(s && s->npages == pages);
    memset((void *)s->start, 1, ALLOC_PAGE_SIZE);
    memset((void *)(s->start + (pages - 1) * ALLOC_PAGE_SIZE), 1, ALLOC_PAGE_SIZE);
    cr_assert_eq(span_at(s->start + (pages - 1) * ALLOC_PAGE_SIZE), s);
    alloc_heap_free(s);
    alloc_heap_stats st;
    alloc_heap_get_stats(&st);
    cr_assert_eq(st.free_bytes, st.mapped);
}

Test(pageheap, small_spans_return_to_heap_when_empty, .init = setup) {
    enum { N = 20000 };
    static void *p[N];
    for (int i = 0; i < N; i++) p[i] = cgc_malloc(256);
    cgc_stats before;
    cgc_get_stats(&before);
    cr_assert(before.span_bytes >= (uint64_t)N * 256);
    for (int i = 0; i < N; i++) cgc_free(p[i]);
    cgc_stats after;
    cgc_get_stats(&after);
    /* only the current span of the class may stay */
    cr_assert(after.span_bytes <= 64 * 1024, "spans kept: %llu bytes",
              (unsigned long long)after.span_bytes);
}
