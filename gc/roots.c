/* gc/roots.c — where marking starts: registered root ranges, the data and bss of every
 * loaded module (CGC_ROOTS=auto), each registered thread's stack, registers and static TLS.
 *
 * Modules are enumerated with dl_iterate_phdr at every cycle, so dlopen/dlclose are always
 * reflected. The cycle runs *inside* a dl_iterate_phdr callback (gc/cycle.c): the loader
 * lock is held for the whole stop, so no thread can be stopped half-way through dlopen while
 * the collector needs the module list (the deadlock DESIGN §3.3 warns about for unw_step).
 *
 * Root ranges are kept in metadata memory (never in the collected heap: they would keep
 * themselves alive). Registered roots are written by mutators under gc_roots_lock, which is
 * a no-stop lock (alloc_lock): a thread is never stopped holding it.
 */
#include "cgc/gc.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

typedef struct range {
    uintptr_t lo, hi;
} range;

static pthread_mutex_t roots_lock = PTHREAD_MUTEX_INITIALIZER;
static range *roots;            /* [roots_lock] cgc_add_roots ranges */
static size_t nroots, cap_roots;
static range excluded[16];      /* never scanned: the allocator's own big tables */
static size_t nexcluded;
uint64_t gc_roots_bytes_last;
/* Where module and registered ranges go: the collector's marker, or leak mode's
 * (gc_scan_static_roots_with). Only changed by a cycle holding gc_lock. */
static void (*root_sink)(uintptr_t lo, uintptr_t hi) = gc_mark_root_range;

static bool grow(range **arr, size_t *cap) {
    size_t ncap = *cap ? *cap * 2 : 64;
    range *n = plat_map(ncap * sizeof(range));
    if (n == NULL) return false;
    if (*arr) {
        memcpy(n, *arr, *cap * sizeof(range));
        plat_unmap(*arr, *cap * sizeof(range));
    }
    *arr = n;
    *cap = ncap;
    return true;
}

void cgc_add_roots(void *start, size_t len) {
    gc_ensure_init();
    uintptr_t lo = (uintptr_t)start;
    if (len == 0 || lo + len < lo) return;
    alloc_lock(&roots_lock);
    for (size_t i = 0; i < nroots; i++) {
        if (roots[i].lo == lo) { /* re-registering a range replaces it */
            roots[i].hi = lo + len;
            alloc_unlock(&roots_lock);
            return;
        }
    }
    if (nroots == cap_roots && !grow(&roots, &cap_roots)) {
        alloc_unlock(&roots_lock);
        plat_write_stderr("cgc: fatal: out of memory registering a root range\n", 51);
        plat_abort();
    }
    roots[nroots++] = (range){lo, lo + len};
    alloc_unlock(&roots_lock);
}

void cgc_remove_roots(void *start) {
    gc_ensure_init();
    alloc_lock(&roots_lock);
    for (size_t i = 0; i < nroots; i++) {
        if (roots[i].lo == (uintptr_t)start) {
            roots[i] = roots[--nroots];
            break;
        }
    }
    alloc_unlock(&roots_lock);
}

void gc_roots_exclude(uintptr_t lo, uintptr_t hi) {
    if (nexcluded < sizeof excluded / sizeof *excluded) excluded[nexcluded++] = (range){lo, hi};
}

/* Scan [lo, hi) minus the excluded ranges. */
static void mark_minus_excluded(uintptr_t lo, uintptr_t hi, size_t from) {
    for (size_t i = from; i < nexcluded; i++) {
        range x = excluded[i];
        if (x.hi <= lo || x.lo >= hi) continue;
        if (x.lo > lo) mark_minus_excluded(lo, x.lo, i + 1);
        if (x.hi < hi) mark_minus_excluded(x.hi, hi, i + 1);
        return;
    }
    gc_roots_bytes_last += hi - lo;
    root_sink(lo, hi);
}

static int module_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    /* The RELRO part of a writable segment is read-only once relocated (GOT, vtables,
     * constant tables): it can hold no pointer into the heap, only constants that look like
     * one. Skip it. */
    uintptr_t relro_lo = 0, relro_hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            relro_lo = info->dlpi_addr + ph->p_vaddr;
            relro_hi = relro_lo + ph->p_memsz;
        }
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (relro_hi > lo && relro_lo < hi) { /* relro sits at the segment's start */
            if (relro_lo > lo) mark_minus_excluded(lo & ~(uintptr_t)7, relro_lo, 0);
            lo = relro_hi > lo ? relro_hi : lo;
        }
        if (hi > lo) mark_minus_excluded(lo & ~(uintptr_t)7, hi, 0);
    }
    return 0;
}

/* ---- static TLS ------------------------------------------------------------------------------
 * x86-64 (TLS variant II): each initially loaded module's static TLS block sits at a fixed
 * offset below the thread pointer (glibc's pthread_self()). dl_iterate_phdr reports, for the
 * calling thread, where each module's block is (dlpi_tls_data): the lowest one bounds the
 * range. Computed by each thread for itself when it registers; only mapped memory is
 * covered. (Dynamic TLS of dlopen'ed modules is malloc'd, outside this range.) */
typedef struct tls_scan {
    uintptr_t tp, lo;
} tls_scan;

static int tls_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    tls_scan *ts = arg;
    if (info->dlpi_tls_data == NULL) return 0;
    uintptr_t block = (uintptr_t)info->dlpi_tls_data;
    if (block < ts->tp && block < ts->lo) ts->lo = block;
    return 0;
}

void gc_tls_bounds(uintptr_t *lo, uintptr_t *hi) {
    tls_scan ts = {(uintptr_t)pthread_self(), (uintptr_t)pthread_self()};
    dl_iterate_phdr(tls_cb, &ts);
    *lo = ts.lo & ~(uintptr_t)7;
    *hi = ts.tp;
}

/* ---- threads' stacks and registers ----------------------------------------------------------- */
/* Scanned now, never queued (gc_mark_range_now): a stack is a snapshot only while its
 * thread is held, and with the hybrid barrier it is never rescanned — a range queued and
 * scanned after the release could miss a pointer the thread moved meanwhile into a part
 * already scanned. (Until 2026-12-07 the 32 KiB chunks of a deeper stack were queued.) */
static void scan_thread(gc_thread *t, uintptr_t sp) {
    /* The saved stack pointer already covers the x86-64 red zone of an interrupted thread
     * (park stores RSP - 128); until 2026-12-07 this took another 128 bytes off, dead memory
     * whose stale words the checkmark then reported as missed. */
    uintptr_t lo = sp > t->stack_lo ? sp : t->stack_lo;
    gc_mark_range_now(lo, t->stack_hi);
    if (t->regs_from_jb) {
        gc_mark_range_now((uintptr_t)&t->jb, (uintptr_t)&t->jb + sizeof t->jb);
        gc_mark_range_now((uintptr_t)t->spill, (uintptr_t)(t->spill + t->spill_n));
    }
    else
        gc_mark_range_now((uintptr_t)&t->regs.uc_mcontext.gregs,
                      (uintptr_t)&t->regs.uc_mcontext.gregs + sizeof t->regs.uc_mcontext.gregs);
    gc_mark_range_now(t->tls_lo, t->tls_hi);
}

/* A thread that collects itself (stop-the-world mode: the allocating thread runs the cycle)
 * scans its own stack from this frame up — the collector's frames below the mutator's
 * included, whatever stale words they hold. The checkmark pass runs later, from deeper
 * frames, over words the drain has rewritten since: it must re-mark what the mark saw, not
 * a superset (it reported stale copies of dead objects as missed: stress/gc_deep_stack,
 * stop-the-world with checkmark). So with CGC_CHECKMARK the words scanned here are kept
 * and the checkmark scans that copy. [gc_lock] */
static uintptr_t *self_copy;
static size_t self_copy_n, self_copy_cap;

static void keep_self_copy(uintptr_t sp, uintptr_t hi, const jmp_buf *jb) {
    size_t n = (hi - sp) / sizeof(uintptr_t) + sizeof(jmp_buf) / (sizeof(uintptr_t));
    if (n > self_copy_cap) {
        if (self_copy) plat_unmap(self_copy, self_copy_cap * sizeof(uintptr_t));
        self_copy_cap = (n + 4095) & ~(size_t)4095;
        self_copy = plat_map(self_copy_cap * sizeof(uintptr_t));
        if (self_copy == NULL) plat_abort();
    }
    memcpy(self_copy, (const void *)sp, hi - sp);
    memcpy(self_copy + (hi - sp) / sizeof(uintptr_t), jb, sizeof *jb);
    self_copy_n = n;
}

__attribute__((noinline)) static void scan_self(gc_thread *t) {
    __builtin_unwind_init(); /* every callee-saved register into this frame (not jb: it
                                keeps rbp mangled) */
    jmp_buf jb;
    memset(&jb, 0, sizeof jb); /* setjmp leaves its signal-mask area as it was: stale words */
    setjmp(jb);
    uintptr_t sp = (uintptr_t)&jb & ~(uintptr_t)7; /* below the pushed registers */
    if (gc_checkmark_active && self_copy_n) {
        gc_mark_range_now((uintptr_t)self_copy, (uintptr_t)(self_copy + self_copy_n));
        self_copy_n = 0; /* used once, by this cycle's checkmark */
    } else {
        if (gc_opt.checkmark) keep_self_copy(sp, t->stack_hi & ~(uintptr_t)7, &jb);
        gc_mark_range_now(sp, t->stack_hi);
        gc_mark_range_now((uintptr_t)&jb, (uintptr_t)&jb + sizeof jb);
    }
    gc_mark_range_now(t->tls_lo, t->tls_hi);
}

void gc_scan_globals(void) {
    if (gc_opt.roots_auto) dl_iterate_phdr(module_cb, NULL); /* recursive loader lock */
}

void gc_scan_registered(void) {
    for (size_t i = 0; i < nroots; i++) {
        gc_roots_bytes_last += roots[i].hi - roots[i].lo;
        gc_mark_root_range(roots[i].lo, roots[i].hi);
    }
}

void gc_scan_thread_saved(gc_thread *t) {
    scan_thread(t, atomic_load_explicit(&t->sp, memory_order_acquire));
}

void gc_scan_thread(gc_thread *t) {
    if (t == gc_self) scan_self(t);
    else gc_scan_thread_saved(t);
}

void gc_scan_roots(void) {
    gc_roots_bytes_last = 0;
    gc_scan_globals();
    gc_scan_registered();
    for (gc_thread *t = gc_threads; t; t = t->next) gc_scan_thread(t);
}

/* ---- leak mode (gc/leak.c) ----------------------------------------------------------------------
 * The same module data/bss (always, whatever CGC_ROOTS says) and registered roots, handed to
 * another marker. The world is stopped, inside a dl_iterate_phdr callback, gc_lock held. */
void gc_scan_static_roots_with(void (*sink)(uintptr_t lo, uintptr_t hi)) {
    root_sink = sink;
    dl_iterate_phdr(module_cb, NULL);
    for (size_t i = 0; i < nroots; i++) sink(roots[i].lo, roots[i].hi);
    root_sink = gc_mark_root_range;
}

/* The cycle takes roots_lock once the world is stopped (no stopped thread can hold it: it
 * is a no-stop lock), so registration cannot race with marking. */
void gc_roots_lock(void) { alloc_lock(&roots_lock); }
void gc_roots_unlock(void) { alloc_unlock(&roots_lock); }

void gc_roots_fork(int what) {
    if (what == 0) pthread_mutex_lock(&roots_lock);
    else if (what == 1) pthread_mutex_unlock(&roots_lock);
    else pthread_mutex_init(&roots_lock, NULL);
}
