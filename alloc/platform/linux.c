/* alloc/platform/linux.c — the platform contract (cgc/platform.h) for Linux.
 *
 * Only raw system calls and async-signal-safe libc wrappers: this file runs inside malloc,
 * before initialisation, and in forked children. Nothing here may allocate or change errno
 * as seen by the caller (mmap/madvise failures are saved and restored).
 */
#include "cgc/platform.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

extern char **environ;

/* ---- our own mappings ---------------------------------------------------------------------
 * Every mapping made here is noted, so leak mode can tell cgc's memory (heap, metadata,
 * tables: never roots) from the program's when it scans the process's anonymous memory.
 * Lock-free: a slot is claimed with a CAS on its start. Addresses are stored complemented
 * (high bits set: never a candidate pointer), because this table is in our own bss, which
 * the collectors scan. */
#define OWN_SLOTS 8192
static struct {
    _Atomic uintptr_t lo_x, hi_x; /* ~address; 0: free */
} own[OWN_SLOTS];
static _Atomic int own_overflow;

void plat_own_table(uintptr_t *lo, uintptr_t *hi) {
    *lo = (uintptr_t)own;
    *hi = (uintptr_t)own + sizeof own;
}

static void own_add(void *p, size_t size) {
    uintptr_t lo = (uintptr_t)p;
    for (size_t i = 0; i < OWN_SLOTS; i++) {
        uintptr_t expect = 0;
        if (atomic_load_explicit(&own[i].lo_x, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&own[i].lo_x, &expect, ~lo,
                                                    memory_order_acq_rel, memory_order_relaxed)) {
            atomic_store_explicit(&own[i].hi_x, ~(lo + size), memory_order_release);
            return;
        }
    }
    atomic_store_explicit(&own_overflow, 1, memory_order_relaxed);
}

static void own_remove(void *p, size_t size) {
    uintptr_t lo = (uintptr_t)p;
    for (size_t i = 0; i < OWN_SLOTS; i++) {
        if (atomic_load_explicit(&own[i].lo_x, memory_order_acquire) != ~lo) continue;
        uintptr_t hi = ~atomic_load_explicit(&own[i].hi_x, memory_order_acquire);
        if (lo + size < hi) { /* the head went: keep the rest */
            atomic_store_explicit(&own[i].lo_x, ~(lo + size), memory_order_release);
        } else {
            atomic_store_explicit(&own[i].hi_x, 0, memory_order_relaxed);
            atomic_store_explicit(&own[i].lo_x, 0, memory_order_release);
        }
        return;
    }
}

size_t plat_own_mappings(uintptr_t (*out)[2], size_t max, bool *complete) {
    size_t n = 0;
    for (size_t i = 0; i < OWN_SLOTS && n < max; i++) {
        uintptr_t lo_x = atomic_load_explicit(&own[i].lo_x, memory_order_acquire);
        uintptr_t hi_x = atomic_load_explicit(&own[i].hi_x, memory_order_acquire);
        if (lo_x == 0 || hi_x == 0) continue;
        out[n][0] = ~lo_x;
        out[n][1] = ~hi_x;
        n++;
    }
    *complete = !atomic_load_explicit(&own_overflow, memory_order_relaxed) && n < max;
    return n;
}

void *plat_map(size_t size) {
    int saved = errno;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    errno = saved;
    if (p == MAP_FAILED) return NULL;
    own_add(p, size);
    return p;
}

void plat_unmap(void *p, size_t size) {
    int saved = errno;
    own_remove(p, size);
    munmap(p, size);
    errno = saved;
}

void *plat_map_aligned(void *hint, size_t size, size_t align) {
    int saved = errno;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    /* First try exactly at the hint (keeps arenas contiguous so free runs coalesce). */
    if (hint != NULL && ((uintptr_t)hint & (align - 1)) == 0) {
        void *p = mmap(hint, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == hint) {
            errno = saved;
            own_add(p, size);
            return p;
        }
        if (p != MAP_FAILED) munmap(p, size); /* old kernels ignore NOREPLACE: wrong place */
    }
    /* Over-map by `align` and trim both ends. */
    if (size + align < size) return NULL;
    char *raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (raw == MAP_FAILED) {
        errno = saved;
        return NULL;
    }
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = align - head;
    if (head) munmap(raw, head);
    if (tail) munmap((char *)start + size, tail);
    errno = saved;
    own_add((void *)start, size);
    return (void *)start;
}

void plat_release(void *p, size_t size) {
    int saved = errno;
    madvise(p, size, MADV_DONTNEED);
    errno = saved;
}

uint64_t plat_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t plat_thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void plat_thread_oncpu(plat_oncpu *out) {
    struct rusage ru;
    out->cpu_ns = plat_thread_cpu_ns();
    if (getrusage(RUSAGE_THREAD, &ru) == 0) {
        out->involuntary = ru.ru_nivcsw;
        out->voluntary = ru.ru_nvcsw;
    } else {
        out->involuntary = out->voluntary = 0;
    }
}

uint64_t plat_coarse_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *plat_getenv(const char *name) {
    size_t len = strlen(name);
    if (environ == NULL) return NULL;
    for (char **e = environ; *e != NULL; e++) {
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
    }
    return NULL;
}

void plat_env_foreach(const char *prefix, void (*fn)(const char *, size_t, const char *)) {
    size_t plen = strlen(prefix);
    if (environ == NULL) return;
    for (char **e = environ; *e != NULL; e++) {
        if (strncmp(*e, prefix, plen) != 0) continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL) continue;
        fn(*e, (size_t)(eq - *e), eq + 1);
    }
}

void plat_write_stderr(const char *buf, size_t len) {
    int saved = errno;
    while (len > 0) {
        ssize_t w = write(2, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;
        }
        buf += w;
        len -= (size_t)w;
    }
    errno = saved;
}

_Noreturn void plat_abort(void) {
    abort();
}

/* Cached: sysconf reads /sys/devices/system/cpu/online on every call, and the collector
 * asks in loops (the stop's spin, the worker's idle-CPU check). CPU hotplug is not
 * followed after the first call. */
unsigned plat_ncpu(void) {
    static _Atomic unsigned cached;
    unsigned c = atomic_load_explicit(&cached, memory_order_relaxed);
    if (c) return c;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c = n < 1 ? 1u : (unsigned)n;
    atomic_store_explicit(&cached, c, memory_order_relaxed);
    return c;
}

void plat_sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

uint64_t plat_random_u64(void) {
    int saved = errno;
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        v = plat_now_ns() ^ ((uint64_t)(uintptr_t)&v << 17) ^ (uint64_t)getpid() * 0x9e3779b97f4a7c15u;
    }
    errno = saved;
    return v;
}

bool plat_spawn_detached(void *(*fn)(void *), void *arg, size_t stack, int allow_signal) {
    sigset_t all, old;
    sigfillset(&all);
    if (allow_signal) sigdelset(&all, allow_signal);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits this mask */
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack) pthread_attr_setstacksize(&attr, stack);
    int rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0;
}
