/* alloc/arena.c — arenas, the arena index, the page map and metadata memory.
 *
 * Address space comes from the OS in regions that are multiples of 64 MiB and 64 MiB
 * aligned. Each 64 MiB arena has a metadata block (alloc_arena) holding its page map: one
 * span pointer per 8 KiB page. The arena index is a two-level radix table over the 48-bit
 * address space (1024 L1 slots x 4096 arenas), so alloc_span_of() answers "which span holds
 * p, if any" with three dependent loads and never touches p itself.
 *
 * Region memory is mapped read-write with MAP_NORESERVE: the kernel commits pages on first
 * touch, which replaces DESIGN §2's "reserve PROT_NONE, commit on demand" without an
 * mprotect per span (fewer system calls, no VMA splitting). See README "Memory".
 *
 * Concurrency: index and page-map entries are written under the heap lock with release
 * stores and read without locks (acquire). Arena metadata is never freed, so a stale read
 * is always memory-safe.
 */
#include "cgc/internal.h"

#include <string.h>

_Atomic(alloc_arena *) alloc_arena_index[(size_t)1 << ALLOC_INDEX_BITS];
_Atomic uintptr_t alloc_heap_lo_x, alloc_heap_hi_x; /* stored disguised: see internal.h */

/* [heap] Where the next region should go: right after the last one, so free runs coalesce
 * across regions. ThreadSanitizer reserves that part of the address space for itself (and
 * mis-handles a fixed hint there), so sanitizer builds let the kernel choose. */
#if defined(__SANITIZE_THREAD__)
#define CGC_NO_ADDRESS_HINT 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CGC_NO_ADDRESS_HINT 1
#endif
#endif
#ifdef CGC_NO_ADDRESS_HINT
static uintptr_t next_hint_x = ALLOC_DISGUISE;
#else
/* Not a round number: a conservative scanner meets round constants like 1 << 44 in
 * libraries' data, and would mistake them for pointers into the heap. */
static uintptr_t next_hint_x = (uintptr_t)0x3d2a4c000000 ^ ALLOC_DISGUISE;
#endif

/* ---- metadata memory ------------------------------------------------------------------- */
static char *meta_cur, *meta_end; /* [heap] */

void *alloc_meta_alloc(size_t size) {
    size = (size + 63) & ~(size_t)63;
    if ((size_t)(meta_end - meta_cur) < size) {
        size_t chunk = size > ((size_t)1 << 20) ? size : ((size_t)1 << 20);
        char *p = plat_map(chunk);
        if (p == NULL) return NULL;
        meta_cur = p;
        meta_end = p + chunk;
    }
    void *r = meta_cur;
    meta_cur += size;
    return r;
}

void *alloc_meta_new(size_t size) {
    alloc_lock(&alloc_heap_lock);
    void *p = alloc_meta_alloc(size);
    alloc_unlock(&alloc_heap_lock);
    return p;
}

static alloc_arena *arena_register(uintptr_t base) {
    alloc_arena *ar = plat_map(sizeof(alloc_arena));
    if (ar == NULL) return NULL;
    ar->base = base;
    memset(ar->released, 0xff, sizeof ar->released); /* fresh memory is not resident */
    atomic_store_explicit(&alloc_arena_index[base >> ALLOC_ARENA_SHIFT], ar, memory_order_release);
    return ar;
}

uintptr_t alloc_arena_grow(size_t size) {
    void *p = plat_map_aligned((void *)(next_hint_x ^ ALLOC_DISGUISE), size, ALLOC_ARENA_SIZE);
    if (p == NULL) return 0;
    uintptr_t base = (uintptr_t)p;
    if (base + size > ((uintptr_t)1 << ALLOC_ADDR_BITS)) { /* not indexable: give it back */
        plat_unmap(p, size);
        return 0;
    }
    for (uintptr_t a = base; a < base + size; a += ALLOC_ARENA_SIZE) {
        if (arena_register(a) == NULL) {
            /* Arenas registered so far stay registered but hold no spans: harmless. */
            plat_unmap(p, size);
            return 0;
        }
    }
#ifndef CGC_NO_ADDRESS_HINT
    next_hint_x = (base + size) ^ ALLOC_DISGUISE;
#endif
    /* Widen the heap's address bounds (a cheap first filter for conservative scanning). */
    uintptr_t lo = alloc_heap_lo(), hi = alloc_heap_hi();
    if (lo == 0 || base < lo)
        atomic_store_explicit(&alloc_heap_lo_x, base ^ ALLOC_DISGUISE, memory_order_relaxed);
    if (base + size > hi)
        atomic_store_explicit(&alloc_heap_hi_x, (base + size) ^ ALLOC_DISGUISE, memory_order_relaxed);
    return base;
}

alloc_arena *alloc_arena_of(uintptr_t addr) {
    return atomic_load_explicit(&alloc_arena_index[addr >> ALLOC_ARENA_SHIFT], memory_order_relaxed);
}

static inline _Atomic(alloc_span *) *pagemap_slot(uintptr_t addr) {
    alloc_arena *ar = alloc_arena_of(addr);
    return &ar->pagemap[(addr >> ALLOC_PAGE_SHIFT) & (ALLOC_ARENA_PAGES - 1)];
}

void alloc_pagemap_set(uintptr_t start, size_t npages, alloc_span *s, bool ends_only) {
    if (ends_only) {
        atomic_store_explicit(pagemap_slot(start), s, memory_order_release);
        if (npages > 1)
            atomic_store_explicit(pagemap_slot(start + (npages - 1) * ALLOC_PAGE_SIZE), s,
                                  memory_order_release);
        return;
    }
    while (npages > 0) { /* one arena at a time: runs may cross arena boundaries */
        alloc_arena *ar = alloc_arena_of(start);
        size_t first = (start >> ALLOC_PAGE_SHIFT) & (ALLOC_ARENA_PAGES - 1);
        size_t n = ALLOC_ARENA_PAGES - first;
        if (n > npages) n = npages;
        for (size_t i = 0; i < n; i++)
            atomic_store_explicit(&ar->pagemap[first + i], s, memory_order_release);
        start += n * ALLOC_PAGE_SIZE;
        npages -= n;
    }
}
