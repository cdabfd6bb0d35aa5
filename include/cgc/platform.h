/* cgc/platform.h — the platform contract: every OS primitive cgc uses.
 *
 * One implementation per OS lives in alloc/platform/ (linux.c today). No other file asks
 * which OS it runs on. Every function here is async-signal-safe unless it says otherwise,
 * never calls malloc, and may be called before cgc_init().
 *
 * Functions that can fail return 0 on success or an errno value; they never set errno
 * (the allocator must preserve the caller's errno).
 */
#ifndef CGC_PLATFORM_H
#define CGC_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Reserve and commit `size` bytes of zeroed, read-write, private memory whose address is a
 * multiple of `align` (a power of two, >= the OS page size). Physical pages are supplied
 * by the kernel on first touch. `hint` is a preferred address (may be ignored).
 * Returns NULL on failure. */
void  *plat_map_aligned(void *hint, size_t size, size_t align);
/* Map `size` bytes anywhere (metadata). NULL on failure. */
void  *plat_map(size_t size);
void   plat_unmap(void *p, size_t size);
/* The mappings made by plat_map/plat_map_aligned and not unmapped: up to max [lo, hi)
 * pairs into out. *complete is false if some were not recorded or did not fit. */
size_t plat_own_mappings(uintptr_t (*out)[2], size_t max, bool *complete);
/* Give the physical pages of [p, p+size) back to the OS. The range stays mapped and reads
 * as zero afterwards. p and size are multiples of the OS page size. */
void   plat_release(void *p, size_t size);

/* Monotonic clock in nanoseconds. */
uint64_t plat_now_ns(void);
/* What the calling thread has had of a CPU: its CPU time in nanoseconds and how often it
 * was switched out, involuntarily (preempted) and voluntarily (it slept). A stretch of
 * wall time with little CPU time and no switch is time the OS counted as running but the
 * thread did not run: on a virtual machine, its virtual CPU taken by the host (steal).
 * Two system calls: for diagnostics (CGC_TRACE=2), not for hot paths. */
typedef struct plat_oncpu {
    uint64_t cpu_ns;
    long involuntary, voluntary;
} plat_oncpu;
void plat_thread_oncpu(plat_oncpu *out);
/* The calling thread's CPU time alone (one system call; async-signal-safe). */
uint64_t plat_thread_cpu_ns(void);
/* Monotonic clock with a few milliseconds' resolution, cheap enough for allocation paths. */
uint64_t plat_coarse_now_ns(void);
/* The value of environment variable `name` read directly from `environ` (no allocation),
 * or NULL. */
const char *plat_getenv(const char *name);
/* Calls fn(name, value) for every environment variable whose name starts with prefix. */
void   plat_env_foreach(const char *prefix, void (*fn)(const char *name, size_t name_len,
                                                       const char *value));
/* Write all of buf to stderr, retrying on EINTR; errors are ignored. */
void   plat_write_stderr(const char *buf, size_t len);
/* Abort the process (SIGABRT, without running atexit handlers). */
_Noreturn void plat_abort(void);
/* 64 random bits (getrandom; falls back to clock and address entropy). */
uint64_t plat_random_u64(void);
/* The table of the mappings made here (leak mode's "ours"), so the collector does not scan
 * it as a root: [*lo, *hi). */
void   plat_own_table(uintptr_t *lo, uintptr_t *hi);
/* One step of a spin-wait: tells the CPU (and a hypervisor) that this thread is waiting. */
static inline void plat_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}
/* Number of online CPUs (>= 1). */
unsigned plat_ncpu(void);
/* Start a detached helper thread running fn(arg) with every signal blocked except
 * `allow_signal` (0: none), so a program's signals never land on it. stack: bytes, 0 for the
 * default. Returns true if it started. May allocate (pthread_create does). */
bool plat_spawn_detached(void *(*fn)(void *), void *arg, size_t stack, int allow_signal);
/* Sleep for ns nanoseconds (may return early on a signal). */
void   plat_sleep_ns(uint64_t ns);

#endif /* CGC_PLATFORM_H */
