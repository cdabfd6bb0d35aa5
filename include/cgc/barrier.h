/* cgc/barrier.h — the write barrier's inline fast path (DESIGN §3.2).
 *
 * Every store of a pointer into collected memory or into a range registered with
 * cgc_add_roots must go through cgc_store (or CGC_STORE, or cgc_memmove for bulk copies)
 * while other threads may be collecting. Stores into a thread's own stack (its locals) need
 * no barrier. When the collector is not marking, the fast path is a load of the barrier
 * phase (through the GOT: two loads, both L1-resident), a compare, a predictable branch and
 * the store.
 *
 * The torn-barrier hazard: a thread that read "off" and is stopped before its store would
 * store unbarriered after the collector turned the barrier on. On x86-64 each inline fast
 * path is a *restartable sequence*: its code range is recorded in the section
 * cgc_barrier_sites, a constructor in every module that includes this header hands that
 * section to cgc, and the stop signal's handler moves a thread interrupted inside a
 * sequence back to its first instruction — after the stop it reads the phase again (the
 * idea of Linux's rseq abort, done by cgc's own handler). Elsewhere the fast path calls
 * cgc_store, whose check and store cannot be split by a stop.
 *
 * <cgc.h> includes this header, so a call cgc_store(slot, v) expands to the inline fast
 * path; the out-of-line function of the same name stays exported for other languages'
 * foreign-function interfaces: call it as (cgc_store)(slot, v). Define
 * CGC_NO_INLINE_BARRIER before including <cgc.h> to always call the function.
 * Uses GCC/Clang extensions (asm goto, __atomic builtins) so C and C++ can both include it.
 */
#ifndef CGC_BARRIER_H
#define CGC_BARRIER_H

#include "cgc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Non-zero while the collector is marking. Internal: read only by the fast path below. */
extern CGC_API unsigned cgc_barrier_phase_;
/* The slow path: records the old and the new target, then stores. Internal. */
CGC_API void cgc_store_slow_(void **slot, void *value);
/* (weak: a program that includes <cgc.h> but never links cgc, e.g. one meant for
 * LD_PRELOAD only, still links) A module's table of fast-path sequences (pairs of 32-bit words: start relative to the
 * pair, length); add = 1 when the module is loaded, 0 when it is unloaded. Internal. */
CGC_API void cgc_barrier_sites_(const int *start, const int *stop, int add) __attribute__((weak));

#if defined(__x86_64__) && !defined(CGC_NO_INLINE_BARRIER)
static inline __attribute__((always_inline)) void cgc_store_inline_(void **slot, void *value) {
    __asm__ goto("1:\n\t"
                 "movq cgc_barrier_phase_@GOTPCREL(%%rip), %%rax\n\t"
                 "cmpl $0, (%%rax)\n\t"
                 "jne %l[slow]\n\t"
                 "movq %1, (%0)\n"
                 "2:\n\t"
                 ".pushsection cgc_barrier_sites,\"a\",@progbits\n\t"
                 ".balign 4\n\t"
                 ".long 1b - ., 2b - 1b\n\t"
                 ".popsection"
                 :
                 : "r"(slot), "r"(value)
                 : "rax", "memory", "cc"
                 : slow);
    return;
slow:
    cgc_store_slow_(slot, value);
}

/* Each module hands its table to cgc once (the constructor of every translation unit that
 * includes this header runs; cgc keeps one entry per table). */
extern const int __start_cgc_barrier_sites[] __attribute__((weak, visibility("hidden")));
extern const int __stop_cgc_barrier_sites[] __attribute__((weak, visibility("hidden")));
__attribute__((constructor, used)) static void cgc_barrier_sites_load_(void) {
    if (cgc_barrier_sites_ &&
        (const int *)__start_cgc_barrier_sites != (const int *)__stop_cgc_barrier_sites)
        cgc_barrier_sites_(__start_cgc_barrier_sites, __stop_cgc_barrier_sites, 1);
}
__attribute__((destructor, used)) static void cgc_barrier_sites_unload_(void) {
    if (cgc_barrier_sites_ &&
        (const int *)__start_cgc_barrier_sites != (const int *)__stop_cgc_barrier_sites)
        cgc_barrier_sites_(__start_cgc_barrier_sites, __stop_cgc_barrier_sites, 0);
}
#define cgc_store(slot, value) cgc_store_inline_((slot), (value))
#endif

#ifdef __cplusplus
}
#endif
#endif /* CGC_BARRIER_H */
