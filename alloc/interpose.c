/* alloc/interpose.c — the C library's allocation functions under their own names, so that
 * LD_PRELOAD=libcgc.so makes cgc the program's malloc (compiled into libcgc.so only).
 *
 * DESIGN §2.1: export the whole family or none. glibc's own callers that bypass the PLT use
 * the __libc_* names, and C++ operator new/delete in libstdc++ call malloc/free, so
 * interposing these names covers them. memalign/valloc/pvalloc keep glibc's quirks.
 */
#include "cgc/internal.h"

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

EXPORT void *malloc(size_t n) { return cgc_malloc(n); }
EXPORT void free(void *p) { cgc_free(p); }
EXPORT void cfree(void *p) { cgc_free(p); }
EXPORT void *calloc(size_t c, size_t n) { return cgc_calloc(c, n); }
EXPORT void *realloc(void *p, size_t n) { return cgc_realloc(p, n); }
EXPORT void *reallocarray(void *p, size_t c, size_t n) { return cgc_reallocarray(p, c, n); }
EXPORT int posix_memalign(void **out, size_t a, size_t n) { return cgc_posix_memalign(out, a, n); }
EXPORT void *aligned_alloc(size_t a, size_t n) { return cgc_aligned_alloc(a, n); }
EXPORT void *memalign(size_t a, size_t n) { return cgc_memalign(a, n); }
EXPORT void *valloc(size_t n) { return cgc_memalign(4096, n); }
EXPORT void *pvalloc(size_t n) {
    size_t r = (n + 4095) & ~(size_t)4095;
    if (r < n) {
        errno = ENOMEM;
        return NULL;
    }
    return cgc_memalign(4096, r == 0 ? 4096 : r);
}
EXPORT size_t malloc_usable_size(void *p) { return cgc_usable_size(p); }

/* glibc-internal aliases some programs and libraries call directly. */
EXPORT void *__libc_malloc(size_t n) { return cgc_malloc(n); }
EXPORT void __libc_free(void *p) { cgc_free(p); }
EXPORT void *__libc_calloc(size_t c, size_t n) { return cgc_calloc(c, n); }
EXPORT void *__libc_realloc(void *p, size_t n) { return cgc_realloc(p, n); }
EXPORT void *__libc_memalign(size_t a, size_t n) { return cgc_memalign(a, n); }
EXPORT void *__libc_valloc(size_t n) { return cgc_memalign(4096, n); }
EXPORT void *__libc_pvalloc(size_t n) { return pvalloc(n); }
EXPORT int __posix_memalign(void **out, size_t a, size_t n) { return cgc_posix_memalign(out, a, n); }
EXPORT void *__libc_reallocarray(void *p, size_t c, size_t n) { return cgc_reallocarray(p, c, n); }
