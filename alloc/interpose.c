/* alloc/interpose.c — the C library's allocation functions under their own names, so that
 * LD_PRELOAD=libcgc.so makes cgc the program's malloc (compiled into libcgc.so only).
 *
 * DESIGN §2.1: export the whole family or none. glibc's own callers that bypass the PLT use
 * the __libc_* names, and C++ operator new/delete in libstdc++ call malloc/free, so
 * interposing these names covers them. memalign/valloc/pvalloc keep glibc's quirks.
 *
 * Leak mode (CGC_LEAKS, gc/leak.c): each allocating entry point tests leak_mode once — the
 * whole cost when it is off — and otherwise hands the call, with its caller's address, to
 * leak mode. free() and friends are never hooked. pthread_create is interposed so leak mode
 * can register every thread (with leak mode off it only forwards).
 */
#include "cgc/internal.h"
#include "cgc/leak.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

/* Prototypes for names the C library headers do not declare. */
void cfree(void *p);
void *__libc_malloc(size_t n);
void __libc_free(void *p);
void *__libc_calloc(size_t c, size_t n);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t a, size_t n);
void *__libc_valloc(size_t n);
void *__libc_pvalloc(size_t n);
int __posix_memalign(void **out, size_t a, size_t n);
void *__libc_reallocarray(void *p, size_t c, size_t n);

#define EXPORT __attribute__((visibility("default")))
#define RA __builtin_return_address(0)
#define LEAK_HOOK(call)                                                                          \
    if (CGC_UNLIKELY(leak_mode)) return call

EXPORT void *malloc(size_t n) {
    LEAK_HOOK(leak_malloc(n, RA));
    return cgc_malloc(n);
}
EXPORT void free(void *p) { cgc_free(p); }
EXPORT void cfree(void *p) { cgc_free(p); }
EXPORT void *calloc(size_t c, size_t n) {
    LEAK_HOOK(leak_calloc(c, n, RA));
    return cgc_calloc(c, n);
}
EXPORT void *realloc(void *p, size_t n) {
    LEAK_HOOK(leak_realloc(p, n, RA));
    return cgc_realloc(p, n);
}
EXPORT void *reallocarray(void *p, size_t c, size_t n) {
    LEAK_HOOK(leak_reallocarray(p, c, n, RA));
    return cgc_reallocarray(p, c, n);
}
EXPORT int posix_memalign(void **out, size_t a, size_t n) {
    LEAK_HOOK(leak_posix_memalign(out, a, n, RA));
    return cgc_posix_memalign(out, a, n);
}
EXPORT void *aligned_alloc(size_t a, size_t n) {
    LEAK_HOOK(leak_aligned_alloc(a, n, RA));
    return cgc_aligned_alloc(a, n);
}
EXPORT void *memalign(size_t a, size_t n) {
    LEAK_HOOK(leak_memalign(a, n, RA));
    return cgc_memalign(a, n);
}
EXPORT void *valloc(size_t n) {
    LEAK_HOOK(leak_memalign(4096, n, RA));
    return cgc_memalign(4096, n);
}
EXPORT void *pvalloc(size_t n) {
    size_t r = (n + 4095) & ~(size_t)4095;
    if (r < n) {
        errno = ENOMEM;
        return NULL;
    }
    LEAK_HOOK(leak_memalign(4096, r == 0 ? 4096 : r, RA));
    return cgc_memalign(4096, r == 0 ? 4096 : r);
}
EXPORT size_t malloc_usable_size(void *p) { return cgc_usable_size(p); }

/* glibc-internal aliases some programs and libraries call directly. */
EXPORT void *__libc_malloc(size_t n) {
    LEAK_HOOK(leak_malloc(n, RA));
    return cgc_malloc(n);
}
EXPORT void __libc_free(void *p) { cgc_free(p); }
EXPORT void *__libc_calloc(size_t c, size_t n) {
    LEAK_HOOK(leak_calloc(c, n, RA));
    return cgc_calloc(c, n);
}
EXPORT void *__libc_realloc(void *p, size_t n) {
    LEAK_HOOK(leak_realloc(p, n, RA));
    return cgc_realloc(p, n);
}
EXPORT void *__libc_memalign(size_t a, size_t n) {
    LEAK_HOOK(leak_memalign(a, n, RA));
    return cgc_memalign(a, n);
}
EXPORT void *__libc_valloc(size_t n) {
    LEAK_HOOK(leak_memalign(4096, n, RA));
    return cgc_memalign(4096, n);
}
EXPORT void *__libc_pvalloc(size_t n) { return pvalloc(n); }
EXPORT int __posix_memalign(void **out, size_t a, size_t n) {
    LEAK_HOOK(leak_posix_memalign(out, a, n, RA));
    return cgc_posix_memalign(out, a, n);
}
EXPORT void *__libc_reallocarray(void *p, size_t c, size_t n) {
    LEAK_HOOK(leak_reallocarray(p, c, n, RA));
    return cgc_reallocarray(p, c, n);
}

/* pthread_create: the C library's, found on first use (dlsym may allocate: never from
 * inside malloc). In leak mode the new thread registers with the collector before its
 * start routine runs. */
static leak_pthread_create_fn real_pthread_create;
EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*start)(void *),
                          void *arg) {
    leak_pthread_create_fn real = __atomic_load_n(&real_pthread_create, __ATOMIC_ACQUIRE);
    if (real == NULL) {
        real = (leak_pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        if (real == NULL) return EAGAIN;
        __atomic_store_n(&real_pthread_create, real, __ATOMIC_RELEASE);
    }
    return leak_pthread_create(real, th, attr, start, arg);
}
