/* gc/cycle.c — the collection cycle, pacing, finalizers, weak handles, statistics.
 *
 * Two ways to run a cycle (the state machine of the concurrent one is described above
 * concurrent_cycle below):
 *   - concurrent (the default, DESIGN §3.1), on a coordinator thread: sweep termination;
 *     a ragged handshake that turns the barrier on (no stop); each thread's stack scanned
 *     with that thread alone held; concurrent marking (background worker + assists);
 *     handshake rounds that empty the barrier buffers; one short stop (mark termination);
 *     concurrent sweeping;
 *   - stop-the-world (CGC_STOPTHEWORLD=1, and the Boehm mode): sweep termination, then
 *     inside a dl_iterate_phdr callback (the loader lock is held: no dlopen can be caught
 *     half-way) stop the world, mark from the roots with the parallel markers, queue
 *     finalizers, clear weak handles, (checkmark), set the goal, put the spans up for
 *     sweeping, restart.
 * Nothing done while stopped allocates from the heap being collected.
 *
 * Pacing (DESIGN §3.5): the goal is live * (1 + gc_percent/100) + roots' share (at least
 * 4 MiB), lowered to the soft memory limit; the trigger comes from the last cycle's
 * allocation per unit of scan work, clamped to 70-95% of the runway. Allocation adds to
 * gc_heap_bytes in 64 KiB batches per thread. CGC_HEAP_MAX is a hard cap: an allocation
 * that would pass it collects first and fails with ENOMEM if it still would.
 */
#include "cgc/gc.h"
#include "cgc/trace.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

gc_options gc_opt = {
    .gc_percent = 100,
    .memory_limit = UINT64_MAX,
    .heap_max = UINT64_MAX,
    .goal_hold_ns = 1000ull * 1000 * 1000, /* the scavenger's default decay (CGC_DECAY_MS) */
    .roots_auto = 1,
    .signal = SIGPWR,
    .finalizer_thread = 1,
    .roots_percent = -1,
    .leaf_percent = 100,
};
pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;
/* bdw: hooks of the Boehm-compatible interface (gc.h; set by gc/bdw.c) */
void (*gc_bdw_start_hook)(void);
void (*gc_bdw_roots_hook)(void);
void (*gc_bdw_process_hook)(void);
void (*gc_bdw_scan_hook)(const cgc_type *t, uintptr_t base);

#define MIN_GOAL ((uint64_t)4 << 20)
static _Atomic uint64_t gc_goal = MIN_GOAL;
static uint64_t live_after_mark;
static _Atomic uint64_t cycles;
static uint64_t pause_total, pause_max, pauses[CGC_STATS_PAUSES];
static uint64_t start_ns;


/* ---- options ---------------------------------------------------------------------------------- */
static bool parse_size(const char *v, uint64_t *out) {
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (end == v) return false;
    uint64_t mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1ull << 10; end++; break;
    case 'm': case 'M': mul = 1ull << 20; end++; break;
    case 'g': case 'G': mul = 1ull << 30; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end != 0) return false;
    *out = (uint64_t)n * mul;
    return true;
}

static void bad(const char *name, const char *v) {
    char buf[200];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc: warning: bad value '%.60s' for %s (default kept)\n", v, name);
    plat_write_stderr(buf, n);
}

void gc_read_options(void) {
    const char *v;
    uint64_t u;
    if ((v = plat_getenv("CGC_GC_PERCENT")) != NULL) {
        if (strcmp(v, "off") == 0) gc_opt.gc_percent = -1;
        else {
            char *end;
            long p = strtol(v, &end, 10);
            if (*v && *end == 0 && p >= -1 && p <= 100000) gc_opt.gc_percent = (int)p;
            else bad("CGC_GC_PERCENT", v);
        }
    }
    if ((v = plat_getenv("CGC_MEMORY_LIMIT")) != NULL) {
        if (parse_size(v, &u)) gc_opt.memory_limit = u;
        else bad("CGC_MEMORY_LIMIT", v);
    }
    if ((v = plat_getenv("CGC_HEAP_MAX")) != NULL) {
        if (parse_size(v, &u) && u > 0) gc_opt.heap_max = u;
        else bad("CGC_HEAP_MAX", v);
    }
    if ((v = plat_getenv("CGC_GOAL_HOLD_MS")) != NULL) {
        char *end;
        unsigned long long ms = strtoull(v, &end, 10);
        if (*v && *end == 0 && ms <= 3600ull * 1000) gc_opt.goal_hold_ns = ms * 1000000;
        else bad("CGC_GOAL_HOLD_MS", v);
    }
    if ((v = plat_getenv("CGC_TRACE")) != NULL) gc_opt.trace = atoi(v);
    if ((v = plat_getenv("CGC_CLOBBER")) != NULL) gc_opt.clobber = atoi(v) != 0;
    if ((v = plat_getenv("CGC_CHECKMARK")) != NULL) gc_opt.checkmark = atoi(v) != 0;
    if ((v = plat_getenv("CGC_ROOTS")) != NULL) {
        if (strcmp(v, "auto") == 0) gc_opt.roots_auto = 1;
        else if (strcmp(v, "explicit") == 0) gc_opt.roots_auto = 0;
        else bad("CGC_ROOTS", v);
    }
    if ((v = plat_getenv("CGC_SIGNAL")) != NULL) {
        static const struct { const char *name; int sig; } names[] = {
            {"PWR", SIGPWR}, {"XCPU", SIGXCPU}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
            {"SYS", SIGSYS}, {"URG", SIGURG},
        };
        const char *nm = strncmp(v, "SIG", 3) == 0 ? v + 3 : v;
        int sig = atoi(v);
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (strcmp(nm, names[i].name) == 0) sig = names[i].sig;
        if (sig > 0 && sig < 65 && sig != SIGKILL && sig != SIGSTOP) gc_opt.signal = sig;
        else bad("CGC_SIGNAL", v);
    }
    if ((v = plat_getenv("CGC_STOPTHEWORLD")) != NULL) gc_opt.stop_the_world = atoi(v) != 0;
    if ((v = plat_getenv("CGC_DEBUG_BARRIER")) != NULL) {
        if (strcmp(v, "no-deletion") == 0) gc_opt.barrier_debug = 1;
        else if (strcmp(v, "no-insertion") == 0) gc_opt.barrier_debug = 2;
        else if (strcmp(v, "full") == 0) gc_opt.barrier_debug = 0;
        else bad("CGC_DEBUG_BARRIER", v);
        if (gc_opt.barrier_debug) {
            static const char msg[] = "cgc: warning: CGC_DEBUG_BARRIER disables half of the write "
                                      "barrier: objects WILL be lost (a test of CGC_CHECKMARK)\n";
            plat_write_stderr(msg, sizeof msg - 1);
        }
    }
    if ((v = plat_getenv("CGC_FINALIZERS")) != NULL) {
        if (strcmp(v, "thread") == 0) gc_opt.finalizer_thread = 1;
        else if (strcmp(v, "manual") == 0) gc_opt.finalizer_thread = 0;
        else bad("CGC_FINALIZERS", v);
    }
}

static void fill_stats(cgc_stats *st);
static void gc_fork_prepare(void);
static void gc_fork_parent(void);
static void gc_fork_child(void);
static _Atomic int gc_inited;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

void gc_ensure_init(void) {
    if (CGC_LIKELY(atomic_load_explicit(&gc_inited, memory_order_acquire))) return;
    alloc_ensure_init();
    pthread_mutex_lock(&init_lock);
    if (!atomic_load_explicit(&gc_inited, memory_order_relaxed)) {
        gc_read_options();
        trace_file_init();
        /* cgc's own tables in its bss are never roots (what they hold of the heap is
         * disguised), and scanning them cost every cycle, and stop 2's rescan, ~300 KiB
         * beyond the program's own data (perf/gclive: 417 KiB of roots, 110 of them its). */
        GC_ROOTS_EXCLUDE_VAR(alloc_arena_index);
        uintptr_t own_lo, own_hi;
        plat_own_table(&own_lo, &own_hi);
        gc_roots_exclude(own_lo, own_hi);
        gc_leak_roots_exclude();
        gc_heap_init();
        gc_threads_init();
        alloc_gc_stats_hook = fill_stats;
        /* Registered after the allocator's, so its prepare runs first: gc locks, then the
         * allocator's (the lock order). */
        pthread_atfork(gc_fork_prepare, gc_fork_parent, gc_fork_child);
        start_ns = plat_now_ns();
        atomic_store_explicit(&gc_inited, 1, memory_order_release);
        pthread_mutex_unlock(&init_lock);
        gc_register_initial_thread(); /* main, if another thread initialises us */
        cgc_thread_register();        /* and the thread that initialises the collector */
        return;
    }
    pthread_mutex_unlock(&init_lock);
}

/* ---- pacing ----------------------------------------------------------------------------------- */
_Atomic int gc_marking;
static _Atomic uint64_t gc_trigger = MIN_GOAL * 7 / 10;
/* The last completed concurrent mark, for the trigger: bytes allocated during it, and the
 * scan work it did. */
static uint64_t last_mark_alloc, last_mark_work;
/* [gc_lock] Of live_after_mark, the bytes in pointer-free objects (bdw pacing). */
static uint64_t leaf_after_mark;
/* The cycle in progress [atomic: read by assists]. */
static _Atomic uint64_t mark_heap_start;   /* gc_heap_bytes when marking began */
/* gc_heap_bytes when the paced cycle was asked for (0: none asked since the last mark). The
 * pacer's allocation-per-work figure counts from here, not from the mark's start: the
 * coordinator's wake-up, sweep termination and the barrier handshake take time, and the
 * mutators allocate through it. Counted from the mark's start, the trigger ignored that
 * lag and cycles began at or past the goal (gcbench: 16->16->8 MB against a 16 MB goal),
 * so the mutator paid nearly all marking as assists, none of it overlapped. */
static _Atomic uint64_t heap_at_request;
static _Atomic uint64_t mark_work_expected;/* scan work this cycle should need */
static _Atomic uint64_t mark_work_done;    /* scan work done so far (worker + assists) */
static _Atomic int64_t bg_credit;          /* worker's work not yet claimed by assists */
static _Atomic uint64_t assist_ns_total, worker_ns_total;
static _Atomic uint64_t cycle_assist_ns;

/* The recent peak (DESIGN §3.5 amended, docs/collector.md "The goal holds a recent peak"): when
 * the live heap falls, the goal does not fall with it at once. The pages of the higher goal
 * are resident, and the scavenger keeps free pages for CGC_DECAY_MS before it returns them;
 * collecting early to stay under the new, lower goal frees pages that stay resident anyway,
 * and costs a cycle per (new goal - live) allocated — GCBench after its stretch tree: 57
 * cycles against 25-53 when the heap keeps using the peak it had. So the goal may stay up
 * to the last peak goal, sliding linearly down to the plain goal over CGC_GOAL_HOLD_MS
 * (default 1 s, the scavenger's default CGC_DECAY_MS); a new
 * plain goal at or above the slide starts a new peak. The peak is the plain goal (the
 * gc_percent rule), never a goal this produced, so it cannot hold itself up; the soft memory
 * limit and CGC_HEAP_MAX still apply after it. [gc_lock] */
static uint64_t peak_goal, peak_ns;

static uint64_t hold_peak(uint64_t goal) {
    uint64_t hold = gc_opt.goal_hold_ns;
    if (hold == 0 || gc_opt.goal_keep) return goal; /* (bdw keeps its peak for good) */
    uint64_t now = plat_now_ns(), age = now - peak_ns;
    uint64_t floor = 0;
    if (peak_goal > goal && age < hold)
        floor = peak_goal - (uint64_t)((double)(peak_goal - goal) * (double)age / (double)hold);
    if (goal >= floor) {
        peak_goal = goal;
        peak_ns = now;
        return goal;
    }
    return floor;
}

static void compute_goal(void) {
    uint64_t goal = gc_opt.goal_min ? gc_opt.goal_min : MIN_GOAL; /* bdw: GC_INITIAL_HEAP_SIZE */
    if (gc_opt.gc_percent >= 0) {
        uint64_t rp = (uint64_t)(gc_opt.roots_percent >= 0 ? gc_opt.roots_percent : gc_opt.gc_percent);
        /* bdw: pointer-free bytes weigh leaf_percent in the growth, as the Boehm GC counts
         * them (a quarter): a cycle's cost is its scan work, and they cost almost none. */
        uint64_t leaf = leaf_after_mark < live_after_mark ? leaf_after_mark : live_after_mark;
        uint64_t weighted = live_after_mark - leaf / 100 * (uint64_t)(100 - gc_opt.leaf_percent);
        uint64_t g = live_after_mark + weighted / 100 * (uint64_t)gc_opt.gc_percent +
                     gc_roots_bytes_last / 100 * rp;
        if (g > goal) goal = g;
    }
    goal = hold_peak(goal);
    if (gc_opt.memory_limit != UINT64_MAX && goal > gc_opt.memory_limit) {
        goal = gc_opt.memory_limit > live_after_mark + (1u << 20) ? gc_opt.memory_limit
                                                                   : live_after_mark + (1u << 20);
    }
    if (gc_opt.goal_keep && goal > gc_opt.goal_min) gc_opt.goal_min = goal; /* bdw */
    atomic_store_explicit(&gc_goal, goal, memory_order_relaxed);
    /* The trigger (DESIGN §3.5): start early enough that the allocation expected during
     * the mark — measured last cycle, per byte of scan work — fits under the goal; kept
     * between 70% and 95% of the runway. */
    uint64_t runway = goal > live_after_mark ? goal - live_after_mark : 0;
    uint64_t lo = live_after_mark + runway * 7 / 10, hi = live_after_mark + runway * 95 / 100;
    uint64_t trig = lo;
    if (last_mark_work > 0) {
        double per_work = (double)last_mark_alloc / (double)last_mark_work;
        double need = per_work * (double)(live_after_mark + gc_roots_bytes_last) * 1.1;
        trig = need >= (double)goal ? 0 : goal - (uint64_t)need;
        if (trig < lo) trig = lo;
        if (trig > hi) trig = hi;
    }
    if (gc_opt.stop_the_world) trig = goal;
    atomic_store_explicit(&gc_trigger, trig, memory_order_relaxed);
}

/* ---- statistics of stops ---------------------------------------------------------------------- */
static uint64_t stops, stop_wait_total, stop_wait_max, hold_max, hold_held_max;

/* One stop of the world: requested at t_req, every thread stopped at t_stopped, restarted
 * at t_end. The pause is t_end - t_req (a thread that stopped first waited that long). */
static _Atomic uint64_t trace_cycle_no; /* [written under gc_lock] the cycle in progress, for the trace file */

static void record_stop(uint64_t t_req, uint64_t t_stopped, uint64_t t_end) {
    uint64_t pause = t_end - t_req, wait = t_stopped - t_req;
    if (trace_file_enabled()) trace_stop(trace_cycle_no, "stop", t_req, t_stopped, t_end);
    /* Relaxed atomic stores: cgc_get_stats reads these without gc_lock. */
    __atomic_store_n(&pauses[stops % CGC_STATS_PAUSES], pause, __ATOMIC_RELAXED);
    __atomic_store_n(&stops, stops + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&pause_total, pause_total + pause, __ATOMIC_RELAXED);
    if (pause > pause_max) __atomic_store_n(&pause_max, pause, __ATOMIC_RELAXED);
    __atomic_store_n(&stop_wait_total, stop_wait_total + wait, __ATOMIC_RELAXED);
    if (wait > stop_wait_max) __atomic_store_n(&stop_wait_max, wait, __ATOMIC_RELAXED);
}

/* ---- the cycle -------------------------------------------------------------------------------- */
typedef struct cycle_times {
    uint64_t t_start;          /* the cycle began (sweep termination) */
    /* stop 1 (barrier on). Stop-the-world mode: the whole stop (request, all stopped,
     * restart). Concurrent: a handshake, no stop — start, every thread held once (the
     * barrier is on everywhere), stacks scanned. */
    uint64_t s1_req, s1_stopped, s1_end;
    uint64_t s2_req, s2_stopped, s2_end; /* stop 2 (mark termination; the last attempt) */
    /* stop 2's stopped part, split: buffers flushed and roots rescanned; marking what that
     * found; finalizers, weak handles and checkmark; goal and sweep set-up (CGC_TRACE=2) */
    uint64_t s2_rescan, s2_mark, s2_final, s2_sweep;
    /* CGC_TRACE=2: what the collecting thread had of a CPU over the stop (stop 2's last
     * attempt; stop-the-world: the whole stop), request to restart: a long stop with little
     * CPU time and no switch was its vCPU taken away. */
    plat_oncpu stop_oncpu;
    uint64_t t_end;
    uint64_t prev_freed;       /* objects the previous cycle's sweep reclaimed (complete by now) */
    uint64_t heap_before, heap_marked;
    uint64_t holds, hold_max;  /* single-thread stops: stack scans and handshakes */
    uint64_t hold_held_max;    /* the longest hold's part after the thread answered */
    uint64_t hold_held_cpu;    /* of it, the held thread on a CPU (CGC_TRACE=2; a thread
                                * held blocking: all of it, the collector working) */
    uint64_t rounds, attempts; /* handshake rounds; final stops that found work and resumed */
    uint64_t worker_ns, assist_ns, stw_mark_ns;
    unsigned nthreads;
    bool forced;
} cycle_times;

/* ct->stop_oncpu: from `before` to now (CGC_TRACE=2). */
static void stop_oncpu_since(cycle_times *ct, const plat_oncpu *before) {
    if (gc_opt.trace < 2) return;
    plat_thread_oncpu(&ct->stop_oncpu);
    ct->stop_oncpu.cpu_ns -= before->cpu_ns;
    ct->stop_oncpu.involuntary -= before->involuntary;
    ct->stop_oncpu.voluntary -= before->voluntary;
}

static void stopped_work(cycle_times *ct) {
    plat_oncpu before = {0, 0, 0};
    if (gc_opt.trace >= 2) plat_thread_oncpu(&before);
    ct->s1_req = plat_now_ns();
    gc_stop_world();
    ct->s1_stopped = plat_now_ns();
    unsigned n = 0;
    for (gc_thread *t = gc_threads; t; t = t->next) n++;
    ct->nthreads = n;
    gc_mark_take_marked(NULL); /* counts from before this cycle */
    gc_mark_reset_cache();
    /* Taken only now: a mutator waiting for it is in a no-stop region and would never
     * acknowledge the stop if we had held it across stop_world. */
    gc_roots_lock();
    gc_roots_queued = true; /* (this whole function runs inside dl_iterate_phdr: stw_cb) */
    gc_scan_roots();
    gc_scan_finalizer_roots();
    gc_roots_queued = false;
    gc_drain();
    if (gc_opt.checkmark) gc_checkmark(); /* before finalization revives anything (stop2) */
    if (gc_bdw_process_hook) gc_bdw_process_hook(); /* bdw: links, finalizers (gc/bdw_final.c) */
    gc_final_lock();
    gc_process_finalizers();
    gc_process_weak();
    gc_final_unlock();
    gc_roots_unlock();
    __atomic_store_n(&live_after_mark, gc_mark_take_marked(&leaf_after_mark), __ATOMIC_RELAXED); /* cgc_get_stats reads it */
    ct->heap_marked = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    atomic_store_explicit(&gc_heap_bytes, live_after_mark, memory_order_relaxed);
    compute_goal();
    gc_prepare_sweep();
    gc_start_world();
    ct->s1_end = ct->t_end = plat_now_ns();
    ct->stw_mark_ns = ct->s1_end - ct->s1_stopped;
    record_stop(ct->s1_req, ct->s1_stopped, ct->s1_end);
    stop_oncpu_since(ct, &before);
}

static int stw_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)info;
    (void)size;
    stopped_work(arg);
    return 1; /* once: the loader lock is what we wanted */
}

/* ---- the concurrent cycle (DESIGN §3.1) ----------------------------------------------------------
 * States, in order; the coordinator thread (unregistered, never stopped) runs them:
*   SWEEP_TERM  finish the last sweep (concurrent), then "stop 1", a ragged handshake
 *               that stops nobody: turn the barrier on, allocate black, then hold each
 *               thread once in turn (it sees the barrier from then on; its buffer is shaded).
 *   MARK        once every thread has been held: scan each thread's stack with only that
 *               thread held (allocation turns black for it); scan data/bss,
 *               registered roots and finalizer roots; drain the grey work (the worker at a
 *               quarter of the CPUs, plus allocating threads' assists).
 *   MARK_TERM   handshake: hold each thread in turn and empty its barrier buffer; repeat
 *               until a round finds no work; then stop 2: empty the buffers again, rescan
 *               data/bss (ordinary C code writes it without a barrier), drain what that found
 *               — or, past a small budget, restart and go back to MARK —, ready finalizers,
 *               clear weak handles, (checkmark), compute the goal, barrier off, put the spans
 *               up for sweeping; restart.
 *   SWEEP       lazy (allocation) and the background sweeper.
 * Nothing in the stop is proportional to the heap: stop 2 touches
 * the thread list, the barrier buffers, data/bss and the finalizer and weak tables, plus at
 * most TERM_BUDGET bytes of marking; a hold costs one thread's stack scan and buffer. */
#define TERM_BUDGET ((uint64_t)64 << 10)  /* marking allowed inside stop 2 */
/* One assist or worker step (the worker takes 8). An assist's step runs in a no-stop region,
 * so it bounds how long a stop waits for an assisting thread: 128 KiB of scan work is
 * 40-70 us here. 32 KiB steps cost the 1 GiB workload of perf/pause-compare 8% of its time
 * (a marker's buffer handed to the pool and taken back, the prefetch queue and span cache
 * refilled, at every step) with no stop measurably shorter. */
#define SLICE ((uint64_t)128 << 10)
#define TERM_ATTEMPTS 8

/* A hold lasts from the request to the release, read before the release is published (as
 * a stop's end): the woken thread may take this thread's CPU before it reads the clock
 * again — on the shared machine, for a whole scheduler tick. */
static void hold_and(gc_thread *t, cycle_times *ct, bool scan) {
    uint64_t t0 = plat_now_ns();
    bool self = false;
    int work = scan ? GC_HOLD_SCAN : GC_HOLD_FLUSH;
    uint64_t wait = gc_hold_thread(t, work, &self);
    if (!self) gc_hold_work(t, work); /* held in a blocking region: its saved state is ours */
    uint64_t d = plat_now_ns() - t0;
    gc_start_world();
    ct->holds++;
    if (d > ct->hold_max) ct->hold_max = d;
    /* What the held thread itself lost: its own work in its handler (it did not wait for
     * the release), or, held blocking, nothing it would have noticed unless it left the
     * region: from its answer to the release. The wait before the answer is the thread not
     * yet running its handler — on a busy machine, off its CPU for a scheduler tick — and
     * delays the collector, not the thread. */
    uint64_t held = self ? t->self_hold_ns : d - wait;
    if (held > ct->hold_held_max) {
        ct->hold_held_max = held;
        ct->hold_held_cpu = self ? t->self_hold_cpu_ns : held;
    }
}

/* Objects may be scanned (turned black): set once every thread has been held after the
 * barrier was turned on, cleared in stop 2. Until then nothing is black, so a store that
 * a thread makes before its first hold, without the barrier, cannot hide anything; assists
 * wait for it (grey marking from barrier buffers may go on before it). */
static _Atomic int mark_open;

/* Stop 1 is a ragged handshake, not a stop (docs/collector.md, "Stop 1 is a handshake"):
 *   1. publish: gc_marking, the barrier, black allocation — nobody is stopped;
 *   2. hold each thread once, alone (gc_hold_thread; the handler restarts an interrupted
 *      inline fast path): after its hold, every store it makes takes the barrier, and every
 *      store it made before is visible to this thread; its buffer is flushed (grey);
 *   3. only then, scanning may start (mark_open) and each thread is held again for its
 *      stack scan, as before.
 * A thread slow to answer delays this thread alone, never the other mutators. The caller
 * holds gc_lock; gc_threads_lock is held throughout, so the thread list is the same in both
 * passes (a registering thread waits, then allocates black; an unregistering one waits in a
 * blocking region, and is held by CAS without a signal like any blocked thread).
 * Every thread's barrier buffer is empty here and alloc_black is 0: stop 2 flushed every
 * buffer and reset alloc_black with the world stopped, and with the barrier off nothing
 * appends (the slow path and gc_barrier_shade check inside a no-stop region). */
static void stop1(cycle_times *ct) {
    pthread_mutex_lock(&gc_threads_lock);
    ct->s1_req = plat_now_ns();
    if (trace_file_enabled()) trace_span(trace_cycle_no, "sweep termination", "phase", ct->t_start, ct->s1_req);
    unsigned n = 0;
    for (gc_thread *t = gc_threads; t; t = t->next) n++;
    ct->nthreads = n;
    /* Before gc_marking is published: shading (barrier buffers flushed by their threads)
     * may begin as soon as it is. Sweeping is over (gc_finish_sweep waited for every span
     * in a sweeper's hands), so no mark bit can be cleared under a shade. */
    gc_mark_take_marked(NULL);
    /* This thread's last-span cache may name a span that the last sweep freed (and the
     * page heap reused): the stack and root scans below go through it. */
    gc_mark_reset_cache();
    uint64_t heap = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    atomic_store_explicit(&mark_heap_start, heap, memory_order_relaxed);
    atomic_store_explicit(&mark_work_expected, live_after_mark + gc_roots_bytes_last + (1u << 20),
                          memory_order_relaxed);
    atomic_store_explicit(&mark_work_done, 0, memory_order_relaxed);
    atomic_store_explicit(&bg_credit, 0, memory_order_relaxed);
    atomic_store_explicit(&cycle_assist_ns, 0, memory_order_relaxed);
    /* gc_marking first: a thread that sees the barrier on and fills its buffer must shade
     * the entries, not drop them (gc_barrier_flush drops them while not marking). */
    atomic_store_explicit(&gc_marking, 1, memory_order_seq_cst);
    gc_barrier_set(true);
    atomic_store_explicit(&gc_alloc_mode, GC_ALLOC_BLACK, memory_order_seq_cst);
    /* The handshake: the barrier is on for a thread once it has been held (the hold's
     * release orders the stores above before everything it does next). */
    for (gc_thread *t = gc_threads; t; t = t->next) hold_and(t, ct, false);
    ct->s1_stopped = plat_now_ns();
    if (trace_file_enabled()) trace_span(trace_cycle_no, "barrier handshake", "phase", ct->s1_req, ct->s1_stopped);
    /* Release: a marker that reads it sees every store made before the holds. */
    atomic_store_explicit(&mark_open, 1, memory_order_release);
    /* Stacks: each thread alone, once (the hybrid barrier means never again). */
    for (gc_thread *t = gc_threads; t; t = t->next) hold_and(t, ct, true);
    ct->s1_end = plat_now_ns();
    if (trace_file_enabled()) trace_span(trace_cycle_no, "stack scans", "phase", ct->s1_stopped, ct->s1_end);
    pthread_mutex_unlock(&gc_threads_lock);
}

/* Go's idle mark workers: a CPU that no mutator wants is marking's for free. The worker's
 * quarter share exists so it does not slow the mutators down; while fewer registered
 * threads are running (outside blocking regions) than there are CPUs, one CPU would sit
 * idle, and the worker keeps marking instead of napping. (A single-threaded program on two
 * cores then marks on the other core, as the Boehm GC's parallel markers do.) Threads the
 * collector does not know — unregistered ones, other processes — are not counted: Go does
 * not see other processes either. Checked every few slices, so it follows blocking. */
static bool idle_cpu(void) {
    unsigned running = 0;
    pthread_mutex_lock(&gc_threads_lock);
    for (gc_thread *t = gc_threads; t; t = t->next)
        if (atomic_load_explicit(&t->state, memory_order_relaxed) == GC_RUNNING) running++;
    pthread_mutex_unlock(&gc_threads_lock);
    return running < plat_ncpu();
}

/* Drain until no grey work is left anywhere. A forced cycle (cgc_collect) marks with every
 * CPU; a paced one with a background share of a quarter of the CPUs (at least half of one),
 * more once the heap has passed its goal or while a CPU is idle (idle_cpu), the rest being
 * paid by assists. */
static void mark_until_idle(cycle_times *ct) {
    if (ct->forced || plat_ncpu() < 2) {
        uint64_t t0 = plat_now_ns();
        gc_drain();
        ct->worker_ns += plat_now_ns() - t0;
        return;
    }
    double share = 0.25 * plat_ncpu();
    if (share > 1.0) share = 1.0;
    if (share < 0.5) share = 0.5;
    uint64_t t0 = plat_now_ns(), busy = 0;
    for (;;) {
        uint64_t s = plat_now_ns();
        uint64_t done = gc_mark_some(8 * SLICE);
        uint64_t e = plat_now_ns();
        busy += e - s;
        if (done && trace_file_enabled()) trace_span(trace_cycle_no, "mark worker", "worker", s, e);
        if (done) {
            atomic_fetch_add_explicit(&mark_work_done, done, memory_order_relaxed);
            atomic_fetch_add_explicit(&bg_credit, (int64_t)done, memory_order_relaxed);
        } else if (gc_mark_idle()) {
            break;
        } else {
            struct timespec ts = {0, 20000}; /* an assist holds the last work: it gives it */
            nanosleep(&ts, NULL);            /* back within one slice */
            continue;
        }
        bool over = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) >=
                    atomic_load_explicit(&gc_goal, memory_order_relaxed);
        double allowed = share * (double)(e - t0);
        if (!over && (double)busy > allowed && !idle_cpu()) {
            uint64_t nap = (uint64_t)(((double)busy - allowed) / share);
            if (nap > 1000000) nap = 1000000;
            struct timespec ts = {0, (long)nap};
            nanosleep(&ts, NULL);
        }
    }
    ct->worker_ns += busy;
}

typedef struct term_ctx {
    cycle_times *ct;
    bool done;
} term_ctx;

static void stop2(term_ctx *tc) {
    cycle_times *ct = tc->ct;
    plat_oncpu before = {0, 0, 0};
    if (gc_opt.trace >= 2) plat_thread_oncpu(&before);
    ct->s2_req = plat_now_ns();
    if (trace_file_enabled())
        trace_span(trace_cycle_no, "mark", "phase", ct->attempts ? ct->s2_end : ct->s1_end, ct->s2_req);
    gc_stop_world();
    ct->s2_stopped = plat_now_ns();
    for (gc_thread *t = gc_threads; t; t = t->next) gc_barrier_flush(t);
    if (gc_opt.roots_auto) {
        /* data/bss is written without the barrier, and that breaks both halves: a pointer
         * stored there after its scan is missed (insertion), and one moved from there to an
         * already-scanned stack and erased is missed too (deletion). So in auto mode the
         * final stop scans data/bss and the stacks again; what they hold now is all that
         * unbarriered writes can have hidden. (docs/collector.md: "Why stop 2 rescans".) */
        uint64_t roots_bytes = gc_roots_bytes_last; /* (scanned at once: gc_roots_queued is off) */
        gc_scan_globals();
        for (gc_thread *t = gc_threads; t; t = t->next) gc_scan_thread(t);
        gc_roots_bytes_last = roots_bytes;
    }
    gc_mark_publish();
    uint64_t t_rescanned = plat_now_ns();
    ct->s2_rescan = t_rescanned - ct->s2_stopped;
    /* What the stop found is usually nothing or a few objects; past the budget, marking
     * goes back to running concurrently rather than growing the stop. */
    uint64_t work = 0;
    while (!gc_mark_idle() && work < TERM_BUDGET) work += gc_mark_some(TERM_BUDGET - work);
    if (!gc_mark_idle()) {
        if (ct->attempts < TERM_ATTEMPTS) {
            ct->attempts++;
            ct->s2_end = plat_now_ns();
            gc_start_world();
            record_stop(ct->s2_req, ct->s2_stopped, ct->s2_end);
            stop_oncpu_since(ct, &before);
            tc->done = false;
            return;
        }
        gc_drain();
    }
    uint64_t t_marked = plat_now_ns();
    ct->s2_mark = t_marked - t_rescanned;
    /* The checkmark verifies the mark before finalization revives anything: an unmarked
     * object reachable from the roots that has a finalizer would be marked by
     * gc_final_terminate and pass, and its finalizer would run while it is reachable (the
     * barrier-negative stress test lost such an object without a checkmark report). */
    if (gc_opt.checkmark) {
        gc_roots_lock();
        gc_checkmark();
        gc_roots_unlock();
    }
    gc_final_lock();
    gc_final_terminate();
    gc_process_weak();
    gc_final_unlock();
    uint64_t t_final = plat_now_ns();
    ct->s2_final = t_final - t_marked;
    uint64_t heap = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    uint64_t start = atomic_load_explicit(&mark_heap_start, memory_order_relaxed);
    uint64_t black = heap > start ? heap - start : 0; /* allocated during the mark: born marked */
    ct->heap_marked = heap;
    /* The goal is set from what marking found reachable; objects born black during the
     * mark are in the heap (and count toward the next trigger) but not in that base, or a
     * long mark would inflate every following goal. */
    __atomic_store_n(&live_after_mark, gc_mark_take_marked(&leaf_after_mark), __ATOMIC_RELAXED); /* cgc_get_stats reads it */
    uint64_t req = atomic_exchange_explicit(&heap_at_request, 0, memory_order_relaxed);
    last_mark_alloc = req && req <= start && heap > req ? heap - req : black;
    last_mark_work = atomic_load_explicit(&mark_work_done, memory_order_relaxed) + 1;
    atomic_store_explicit(&gc_heap_bytes, live_after_mark + black, memory_order_relaxed);
    compute_goal();
    gc_barrier_set(false);
    atomic_store_explicit(&mark_open, 0, memory_order_relaxed);
    atomic_store_explicit(&gc_marking, 0, memory_order_seq_cst);
    atomic_store_explicit(&gc_alloc_mode, 0, memory_order_seq_cst);
    /* The next stop 1 is a handshake that publishes black allocation while threads run: a
     * thread must allocate white until its stack is scanned, so the colour is reset here,
     * with the world stopped (stop 1 used to do it in its own stop). */
    for (gc_thread *t = gc_threads; t; t = t->next)
        atomic_store_explicit(&t->alloc_black, 0, memory_order_relaxed);
    gc_prepare_sweep();
    ct->s2_end = plat_now_ns();
    ct->s2_sweep = ct->s2_end - t_final;
    gc_start_world();
    record_stop(ct->s2_req, ct->s2_stopped, ct->s2_end);
    stop_oncpu_since(ct, &before);
    tc->done = true;
}

static int stop2_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)info;
    (void)size;
    stop2(arg);
    return 1;
}

static void concurrent_cycle(cycle_times *ct) {
    stop1(ct);
    /* Roots other than stacks. Registered ranges are written through the barrier, so one
     * scan is enough; data/bss is scanned again in stop 2. */
    gc_roots_bytes_last = 0;
    gc_scan_globals();
    gc_roots_lock();
    gc_scan_registered();
    gc_roots_unlock();
    gc_final_lock();
    gc_final_mark_roots();
    gc_final_unlock();
    gc_mark_publish();
    for (;;) {
        mark_until_idle(ct);
        /* Handshake round: every thread's barrier buffer into the grey work. */
        pthread_mutex_lock(&gc_threads_lock);
        for (gc_thread *t = gc_threads; t; t = t->next) hold_and(t, ct, false);
        pthread_mutex_unlock(&gc_threads_lock);
        ct->rounds++;
        if (!gc_mark_idle()) continue;
        term_ctx tc = {ct, false};
        pthread_mutex_lock(&gc_threads_lock);
        dl_iterate_phdr(stop2_cb, &tc); /* the loader lock across the stop (see gc/roots.c) */
        pthread_mutex_unlock(&gc_threads_lock);
        if (tc.done) break;
    }
    ct->t_end = ct->s2_end;
}

/* The trace line (README "The trace line"). Concurrent cycles have one stop: stop 1 is a
 * handshake (no thread is stopped but one at a time), printed "-" in both the clock and
 * the cpu fields; the handshake and the stack scans are counted in the mark's clock. With
 * CGC_STOPTHEWORLD=1 the first number is the whole stop, as before. */
static void trace_line(const cycle_times *ct) {
    const double ms = 1e6;
    const uint64_t mb = 1024 * 1024;
    bool stw = gc_opt.stop_the_world;
    uint64_t n = atomic_load_explicit(&cycles, memory_order_relaxed);
    double since = (double)(ct->t_start - start_ns) / 1e9;
    double elapsed = (double)(ct->t_end - start_ns) * (double)plat_ncpu();
    double gc_cpu = (double)(pause_total + atomic_load_explicit(&worker_ns_total, memory_order_relaxed) +
                             atomic_load_explicit(&assist_ns_total, memory_order_relaxed));
    double share = elapsed > 0 ? 100.0 * gc_cpu / elapsed : 0;
    if (share > 100) share = 100; /* stops count whole; short runs can overshoot */
    char s1[32];
    if (stw) alloc_fmt(s1, sizeof s1, "%.3f", (double)(ct->s1_end - ct->s1_req) / ms);
    else alloc_fmt(s1, sizeof s1, "-");
    double s2 = stw ? 0 : (double)(ct->s2_end - ct->s2_req) / ms;
    double mark = stw ? 0 : (double)(ct->s2_req - ct->s1_req) / ms;
    char buf[512];
    size_t len = alloc_fmt(buf, sizeof buf,
        "cgc %llu @%.3fs %.0f%%: %s+%.3f+%.3f ms clock, %s+%.3f/%.3f/0+%.3f ms cpu, "
        "%llu->%llu->%llu MB, %llu MB goal, %u T\n",
        (unsigned long long)n, since, share, s1, mark, s2,
        s1, (double)ct->assist_ns / ms, (double)ct->worker_ns / ms, s2,
        (unsigned long long)(ct->heap_before / mb), (unsigned long long)(ct->heap_marked / mb),
        (unsigned long long)(live_after_mark / mb),
        (unsigned long long)(atomic_load_explicit(&gc_goal, memory_order_relaxed) / mb),
        ct->nthreads);
    plat_write_stderr(buf, len);
    if (gc_opt.trace >= 2) {
        char first[96];
        if (stw)
            alloc_fmt(first, sizeof first, "stop1 %.3f ms to stop + %.3f stopped",
                      (double)(ct->s1_stopped - ct->s1_req) / ms,
                      (double)(ct->s1_end - ct->s1_stopped) / ms);
        else
            alloc_fmt(first, sizeof first, "no stop1: barrier handshake %.3f ms + stack scans %.3f",
                      (double)(ct->s1_stopped - ct->s1_req) / ms,
                      (double)(ct->s1_end - ct->s1_stopped) / ms);
        len = alloc_fmt(buf, sizeof buf,
            "cgc %llu detail: %s, stop2 %.3f to stop + %.3f "
            "stopped (rescan %.3f, mark %.3f, finalizers %.3f, sweep setup %.3f), "
            "collector on CPU %.3f, switched out %ld+%ld, "
            "%llu thread holds (max %.3f ms, %.3f held, %.3f of it on CPU), %llu handshake rounds, "
            "%llu stop2 retries, "
            "roots %.1f KB, live %.1f MB, %llu objects freed by the last sweep\n",
            (unsigned long long)n, first,
            (double)(ct->s2_stopped - ct->s2_req) / ms, (double)(ct->s2_end - ct->s2_stopped) / ms,
            (double)ct->s2_rescan / ms, (double)ct->s2_mark / ms, (double)ct->s2_final / ms,
            (double)ct->s2_sweep / ms, (double)ct->stop_oncpu.cpu_ns / ms,
            ct->stop_oncpu.involuntary, ct->stop_oncpu.voluntary,
            (unsigned long long)ct->holds, (double)ct->hold_max / ms, (double)ct->hold_held_max / ms,
            (double)ct->hold_held_cpu / ms,
            (unsigned long long)ct->rounds, (unsigned long long)ct->attempts,
            (double)gc_roots_bytes_last / 1024.0, (double)live_after_mark / (double)mb,
            (unsigned long long)ct->prev_freed);
        plat_write_stderr(buf, len);
    }
}

/* One whole cycle. The caller holds gc_lock. */
static void run_cycle(bool forced) {
    cycle_times ct;
    memset(&ct, 0, sizeof ct);
    ct.forced = forced;
    if (gc_bdw_start_hook) gc_bdw_start_hook(); /* bdw: GC_set_start_callback */
    ct.t_start = plat_now_ns();
    gc_finish_sweep(); /* sweep termination: marks must describe this cycle only */
    ct.prev_freed = atomic_load_explicit(&gc_freed_objects_last, memory_order_relaxed);
    atomic_fetch_add_explicit(&gc_freed_total, ct.prev_freed, memory_order_relaxed);
    atomic_store_explicit(&gc_freed_objects_last, 0, memory_order_relaxed);
    ct.heap_before = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    uint64_t trace_goal0 = atomic_load_explicit(&gc_goal, memory_order_relaxed); /* trace file */
    uint64_t trace_live0 = live_after_mark;                                       /* trace file */
    trace_cycle_no = atomic_load_explicit(&cycles, memory_order_relaxed) + 1;
    /* Events are recorded in the order they end, per thread (cgc-trace relies on it). */
    if (trace_file_enabled()) trace_counters(ct.t_start, ct.heap_before, trace_goal0, trace_live0);
    if (gc_opt.stop_the_world) {
        pthread_mutex_lock(&gc_threads_lock);
        dl_iterate_phdr(stw_cb, &ct);
        pthread_mutex_unlock(&gc_threads_lock);
    } else {
        concurrent_cycle(&ct);
    }
    atomic_fetch_add_explicit(&worker_ns_total, ct.worker_ns, memory_order_relaxed);
    ct.assist_ns = atomic_load_explicit(&cycle_assist_ns, memory_order_relaxed);
    if (ct.hold_max > hold_max) __atomic_store_n(&hold_max, ct.hold_max, __ATOMIC_RELAXED);
    if (ct.hold_held_max > hold_held_max)
        __atomic_store_n(&hold_held_max, ct.hold_held_max, __ATOMIC_RELAXED);
    atomic_store_explicit(&cycles, trace_cycle_no, memory_order_release);
    if (gc_opt.trace) trace_line(&ct);
    /* ---- trace file (CGC_TRACE_FILE, gc/tracefile.c): the stops were recorded as they
     * ended (record_stop); here the phases, the counters and the cycle itself. */
    if (trace_file_enabled()) {
        uint64_t n = trace_cycle_no;
        uint64_t goal = atomic_load_explicit(&gc_goal, memory_order_relaxed);
        trace_counters(ct.t_end, live_after_mark, goal, live_after_mark);
        trace_cycle(n, ct.t_start, plat_now_ns());
        trace_file_flush();
    }
    /* ---- end trace file */
}

/* ---- the coordinator ------------------------------------------------------------------------
 * Paced cycles run on a thread of their own (unregistered: never stopped or scanned), so no
 * mutator waits for marking. cgc_collect asks it for a cycle that starts after the call and
 * waits (in a blocking region) until that cycle has finished marking. The stop-the-world
 * mode runs cycles on the thread that triggers them, as before. */
static pthread_mutex_t coord_lock = PTHREAD_MUTEX_INITIALIZER; /* no-stop (alloc_lock) */
static pthread_cond_t coord_cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static uint64_t cycles_requested, cycles_started; /* [coord_lock] */
static bool forced_pending;                       /* [coord_lock] */
static int coord_running;                         /* [coord_lock] */

static void *coord_main(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&coord_lock);
        while (cycles_requested <= cycles_started) pthread_cond_wait(&coord_cv, &coord_lock);
        bool forced = forced_pending;
        forced_pending = false;
        cycles_started++;
        pthread_mutex_unlock(&coord_lock);
        pthread_mutex_lock(&gc_lock);
        run_cycle(forced);
        pthread_mutex_unlock(&gc_lock);
        pthread_mutex_lock(&coord_lock);
        pthread_cond_broadcast(&done_cv);
        pthread_mutex_unlock(&coord_lock);
        gc_sweeper_wake();
        gc_final_wake();
    }
    return NULL;
}

/* [coord_lock] Ask for a cycle that starts from now on; returns the count of completed
 * cycles that means it is done. */
static uint64_t request_cycle(bool forced) {
    uint64_t want = cycles_started + 1;
    if (cycles_requested < want) cycles_requested = want;
    if (forced) forced_pending = true;
    if (!coord_running) coord_running = plat_spawn_detached(coord_main, NULL, 0, 0);
    pthread_cond_signal(&coord_cv);
    return want;
}

void cgc_collect(void) {
    gc_ensure_init();
    gc_require_self("ran a collection");
    if (gc_opt.stop_the_world) {
        cgc_blocking_enter(); /* waiting for gc_lock must not hold up another collector */
        pthread_mutex_lock(&gc_lock);
        cgc_blocking_leave();
        run_cycle(true);
        pthread_mutex_unlock(&gc_lock);
    } else {
        /* Blocking while we wait: the cycle scans our stack as we left it, without a
         * signal, and no stop waits for us. */
        cgc_blocking_enter();
        pthread_mutex_lock(&coord_lock);
        uint64_t want = request_cycle(true);
        while (atomic_load_explicit(&cycles, memory_order_acquire) < want)
            pthread_cond_wait(&done_cv, &coord_lock);
        pthread_mutex_unlock(&coord_lock);
        cgc_blocking_leave();
    }
    /* An explicit cgc_collect() returns with the heap swept; a paced cycle leaves the
     * sweeping to allocation (lazy) and the background sweeper. */
    gc_finish_sweep();
    gc_final_wake();
}

/* Allocation passed the trigger: start a cycle (stop-the-world mode: run it here, unless
 * another thread just did). */
static void triggered(void) {
    if (!gc_opt.stop_the_world) {
        alloc_lock(&coord_lock);
        /* Check the heap against the trigger again, now: the caller's sum may predate the
         * stop that ended the last mark (it lowered the heap to what survived and moved the
         * trigger), and starting a cycle on it wastes a whole mark of an unchanged heap
         * (seen on binary-trees: every other cycle began at live + a few MB). And no cycle
         * may be running at all: one that is still finishing the last sweep has not set
         * gc_marking yet, and a request now would run a second cycle right after it. */
        if (!atomic_load_explicit(&gc_marking, memory_order_relaxed) &&
            cycles_requested <= cycles_started &&
            atomic_load_explicit(&cycles, memory_order_acquire) >= cycles_started &&
            atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) >=
                atomic_load_explicit(&gc_trigger, memory_order_relaxed)) {
            atomic_store_explicit(&heap_at_request,
                                  atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed),
                                  memory_order_relaxed);
            request_cycle(false);
        }
        alloc_unlock(&coord_lock);
        return;
    }
    uint64_t seen = atomic_load_explicit(&cycles, memory_order_acquire);
    cgc_blocking_enter();
    pthread_mutex_lock(&gc_lock);
    cgc_blocking_leave();
    if (atomic_load_explicit(&cycles, memory_order_acquire) == seen &&
        atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) >=
            atomic_load_explicit(&gc_goal, memory_order_relaxed)) {
        run_cycle(false);
        gc_sweeper_wake();
    }
    pthread_mutex_unlock(&gc_lock);
    gc_final_wake();
}

/* A thread past the goal before the mark can take its help — the cycle asked for but not
 * begun (the coordinator has not got a CPU, or is in sweep termination), or stop 1's
 * handshake not over (nothing may be scanned until mark_open) — waits until scanning opens,
 * the cycle it saw ends, or the heap is back under its goal; assists take over from there.
 * Without this nothing paced that window, and a loaded machine let allocation run far past
 * the goal (the 100x-live test saw 225 MB for a 32 MB goal at load 8). Go's allocating
 * goroutine starts the cycle itself for the same reason. In a blocking region: no stop or
 * hold waits for this thread. Bounded (~1 s), as a safety net, not a promise. */
static void wait_for_mark_open(void) {
    uint64_t seen = atomic_load_explicit(&cycles, memory_order_acquire);
    cgc_blocking_enter();
    for (unsigned i = 0; i < 20000; i++) {
        if (atomic_load_explicit(&mark_open, memory_order_acquire) ||
            atomic_load_explicit(&cycles, memory_order_acquire) != seen ||
            atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) <
                atomic_load_explicit(&gc_goal, memory_order_relaxed))
            break;
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    cgc_blocking_leave();
}

/* Assists (DESIGN §3.5): while marking, each allocated byte costs assist_ratio bytes of
 * scan work, where the ratio is the work still expected over the bytes left to the goal.
 * Banked background work is claimed first; the rest is marked here, in slices that let a
 * stop in between. */
/* Bytes this thread allocated during stop 1's handshake (cycle window_cycle), when it could
 * not assist: they are added to its first assist of the same cycle. */
static CGC_TLS uint64_t window_bytes, window_cycle;

void gc_assist(uint64_t bytes) {
    uint64_t cyc = atomic_load_explicit(&trace_cycle_no, memory_order_relaxed);
    if (!atomic_load_explicit(&mark_open, memory_order_acquire)) {
        /* Stop 1's handshake is not over: no object may be scanned yet (see mark_open). The
         * debt is kept for later, and past the goal the thread waits for the handshake, as
         * it would wait for the markers below. */
        if (atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) >=
            atomic_load_explicit(&gc_goal, memory_order_relaxed))
            wait_for_mark_open();
        if (!atomic_load_explicit(&mark_open, memory_order_acquire)) {
            if (window_cycle != cyc) window_bytes = 0;
            window_cycle = cyc;
            window_bytes += bytes;
            return;
        }
    }
    if (window_bytes) {
        if (window_cycle == cyc) bytes += window_bytes;
        window_bytes = 0;
    }
    uint64_t expected = atomic_load_explicit(&mark_work_expected, memory_order_relaxed);
    uint64_t done = atomic_load_explicit(&mark_work_done, memory_order_relaxed);
    uint64_t heap = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    uint64_t goal = atomic_load_explicit(&gc_goal, memory_order_relaxed);
    uint64_t left_work = expected > done ? expected - done : (64u << 10);
    uint64_t left_bytes = goal > heap + (256u << 10) ? goal - heap : (256u << 10);
    int64_t debt = (int64_t)((double)bytes * (double)left_work / (double)left_bytes);
    /* Past the goal, the pacer's estimate was wrong (the worker got less CPU than planned,
     * or the heap's shape changed): the thread marks — or waits for the markers — until
     * marking ends, so the heap cannot run away from its goal. */
    bool over = heap >= goal;
    int64_t credit = atomic_load_explicit(&bg_credit, memory_order_relaxed);
    while (!over && credit > 0 && debt > 0) {
        int64_t take = credit < debt ? credit : debt;
        if (atomic_compare_exchange_weak_explicit(&bg_credit, &credit, credit - take,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            debt -= take;
            break;
        }
    }
    if (debt <= 0 && !over) return;
    uint64_t t0 = plat_now_ns(), slept = 0, seg = t0;
    bool traced = trace_file_enabled(), worked = false; /* worked: in this trace segment */
    /* mark_open, not gc_marking: an assist that began in the last cycle and is still here
     * must not scan during the next cycle's handshake. */
    while ((debt > 0 || over) && atomic_load_explicit(&mark_open, memory_order_acquire)) {
        alloc_nostop_enter();
        uint64_t w = gc_mark_some(debt > 0 && debt < (int64_t)SLICE ? (uint64_t)debt : SLICE);
        alloc_nostop_leave();
        if (w == 0) {
            if (!over) break; /* no grey work right now: the debt is forgiven */
            /* the last work is in another marker's hands: wait without taking its CPU */
            struct timespec ts = {0, 50000};
            uint64_t z = plat_now_ns();
            /* The trace's assist spans are GC CPU (cgc-trace sums them): the wait is not. */
            if (traced && worked) trace_span(trace_cycle_no, "assist", "assist", seg, z);
            worked = false;
            /* Said starved, the markers share even a short buffer: look for it for 30 us
             * before sleeping. */
            gc_mark_starved(1);
            if (!gc_mark_spin_for_work(30000)) {
                /* In a blocking region: a stop holds this thread by CAS instead of
                 * signalling it. Signalled asleep, it answered only once its vCPU woke,
                 * 0.5-2.5 ms later when that CPU was idle (perf -a: both CPUs in swapper
                 * through the whole stop): the longest stops of binary-trees and of the
                 * 1 GiB workload. */
                cgc_blocking_enter();
                nanosleep(&ts, NULL);
                cgc_blocking_leave();
            }
            gc_mark_starved(-1);
            seg = plat_now_ns();
            slept += seg - z; /* waiting is not GC CPU */
            continue;
        }
        atomic_fetch_add_explicit(&mark_work_done, w, memory_order_relaxed);
        debt -= (int64_t)w;
        worked = true;
    }
    uint64_t t1 = plat_now_ns(), d = t1 - t0 - slept;
    if (traced && worked) trace_span(trace_cycle_no, "assist", "assist", seg, t1);
    atomic_fetch_add_explicit(&assist_ns_total, d, memory_order_relaxed);
    atomic_fetch_add_explicit(&cycle_assist_ns, d, memory_order_relaxed);
}

void gc_account(uint64_t bytes) {
    uint64_t now = atomic_fetch_add_explicit(&gc_heap_bytes, bytes, memory_order_relaxed) + bytes;
    if (trace_file_enabled()) /* the heap-in-use track between cycles (at most every ms) */
        trace_counters_sample(now, atomic_load_explicit(&gc_goal, memory_order_relaxed),
                              live_after_mark);
    if (atomic_load_explicit(&gc_marking, memory_order_relaxed)) {
        gc_assist(bytes);
        return;
    }
    if (gc_opt.gc_percent >= 0 && now >= atomic_load_explicit(&gc_trigger, memory_order_relaxed)) {
        triggered();
        /* Past the goal before marking could even start: the last sweep is what holds the
         * cycle up, so help finish it. */
        if (!gc_opt.stop_the_world && now >= atomic_load_explicit(&gc_goal, memory_order_relaxed)) {
            gc_finish_sweep();
            wait_for_mark_open();
        }
    }
}

bool gc_over_hard_cap(size_t n) {
    uint64_t cap = gc_opt.heap_max;
    alloc_cache *c = alloc_tls_cache;
    uint64_t local = alloc_cache_valid(c) ? c->gc_alloc_local : 0;
    if (atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) + local + n <= cap) return false;
    if (alloc_cache_valid(c) && local) { /* make the pacer see our bytes before deciding */
        c->gc_alloc_local = 0;
        atomic_fetch_add_explicit(&gc_heap_bytes, local, memory_order_relaxed);
    }
    cgc_collect();
    return atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) + n > cap;
}

int cgc_set_gc_percent(int pct) {
    gc_ensure_init();
    int old = gc_opt.gc_percent;
    gc_opt.gc_percent = pct < 0 ? -1 : pct;
    compute_goal();
    return old;
}

size_t cgc_set_memory_limit(size_t bytes) {
    gc_ensure_init();
    uint64_t old = gc_opt.memory_limit;
    gc_opt.memory_limit = bytes == SIZE_MAX ? UINT64_MAX : bytes;
    compute_goal();
    return old == UINT64_MAX ? SIZE_MAX : (size_t)old;
}

/* ---- allocation entry points ------------------------------------------------------------------- */
void *cgc_alloc(size_t n) { return gc_alloc_kind(n, ALLOC_KIND_GC_SCAN); }
void *cgc_alloc_leaf(size_t n) { return gc_alloc_kind(n, ALLOC_KIND_GC_LEAF); }

/* Is every word of the type a pointer (then conservative scanning is exact and needs no
 * header), or none (then it is a leaf)? */
static int type_shape(const cgc_type *t) {
    size_t words = t->size / 8;
    if (t->nwords == 0) return 0;
    if (t->size % 8 != 0 || t->nwords < words) return -1;
    if (words <= 64) {
        uint64_t m = words == 64 ? ~(uint64_t)0 : (((uint64_t)1 << words) - 1);
        uint64_t v = t->ptrmap[0] & m;
        return v == 0 ? 0 : v == m ? 1 : -1;
    }
    size_t set = 0;
    for (size_t w = 0; w < words; w++) set += (t->ptrmap[w / 64] >> (w % 64)) & 1;
    return set == 0 ? 0 : set == words ? 1 : -1;
}

void *cgc_alloc_array(const cgc_type *elem, size_t count) {
    size_t bytes;
    if (elem == NULL || __builtin_mul_overflow(elem->size, count, &bytes) ||
        bytes > SIZE_MAX - GC_HEADER) {
        errno = ENOMEM;
        return NULL;
    }
    /* All-pointer and pointer-free types need no pointer map at run time: no header, and
     * objects stay as small as the user asked (a 16-byte tree node stays 16 bytes). */
    int shape = type_shape(elem);
    if (shape == 1) return gc_alloc_kind(bytes, ALLOC_KIND_GC_SCAN);
    if (shape == 0) return gc_alloc_kind(bytes, ALLOC_KIND_GC_LEAF);
    /* One small object: a span of its type, no header. */
    if (count == 1 && bytes <= ALLOC_SMALL_MAX && elem->size > 0) return gc_alloc_typed1(elem);
    char *p = gc_alloc_kind(bytes + GC_HEADER, ALLOC_KIND_GC_TYPED);
    if (p == NULL) return NULL;
    gc_typed_header *h = (gc_typed_header *)p;
    h->count = count;
    /* Release, after the count: a concurrent marker may scan the new array already (a stale
     * pointer reached it), and reads the type with acquire, then the count. */
    __atomic_store_n(&h->type, elem, __ATOMIC_RELEASE);
    return p + GC_HEADER;
}

void *cgc_alloc_typed(const cgc_type *t) { return cgc_alloc_array(t, 1); }

/* ---- statistics --------------------------------------------------------------------------------- */
static void fill_stats(cgc_stats *st) {
    st->gc_cycles = atomic_load_explicit(&cycles, memory_order_acquire);
    st->gc_heap_bytes = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    st->gc_live_bytes = __atomic_load_n(&live_after_mark, __ATOMIC_RELAXED);
    st->gc_goal_bytes = atomic_load_explicit(&gc_goal, memory_order_relaxed);
    st->gc_freed_objects = atomic_load_explicit(&gc_freed_objects_last, memory_order_relaxed);
    /* the total of completed sweeps, plus what the current one has reclaimed so far */
    st->gc_freed_total = atomic_load_explicit(&gc_freed_total, memory_order_relaxed) +
                         atomic_load_explicit(&gc_freed_objects_last, memory_order_relaxed);
    st->gc_pause_total_ns = __atomic_load_n(&pause_total, __ATOMIC_RELAXED);
    st->gc_pause_max_ns = __atomic_load_n(&pause_max, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < CGC_STATS_PAUSES; i++)
        st->gc_pauses_ns[i] = __atomic_load_n(&pauses[i], __ATOMIC_RELAXED);
    st->gc_finalizers_run = gc_finalizers_run();
    st->gc_stops = __atomic_load_n(&stops, __ATOMIC_RELAXED);
    st->gc_stop_wait_total_ns = __atomic_load_n(&stop_wait_total, __ATOMIC_RELAXED);
    st->gc_stop_wait_max_ns = __atomic_load_n(&stop_wait_max, __ATOMIC_RELAXED);
    st->gc_hold_max_ns = __atomic_load_n(&hold_max, __ATOMIC_RELAXED);
    st->gc_hold_held_max_ns = __atomic_load_n(&hold_held_max, __ATOMIC_RELAXED);
    st->gc_assist_ns = atomic_load_explicit(&assist_ns_total, memory_order_relaxed);
    st->gc_worker_ns = atomic_load_explicit(&worker_ns_total, memory_order_relaxed);
}

/* ---- fork --------------------------------------------------------------------------------------- */
/* A thread may fork while another collects: prepare waits the cycle out (gc_lock, not a
 * no-stop lock: the forking thread can be stopped while it waits) and then holds every
 * collector lock across fork; the child reinitialises them, keeps only its own thread
 * registration and re-creates helper threads on demand. */
/* Does the calling thread hold m? glibc records the owner's tid in every mutex it locks
 * (also the default kind). Used only to tell a fork from a signal handler that interrupted
 * this thread inside the collector. */
static bool fork_mutex_mine(pthread_mutex_t *m) {
    return __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) == (int)syscall(SYS_gettid);
}

static void gc_fork_prepare(void) {
    /* Inside cgc on this thread (see alloc_tls_fork_skip): take nothing, change nothing. */
    if (alloc_tls_nostop > 0 || fork_mutex_mine(&gc_lock) || fork_mutex_mine(&gc_threads_lock) ||
        fork_mutex_mine(&coord_lock)) {
        alloc_tls_fork_skip = 2;
        return;
    }
    alloc_tls_fork_checked = 1;
    pthread_mutex_lock(&gc_lock);
    gc_threads_fork(0);
    gc_roots_fork(0);
    alloc_nostop_enter();
    pthread_mutex_lock(&coord_lock);
    gc_final_fork(0);
    gc_mark_fork(0);
    gc_heap_fork(0);
}

static void gc_fork_parent(void) {
    if (alloc_tls_fork_skip) {
        alloc_tls_fork_skip = 0;
        return;
    }
    gc_heap_fork(1);
    gc_mark_fork(1);
    gc_final_fork(1);
    pthread_mutex_unlock(&coord_lock);
    alloc_nostop_leave();
    gc_roots_fork(1);
    gc_threads_fork(1);
    pthread_mutex_unlock(&gc_lock);
}

static void gc_fork_child(void) {
    if (alloc_tls_fork_skip) { /* the child may only _exit or exec */
        alloc_tls_fork_skip = 0;
        return;
    }
    gc_heap_fork(2);
    gc_mark_fork(2);
    gc_final_fork(2);
    pthread_mutex_init(&coord_lock, NULL);
    pthread_cond_init(&coord_cv, NULL);
    pthread_cond_init(&done_cv, NULL);
    coord_running = 0;
    cycles_requested = cycles_started = atomic_load_explicit(&cycles, memory_order_relaxed);
    alloc_tls_stop_deferred = 0;
    alloc_tls_nostop--;
    gc_roots_fork(2);
    gc_threads_fork(2);
    pthread_mutex_init(&gc_lock, NULL);
}
