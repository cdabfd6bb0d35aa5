/* cgc/gc.h — the collector's internal interface: every function that crosses files in gc/,
 * grouped by the file that defines it.
 *
 *   gc/heap.c     collected allocation, collected spans, sweeping, the background sweeper
 *   gc/mark.c     grey work, pointer resolution, scanning, checkmark verification
 *   gc/roots.c    registered roots, module data/bss (dl_iterate_phdr), static TLS
 *   gc/threads.c  thread registry, stopping and restarting the world, blocking regions
 *   gc/cycle.c    the cycle, pacing, finalizers, weak handles, statistics, the trace line
 *   gc/tracefile.c  the trace file (its interface is include/cgc/trace.h)
 *
 * THE INVARIANT (tri-color, Lua's lgc.h style): while marking, an object is white (mark bit
 * clear), grey (mark bit set, on the work list) or black (mark bit set, scanned). Marking
 * ends when no grey object is left; then every object reachable from the roots is black.
 * In this version marking runs with every registered thread stopped, so no mutator can
 * hide a white object behind a black one; the concurrent version keeps the same work list,
 * shade and scan code and adds the write barrier (DESIGN §3.2).
 *
 * Lock order (after the allocator's, include/cgc/internal.h): gc_lock (one cycle at a time)
 * -> gc_threads_lock -> gc_roots_lock / gc_final_lock / bdw_lock -> allocator locks ->
 * gc_central locks. The Boehm-compatible interface's own locks (gc/bdw*.c: its init lock,
 * kinds_lock, disable_lock) are taken before any of these and never while holding one;
 * GC_call_with_alloc_lock holds gc_lock while the program's function runs.
 * A thread is never stopped inside an allocator lock or a collected allocation
 * (alloc_tls_nostop); gc_lock is never taken inside such a region.
 * pool_lock (gc/mark.c, the grey-work pool) is a leaf, taken by every marker — and by a held
 * thread doing its own hold work in its stop handler (gc_hold_work), which is safe because
 * a mutator takes pool_lock only inside a no-stop region (assists, barrier flushes), where
 * no stop lands.
 * trace_flush_lock (gc/tracefile.c) is a leaf, taken only outside stops (after a cycle, under
 * gc_lock, or on an allocation path outside no-stop regions, try-lock only) and at exit.
 */
#ifndef CGC_GC_H
#define CGC_GC_H

#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>

#include "cgc/internal.h"

/* ---- options (gc/cycle.c) ------------------------------------------------------------- */
typedef struct gc_options {
    int gc_percent;          /* CGC_GC_PERCENT (100); < 0: no automatic cycles */
    uint64_t memory_limit;   /* CGC_MEMORY_LIMIT: soft, lowers the goal (UINT64_MAX none) */
    uint64_t heap_max;       /* CGC_HEAP_MAX: hard cap on collected bytes (UINT64_MAX none) */
    uint64_t goal_hold_ns;   /* CGC_GOAL_HOLD_MS: the goal slides down from a peak over this */
    int trace;               /* CGC_TRACE: 1 = one line per cycle on stderr */
    int clobber;             /* CGC_CLOBBER: fill reclaimed objects with a pattern */
    int checkmark;           /* CGC_CHECKMARK: verify the marking after every cycle */
    int roots_auto;          /* CGC_ROOTS=auto (1, default) | explicit (0) */
    int signal;              /* CGC_SIGNAL: the stop signal (SIGPWR) */
    int finalizer_thread;    /* CGC_FINALIZERS=thread (1, default) | manual (0) */
    int stop_the_world;      /* CGC_STOPTHEWORLD: 1 = mark with every thread stopped (triage,
                                and the Boehm-compatible mode, whose programs use no barrier) */
    int barrier_debug;       /* CGC_DEBUG_BARRIER: 1 = no deletion half, 2 = no insertion
                                half (only for the checkmark negative-control test) */
    uint64_t goal_min;       /* smallest pacer goal (0: the built-in 4 MiB); bdw: GC_INITIAL_HEAP_SIZE, GC_expand_hp */
    int roots_percent;       /* bdw: growth for the root bytes in the goal, in %; < 0: gc_percent */
    bool goal_keep;          /* bdw: the goal never shrinks (goal_min follows it up) */
    int leaf_percent;        /* bdw: weight of pointer-free live bytes in the goal's growth, in
                                % (100: all live bytes alike; the Boehm GC counts them 1/4) */
} gc_options;
extern gc_options gc_opt;
void gc_read_options(void);
/* Initialise the collector (signal handler, main thread). Idempotent, thread-safe. */
void gc_ensure_init(void);

/* ---- threads (gc/threads.c) -------------------------------------------------------------- */
#define GC_WB_ENTRIES 256
enum gc_thread_state { GC_RUNNING = 0, GC_BLOCKING = 1, GC_BLOCKING_HELD = 2 };
typedef struct gc_thread {
    pthread_t self;
    pid_t tid;
    uintptr_t stack_lo, stack_hi;   /* the whole stack mapping (hi includes static TLS) */
    uintptr_t tls_lo, tls_hi;       /* static TLS block below the thread pointer */
    _Atomic uintptr_t sp;           /* saved stack pointer while stopped or blocking */
    _Atomic int state;              /* enum gc_thread_state */
    _Atomic int stop_requested;     /* the collector sent a stop for the current epoch */
    _Atomic int stopped;            /* parked in the handler / at a safepoint */
    _Atomic uint32_t parked_epoch;  /* the stop epoch this thread last acknowledged */
    _Atomic uint32_t seen_epoch;    /* the stop epoch whose signal its handler last ran for
                                       (it is on a CPU: parked or about to park) */
    ucontext_t regs;                /* registers saved by the handler */
    jmp_buf jb;                     /* registers saved at blocking_enter / a safepoint */
    int regs_from_jb;
    /* blocking_enter's own frame, copied: with __builtin_unwind_init it holds every
     * callee-saved register of the caller (setjmp's jmp_buf keeps rbp mangled, so a pointer
     * only in rbp would be invisible in jb) */
    unsigned spill_n;
    uintptr_t spill[64];
    /* The write barrier's buffer (barrier/barrier.c): targets to shade, appended by the
     * thread in a no-stop region, emptied by the collector while the thread is stopped or by
     * the thread itself when full. */
    _Atomic unsigned wb_n;
    uintptr_t wb[GC_WB_ENTRIES];
    /* Allocate black: set while marking once this thread's stack has been scanned (or it
     * registered during the mark). Until then its new objects are white and its stack scan
     * finds them — so initialising stores into a fresh object before the scan need no
     * barrier to keep what they point to. */
    _Atomic int alloc_black;
    /* A hold's work (gc_hold_work): set by the collector before it signals, read by the
     * thread when it parks; a thread that parks for such a hold does the work itself (one
     * held in a blocking region never parks: the collector does it). self_hold_ns is how
     * long that kept the thread; self_hold_cpu_ns, with CGC_TRACE=2, how much of it the
     * thread was on a CPU (the rest: preempted, or its vCPU taken by the host). */
    _Atomic int hold_work;
    uint64_t self_hold_ns, self_hold_cpu_ns;
    struct gc_thread *next;
} gc_thread;
extern CGC_TLS gc_thread *gc_self;
extern pthread_mutex_t gc_threads_lock;
extern gc_thread *gc_threads;      /* [gc_threads_lock] registered threads */
/* The calling thread must be registered to touch the collected heap. */
gc_thread *gc_require_self(const char *what);
/* Stop every registered thread except the caller. The caller holds gc_lock and
 * gc_threads_lock. Returns the time spent waiting (ns). */
uint64_t gc_stop_world(void);
/* Stop one registered thread (not the caller); gc_start_world releases it. work: what the
 * thread does for the hold if it is running (GC_HOLD_FLUSH or GC_HOLD_SCAN, gc_hold_work):
 * it does that in its signal handler (or safepoint) and goes on without waiting for the
 * release; *self_done is then true. A thread in a blocking region is held and does nothing:
 * the caller does the work. Returns the time until the thread answered (ns). */
enum { GC_HOLD_FLUSH = 1, GC_HOLD_SCAN = 2 };
uint64_t gc_hold_thread(gc_thread *t, int work, bool *self_done);
void gc_start_world(void);
/* Leak mode: with gc_stop_may_give_up set, a stop still waiting for a thread after 5 s
 * returns early with gc_stop_gave_up set (the caller restarts the world and gives up). */
extern int gc_stop_may_give_up, gc_stop_gave_up;
void gc_threads_init(void);
/* Register the thread that initialises the collector (normally main). */
void gc_register_initial_thread(void);

/* ---- roots (gc/roots.c) ------------------------------------------------------------------ */
/* Scan every root; the world is stopped. Calls gc_mark_range on each range. */
void gc_scan_roots(void);
/* The parts, for the concurrent cycle: data/bss of loaded modules (auto mode), registered
 * ranges (take gc_roots_lock), one thread's stack, registers and TLS (stopped or blocking). */
void gc_scan_globals(void);
void gc_scan_registered(void);
void gc_scan_thread(gc_thread *t);
/* A thread's stack from the state it saved when it parked or entered a blocking region,
 * registers and TLS — also by the thread itself, in its handler (the handler's and the
 * marker's frames, below that stack pointer, are not scanned). */
void gc_scan_thread_saved(gc_thread *t);
extern uint64_t gc_roots_bytes_last; /* data/bss + registered roots scanned by the last cycle */
/* Exclude [lo, hi) from module data/bss scanning (the allocator's own large tables). */
void gc_roots_exclude(uintptr_t lo, uintptr_t hi);
/* Exclude a variable of cgc's own (a table that never holds a root) from the data/bss scan. */
#define GC_ROOTS_EXCLUDE_VAR(v) gc_roots_exclude((uintptr_t)&(v), (uintptr_t)&(v) + sizeof(v))
/* Leak mode's scratch tables (gc/leak.c, gc/leak_sites.c): excluded the same way. */
void gc_leak_roots_exclude(void);
/* The roots lock (a no-stop lock): the cycle holds it across the stop. */
void gc_roots_lock(void);
void gc_roots_unlock(void);
/* Leak mode: module data/bss and registered roots, each range passed to sink. */
void gc_scan_static_roots_with(void (*sink)(uintptr_t lo, uintptr_t hi));
/* Thread's static TLS bounds, from the thread pointer. */
void gc_tls_bounds(uintptr_t *lo, uintptr_t *hi);

/* ---- marking (gc/mark.c) ----------------------------------------------------------------- */
/* The conservative scanner reads every word of other threads' stacks, module data/bss and
 * objects, including what a sanitizer treats as off limits: ASan's redzones between stack
 * variables and globals, and words other threads write at the same time (a deliberate racy
 * read: a stale value only keeps an object alive longer). Sanitizer builds must not
 * instrument that one loop (scan_words); it stays out of line there (a function with fewer
 * sanitizers is not inlined into an instrumented one). No effect on normal builds. */
#define GC_SCAN_NO_SANITIZE __attribute__((no_sanitize("address", "thread")))
/* Conservatively scan [lo, hi) for pointers into the collected heap and shade them. Long
 * ranges (large objects, a mark procedure's pushes) are queued in chunks. */
void gc_mark_range(uintptr_t lo, uintptr_t hi);
/* Scan [lo, hi) now, whatever its length: a thread's stack, registers and TLS, which are
 * a snapshot only while the thread is held (gc_mark_range may queue a range for later). */
void gc_mark_range_now(uintptr_t lo, uintptr_t hi);
/* A root range (module data/bss, registered roots): queued when gc_roots_queued — the
 * world stopped for the whole mark, roots_lock and the loader lock held until the drain
 * ends —, else scanned now, whole. */
void gc_mark_root_range(uintptr_t lo, uintptr_t hi);
extern bool gc_roots_queued; /* [gc_lock] */
/* Shade the object containing p, if p points into a live collected object. */
void gc_shade(uintptr_t p);
/* Scan grey objects until none is left. Returns bytes scanned. */
uint64_t gc_drain(void);
/* Base and size of the live collected object containing p, or false. */
bool gc_find_object(uintptr_t p, uintptr_t *base, size_t *size, alloc_span **span);
bool gc_is_marked(uintptr_t p);
/* Concurrent marking: scan grey objects until about `budget` bytes are scanned or no work
 * is left (returns bytes scanned); the caller's leftover work goes back to the shared pool.
 * Safe to call from several threads at once, and from a mutator inside a no-stop region. */
uint64_t gc_mark_some(uint64_t budget);
/* Put the calling thread's local grey work into the shared pool (so others see it). */
void gc_mark_publish(void);
/* A hold's work on thread t, by t itself in its signal handler or safepoint, or by the
 * collector for a thread held in a blocking region: GC_HOLD_SCAN scans t's stack from its
 * saved state and turns its allocation black; both kinds empty its barrier buffer. The grey
 * work found goes to the pool. */
void gc_hold_work(gc_thread *t, int work);
/* No grey work anywhere (the pool and every marker's local buffer are empty). */
bool gc_mark_idle(void);
/* An assist past the goal found no work (+1) or stopped waiting for it (-1): while any
 * waits, concurrent markers share even a short buffer. */
void gc_mark_starved(int delta);
/* Spin up to ns (never on one CPU) until grey work is in the shared pool; whether it is.
 * The caller said it is starved, so markers share with it. */
bool gc_mark_spin_for_work(uint64_t ns);
/* Shade n candidate pointers (a barrier buffer); the work is published. */
void gc_shade_many(const uintptr_t *v, unsigned n);
/* Queue the contents of the object at p for scanning without marking it (finalizer roots). */
void gc_mark_contents(uintptr_t p);
/* Mark the object at p without scanning it (returns true if it was white). */
bool gc_mark_only(uintptr_t p);
/* Bytes marked (by every marker: drains, gc_mark_some, gc_shade_many, gc_mark_only) since
 * the last call, and in *leaf (if not NULL) how many of them in pointer-free objects. */
uint64_t gc_mark_take_marked(uint64_t *leaf);
/* Forget the marker's cached span (at the start of each stop: spans change between cycles). */
void gc_mark_reset_cache(void);
/* Checkmark: re-mark from the roots into a side table; abort on an unmarked reachable
 * object. The world is stopped and marking is complete. */
void gc_checkmark(void);
extern int gc_checkmark_active;

/* ---- mark bytes (alloc_span.gcmarks) ------------------------------------------------------
 * Small collected spans: one byte per slot, 0 white, 1 marked. Written with relaxed stores
 * (two markers racing for one object may both see it white and both scan it: harmless
 * duplicate work, and its bytes counted twice in that cycle's marked total). */
static inline _Atomic uint8_t *gc_marks_of(const alloc_span *s) {
    return __atomic_load_n(&((alloc_span *)s)->gcmarks, __ATOMIC_RELAXED);
}
static inline bool gc_mark_byte(const alloc_span *s, uint32_t idx) {
    _Atomic uint8_t *m = gc_marks_of(s);
    return m && atomic_load_explicit(&m[idx], memory_order_relaxed);
}
static inline void gc_mark_byte_set(const alloc_span *s, uint32_t idx, uint8_t v) {
    _Atomic uint8_t *m = gc_marks_of(s);
    if (m) atomic_store_explicit(&m[idx], v, memory_order_relaxed);
}
/* The mark bytes of slots [64w, 64w+64) as a bit mask (bit i: slot 64w+i is marked). The
 * array holds ALLOC_MAX_NELEMS bytes, so a whole group can always be read; bytes past the
 * span's last slot are 0. No marker may be running (sweeping and heap checks). */
uint64_t gc_marks_word(const alloc_span *s, unsigned w);

/* ---- collected heap (gc/heap.c) ---------------------------------------------------------- */
#define GC_HEADER 16 /* typed objects: [type][count] before the user's bytes */
typedef struct gc_typed_header {
    const cgc_type *type;
    size_t count;
} gc_typed_header;
extern _Atomic uint64_t gc_heap_bytes; /* bytes in collected slots: live + allocated since */
void *gc_alloc_kind(size_t n, unsigned kind);
/* One object of a small type with a mixed pointer map, in a span of that type (no header). */
void *gc_alloc_typed1(const cgc_type *t);
/* World stopped: take every span back from caches and put all collected spans up for
 * sweeping (they keep their mark bits until swept). */
void gc_prepare_sweep(void);
/* Finish all sweeping (before the next cycle marks). Must hold no allocator lock. */
void gc_finish_sweep(void);
/* Hand the unswept spans to the background sweeper thread (started on first use). */
void gc_sweeper_wake(void);
/* fork handling, per file: what = 0 prepare (take locks), 1 parent (release), 2 child
 * (reinitialise; helper threads are gone). Called by gc/cycle.c's atfork handlers. */
void gc_heap_fork(int what);
void gc_mark_fork(int what);
void gc_roots_fork(int what);
void gc_threads_fork(int what);
/* Every collected span (for the mark phase's checks and the heap checker): calls fn. */
void gc_for_each_span(void (*fn)(alloc_span *s, void *arg), void *arg);
extern _Atomic uint64_t gc_freed_objects_last, gc_freed_bytes_last, gc_freed_total;
void gc_heap_init(void);
/* Debug: check that every marked object is allocated after sweep. */
const char *gc_heap_check(void);

/* Allocation mode, read by the allocation fast path: any bit set sends it to the slow path. */
enum { GC_ALLOC_BLACK = 1 };
extern _Atomic unsigned gc_alloc_mode;

/* ---- the barrier (barrier/barrier.c) ------------------------------------------------------ */
/* Turn the barrier on (stop 1: threads running, each held once afterwards) or off (stop 2:
 * the world is stopped). */
void gc_barrier_set(bool on);
/* Empty thread t's barrier buffer into the grey work (t is stopped, or is the caller). */
void gc_barrier_flush(gc_thread *t);
/* Async-signal-safe: if pc is inside an inline barrier fast path, the address to restart
 * it from; else 0. */
uintptr_t gc_barrier_restart_pc(uintptr_t pc);
/* Shade v as a barrier would (the calling thread's buffer): cgc_weak_get, set_finalizer. */
void gc_barrier_shade(uintptr_t v);

/* ---- the cycle (gc/cycle.c) --------------------------------------------------------------- */
extern pthread_mutex_t gc_lock;
/* Allocation accounting: called by gc_alloc_kind every 64 KiB per thread; may collect. */
void gc_account(uint64_t bytes);
bool gc_over_hard_cap(size_t n);
/* Allocation during mark: pay for `bytes` with marking work (assist). */
void gc_assist(uint64_t bytes);
/* Marking is in progress (the barrier is on, allocation is black). */
extern _Atomic int gc_marking;
/* ---- finalizers and weak handles (gc/final.c) --------------------------------------------- */
void gc_final_lock(void); /* a no-stop lock */
void gc_final_unlock(void);
/* Stop-the-world cycle [final_lock, world stopped]: ready the finalizers of unmarked objects
 * and mark from them; clear weak handles of unmarked targets. */
void gc_process_finalizers(void);
void gc_process_weak(void);
void gc_scan_finalizer_roots(void);
/* Concurrent cycle [final_lock]: roots at mark start; readying at mark termination. */
void gc_final_mark_roots(void);
void gc_final_terminate(void);
void gc_final_wake(void); /* queued finalizers: wake the finalizer thread */
void gc_final_fork(int what);
uint64_t gc_finalizers_run(void);

/* ---- hooks of the Boehm-compatible interface (gc/bdw*.c; NULL unless libcgc-bdw.so) ------
 * Set once by bdw initialisation, before the first cycle. Each runs in the collector:
 *   gc_bdw_start_hook   at the start of a cycle, gc_lock held, world running; must not allocate
 *   gc_bdw_roots_hook   world stopped: shade the objects whose finalizers are queued
 *   gc_bdw_process_hook world stopped, roots drained: clear disappearing links, queue
 *                       finalizers of unreachable objects and mark from them, drain
 *   gc_bdw_scan_hook    scan one object of a Boehm kind (a TYPED1 span whose type has
 *                       nwords == GC_BDW_TYPE) with the kind's descriptor or mark procedure */
#define GC_BDW_TYPE ((size_t)-1)
extern void (*gc_bdw_start_hook)(void);
extern void (*gc_bdw_roots_hook)(void);
extern void (*gc_bdw_process_hook)(void);
extern void (*gc_bdw_scan_hook)(const cgc_type *t, uintptr_t base);
/* gc/heap.c: a large object (n > ALLOC_SMALL_MAX) of kind TYPED1 whose span carries t (small
 * ones: gc_alloc_typed1 with t->size a size class). For Boehm kinds. */
void *gc_alloc_large_typed1(const cgc_type *t, size_t n);
/* gc/heap.c: up to max small objects (kind LEAF or SCAN) at once into out, refilling as
 * needed; returns how many (0: take the ordinary path). For GC_generic_malloc_many; stop-the-
 * world mode only (the objects are born white). */
size_t gc_alloc_small_many(size_t n, unsigned kind, void **out, size_t max);

#endif /* CGC_GC_H */
