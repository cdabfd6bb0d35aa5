/* alloc/sizeclass.c — size classes.
 *
 * Classes: 16..128 in steps of 16, then 8 classes per doubling up to 32 KiB (step = 1/8 of
 * the lower power of two). So rounding a request n up to its class wastes
 *   at most 15 bytes when n <= 128 (the 16-byte alignment quantum), and
 *   less than 12.5% of n when n > 128.
 * Each class's span has the fewest pages (but 4 where the bitmap allows, see span_pages_for)
 * that hold at least min_objs objects with an unused tail of at most 1/8 of the span (tests/test_sizeclass.c proves both bounds for
 * every size). Size -> class is two table lookups; slot index -> multiply-shift.
 *
 * Computed once at init (it is a few microseconds) rather than generated, so the rule above
 * is the only source of truth.
 */
#include "cgc/internal.h"

alloc_class_info alloc_classes[ALLOC_NCLASSES];
uint8_t alloc_class_small[1024 / 16 + 1];
uint8_t alloc_class_medium[(ALLOC_SMALL_MAX - 1024) / 128 + 1];

/* Spans of small classes are at least 32 KiB (4 pages) where the bitmap allows: larger
 * spans keep a thread's recently freed blocks in the span it allocates from, which measured
 * 1.5x faster on the larson workload than 8 KiB spans. Free lists are built lazily, so the
 * size costs address space, not resident memory. */
static uint32_t span_pages_for(uint32_t size) {
    uint32_t min_objs = size <= 1024 ? 8 : 4;
    uint32_t pages = (uint32_t)((size_t)min_objs * size / ALLOC_PAGE_SIZE);
    if (pages < 4) pages = 4;
    while (pages > 1 && (size_t)pages * ALLOC_PAGE_SIZE / size > ALLOC_MAX_NELEMS) pages--;
    for (;; pages++) {
        size_t bytes = (size_t)pages * ALLOC_PAGE_SIZE;
        size_t n = bytes / size;
        if (n < min_objs) continue;
        if ((bytes - n * size) * 8 <= bytes && n <= ALLOC_MAX_NELEMS) return pages;
    }
}

void alloc_sizeclass_init(void) {
    unsigned c = 1;
    for (uint32_t s = 16; s <= 128; s += 16) alloc_classes[c++].size = s;
    for (uint32_t base = 128; base < ALLOC_SMALL_MAX; base *= 2)
        for (uint32_t k = 1; k <= 8; k++) alloc_classes[c++].size = base + k * (base / 8);
    CGC_ASSERT(c == ALLOC_NCLASSES);
    for (c = 1; c < ALLOC_NCLASSES; c++) {
        alloc_class_info *ci = &alloc_classes[c];
        ci->npages = span_pages_for(ci->size);
        ci->nelems = (uint32_t)(ci->npages * ALLOC_PAGE_SIZE / ci->size);
        ci->divmul = (uint32_t)(UINT32_MAX / ci->size + 1);
    }
    c = 1;
    for (size_t i = 0; i < sizeof alloc_class_small; i++) {
        size_t n = i * 16; /* largest request mapping to this entry */
        while (alloc_classes[c].size < n) c++;
        alloc_class_small[i] = (uint8_t)c;
    }
    alloc_class_small[0] = 1;
    c = 1;
    for (size_t i = 0; i < sizeof alloc_class_medium; i++) {
        size_t n = 1024 + i * 128;
        while (alloc_classes[c].size < n) c++;
        alloc_class_medium[i] = (uint8_t)c;
    }
}
