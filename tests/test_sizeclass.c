/* Size classes: the waste bounds of alloc/sizeclass.c, proven for every size, and the
 * multiply-shift slot index, proven for every byte offset of every class's span. */
#include <criterion/criterion.h>
#include <signal.h>

#include "cgc/internal.h"

static void setup(void) { cgc_init(); }

Test(sizeclass, rounding_waste_bound_for_every_size, .init = setup) {
    for (size_t n = 0; n <= ALLOC_SMALL_MAX; n++) {
        unsigned c = alloc_size_class(n);
        cr_assert(c >= 1 && c < ALLOC_NCLASSES, "n=%zu class %u", n, c);
        size_t size = alloc_classes[c].size;
        cr_assert(size >= n, "n=%zu rounds down to %zu", n, size);
        cr_assert(size % ALLOC_MIN_ALIGN == 0);
        /* the smallest class that fits */
        cr_assert(c == 1 || alloc_classes[c - 1].size < n, "n=%zu not in smallest class", n);
        if (n == 0) cr_assert_eq(size, 16, "malloc(0) gets the smallest block");
        else if (n <= 128) cr_assert(size - n < 16, "n=%zu waste %zu", n, size - n);
        else cr_assert((size - n) * 8 < n, "n=%zu waste %zu >= 12.5%%", n, size - n);
    }
}

Test(sizeclass, span_tail_waste_and_slot_index, .init = setup) {
    for (unsigned c = 1; c < ALLOC_NCLASSES; c++) {
        const alloc_class_info *ci = &alloc_classes[c];
        size_t bytes = (size_t)ci->npages * ALLOC_PAGE_SIZE;
        cr_assert(ci->nelems == bytes / ci->size);
        cr_assert(ci->nelems <= ALLOC_MAX_NELEMS && ci->nelems >= 4, "class %u", c);
        cr_assert((bytes - (size_t)ci->nelems * ci->size) * 8 <= bytes, "class %u tail", c);
        alloc_span s = {.start = 0, .divmul = ci->divmul};
        for (size_t off = 0; off < bytes; off++) {
            cr_assert_eq(alloc_slot_index(&s, off), off / ci->size, "class %u offset %zu", c, off);
            bool exact;
            uint32_t idx = alloc_slot_index_exact(&s, off, &exact);
            cr_assert_eq(idx, off / ci->size);
            cr_assert_eq(exact, off % ci->size == 0, "class %u offset %zu exactness", c, off);
        }
    }
    cr_assert_eq(alloc_classes[ALLOC_NCLASSES - 1].size, ALLOC_SMALL_MAX);
}

Test(sizeclass, every_class_allocates_aligned_distinct_blocks, .init = setup) {
    for (unsigned c = 1; c < ALLOC_NCLASSES; c++) {
        size_t n = alloc_classes[c].size;
        char *a = cgc_malloc(n), *b = cgc_malloc(n);
        cr_assert(a && b && a != b);
        cr_assert((uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0);
        cr_assert(a + n <= b || b + n <= a, "blocks overlap in class %u", c);
        cr_assert_eq(cgc_usable_size(a), n);
        cgc_free(a);
        cgc_free(b);
    }
}
