/* Helpers for the collector's tests: allocate objects whose address the test keeps only in
 * a disguised form (so the conservative scanner cannot see it), scrub stale stack slots, and
 * ask the heap whether an object is still allocated. */
#ifndef GC_TEST_UTIL_H
#define GC_TEST_UTIL_H

#include <string.h>

#include "cgc/gc.h"

#define MASK ((uintptr_t)0x5a5a5a5a5a5a5a5aull)
#define MAGIC 0x1234abcd5678ef01ull

typedef struct obj {
    uint64_t magic;
    struct obj *next;
    uint64_t payload[6];
} obj;

static inline uintptr_t hide(const void *p) { return (uintptr_t)p ^ MASK; }
static inline void *unhide(uintptr_t h) { return (void *)(h ^ MASK); }

/* A fresh object with a known pattern; returns its disguised address. */
__attribute__((noinline)) static uintptr_t new_hidden(void) {
    obj *o = cgc_alloc(sizeof *o);
    o->magic = MAGIC;
    for (int i = 0; i < 6; i++) o->payload[i] = (uint64_t)i * 77;
    return hide(o);
}

__attribute__((noinline)) static bool intact(const obj *o) {
    if (o->magic != MAGIC) return false;
    for (int i = 0; i < 6; i++)
        if (o->payload[i] != (uint64_t)i * 77) return false;
    return true;
}

/* Overwrite dead stack slots below the caller, where stale copies of pointers linger. */
__attribute__((noinline)) static void scrub_stack(void) {
    volatile char buf[32 * 1024];
    memset((char *)buf, 0, sizeof buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

/* Store a fresh object in *slot; return its disguised address. The real address never
 * reaches the caller's registers or frame (a conservative scanner would find it there). */
__attribute__((noinline)) static uintptr_t put_hidden(void *volatile *slot) {
    uintptr_t h = new_hidden();
    *slot = unhide(h);
    return h;
}

/* Is the object at the disguised address allocated and unchanged? */
__attribute__((noinline, unused)) static bool intact_hidden(uintptr_t h) {
    const obj *o = unhide(h);
    return o->magic == MAGIC && o->payload[5] == 5 * 77;
}

/* Is there an allocated collected object starting at the disguised address? */
__attribute__((noinline)) static bool alive(uintptr_t h) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    return gc_find_object(h ^ MASK, &base, &size, &s) && base == (h ^ MASK);
}

/* N forced collections. */
static inline void collect_n(int n) {
    for (int i = 0; i < n; i++) cgc_collect();
}

#endif
