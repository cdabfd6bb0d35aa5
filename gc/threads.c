/* gc/threads.c — the thread registry and stopping the world (DESIGN §3.3).
 *
 * Protocol. The collector (holding gc_lock and gc_threads_lock) makes gc_epoch odd, then for
 * each registered thread but itself: sets stop_requested; a thread parked in a blocking region
 * is held by a CAS BLOCKING -> BLOCKING_HELD (no signal); any other gets the stop signal
 * (CGC_SIGNAL, SIGPWR by default) through pthread_kill — only registered threads are ever
 * signalled. The handler saves errno and the interrupted registers (the ucontext; never
 * unw_step, which can deadlock on the loader lock), publishes its stack pointer, posts the
 * acknowledgement semaphore and waits on a futex until gc_epoch changes — except in a hold
 * of that thread alone that names its work (gc_hold_thread's GC_HOLD_FLUSH / GC_HOLD_SCAN):
 * then it does the work itself (gc_hold_work), acknowledges and returns without waiting.
 * A signal the collector did not send (stop_requested clear) is ignored. A thread inside an
 * allocator lock or a collected allocation (alloc_tls_nostop) defers: it parks itself when it
 * leaves that region (alloc_deferred_stop_hook), so the collector never finds a cache
 * half-updated or a lock held by a stopped thread. The handler calls only async-signal-safe
 * functions (sem_post, futex, memcpy) — and, for a hold's own work, the marker, whose locks
 * a thread takes only inside no-stop regions, where a stop is deferred rather than handled.
 *
 * A thread that exits without cgc_thread_unregister is unregistered by a pthread key
 * destructor, so its stack is never scanned after it is gone.
 */
#include "cgc/gc.h"


#include <errno.h>
#include <linux/futex.h>
#include <semaphore.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

CGC_TLS gc_thread *gc_self;
pthread_mutex_t gc_threads_lock = PTHREAD_MUTEX_INITIALIZER;
gc_thread *gc_threads;
static gc_thread *free_threads; /* [gc_threads_lock] recycled structs */
static _Atomic uint32_t gc_epoch; /* odd while the world is stopped */
static sem_t ack_sem;
static pthread_key_t thread_key;

static gc_thread *self_for_signal(void);

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake_all(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static inline __attribute__((always_inline)) uintptr_t current_sp(void) {
    uintptr_t sp;
#if defined(__x86_64__)
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
#else
    sp = (uintptr_t)__builtin_frame_address(0) - 1024; /* conservative: below this frame */
#endif
    return sp;
}

/* Park the calling thread until the world restarts. uc: the interrupted context (signal),
 * or NULL (deferred stop, safepoint): then the registers are spilled with setjmp here.
 * Saving the registers and the stack pointer happens before parked_epoch says "acknowledged"
 * (release): the collector scans as soon as it reads it. */
static void park(gc_thread *t, ucontext_t *uc) {
    uint32_t e = atomic_load_explicit(&gc_epoch, memory_order_acquire);
    if (!(e & 1)) return; /* the world was restarted already */
    if (atomic_load_explicit(&t->parked_epoch, memory_order_acquire) == e) return; /* acked */
    if (uc) {
        memcpy(&t->regs.uc_mcontext.gregs, &uc->uc_mcontext.gregs, sizeof uc->uc_mcontext.gregs);
        t->regs_from_jb = 0;
        /* The 128-byte red zone below the interrupted RSP is live (leaf code keeps values
         * there without moving RSP; the kernel put the signal frame below it): scan it. */
        atomic_store_explicit(&t->sp, (uintptr_t)uc->uc_mcontext.gregs[REG_RSP] - 128,
                              memory_order_release);
    } else {
        /* Parked here, so this frame stays: every callee-saved register is spilled into it
         * (__builtin_unwind_init) and the scan starts at the stack pointer, below them. */
        __builtin_unwind_init();
        memset(&t->jb, 0, sizeof t->jb);
        setjmp(t->jb);
        t->regs_from_jb = 1;
        t->spill_n = 0;
        atomic_store_explicit(&t->sp, current_sp(), memory_order_release);
    }
    /* A hold of this thread alone: do its work here and go on. Waiting for the release
     * instead cost the thread a futex wake-up (0.5-2.5 ms when its vCPU had gone idle) and
     * every slice the collector spent off its CPU while holding it (a 4.3 ms hold on
     * binary-trees). Safe in a signal handler: stops never land inside a no-stop region,
     * which is where every lock the marker takes (pool_lock, the heap lock) is held. */
    int work = atomic_load_explicit(&t->hold_work, memory_order_relaxed);
    if (work) {
        uint64_t t0 = plat_now_ns();
        uint64_t c0 = gc_opt.trace >= 2 ? plat_thread_cpu_ns() : 0;
        gc_hold_work(t, work);
        t->self_hold_ns = plat_now_ns() - t0;
        t->self_hold_cpu_ns = gc_opt.trace >= 2 ? plat_thread_cpu_ns() - c0 : 0;
        atomic_store_explicit(&t->parked_epoch, e, memory_order_seq_cst); /* releases the work */
        sem_post(&ack_sem);
        return;
    }
    atomic_store_explicit(&t->stopped, 1, memory_order_release);
    atomic_store_explicit(&t->parked_epoch, e, memory_order_seq_cst);
    sem_post(&ack_sem); /* a wake-up hint: the collector counts parked_epoch, not posts */
    while (atomic_load_explicit(&gc_epoch, memory_order_acquire) == e) futex_wait(&gc_epoch, e);
    atomic_store_explicit(&t->stopped, 0, memory_order_release);
}

/* Whether this thread owes the collector an acknowledgement for the current stop. Keyed on
 * the epoch, not on `stopped`: a stop signal can arrive while the thread is still on its
 * way out of the previous stop. */
static bool stop_owed(gc_thread *t) {
    uint32_t e = atomic_load_explicit(&gc_epoch, memory_order_acquire);
    return (e & 1) && atomic_load_explicit(&t->stop_requested, memory_order_acquire) &&
           atomic_load_explicit(&t->parked_epoch, memory_order_acquire) != e;
}

/* A thread stopped inside an inline barrier fast path (between its read of the phase and
 * its store) restarts the sequence when it resumes, so it reads the phase again: the
 * torn-barrier hazard of DESIGN §3.2 (barrier/barrier.c). */
static void restart_barrier(ucontext_t *uc) {
#if defined(__x86_64__)
    uintptr_t start = gc_barrier_restart_pc((uintptr_t)uc->uc_mcontext.gregs[REG_RIP]);
    if (start) uc->uc_mcontext.gregs[REG_RIP] = (greg_t)start;
#else
    (void)uc;
#endif
}

/* Whether this thread parks for a stop: owed, and RUNNING. A thread inside a blocking region
 * has acknowledged already: the collector holds it by CAS and scans the state it saved at
 * cgc_blocking_enter. Parking there would rewrite that state (registers, stack pointer,
 * regs_from_jb) under the scan — possible when the signal lands just after the region was
 * entered, and often under ThreadSanitizer, which delivers a signal only when the
 * intercepted call returns (gc_stress under TSan caught park racing scan_thread during a
 * handshake hold); the same holds for a safepoint or a deferred stop. Only this thread
 * moves itself out of RUNNING, so the load cannot go stale while it decides. */
static inline bool may_park(gc_thread *t) {
    return t && atomic_load_explicit(&t->state, memory_order_acquire) == GC_RUNNING &&
           stop_owed(t);
}

static void stop_handler(int sig, siginfo_t *si, void *ucv) {
    (void)sig;
    (void)si;
    int saved = errno;
    gc_thread *t = self_for_signal();
    if (may_park(t)) {
        atomic_store_explicit(&t->seen_epoch, atomic_load_explicit(&gc_epoch, memory_order_relaxed),
                              memory_order_relaxed);
        if (alloc_tls_nostop > 0) {
            alloc_tls_stop_deferred = 1; /* park on leaving the region */
        } else {
            restart_barrier(ucv);
            park(t, ucv);
        }
    }
    errno = saved;
}

static void deferred_stop(void) {
    alloc_tls_stop_deferred = 0;
    gc_thread *t = self_for_signal();
    if (may_park(t)) park(t, NULL);
}

void cgc_safepoint(void) {
    gc_thread *t = self_for_signal();
    if (alloc_tls_nostop == 0 && may_park(t)) park(t, NULL);
}

/* ---- registry ---------------------------------------------------------------------------- */
/* The main thread, noted by a constructor (no signal handler, no allocation): the collector
 * registers it at initialisation even when another thread initialises it (DESIGN §3.3). */
static pthread_t main_thread;
static uintptr_t main_tls_lo, main_tls_hi;
static int main_noted;
__attribute__((constructor)) static void note_main_thread(void) {
    main_thread = pthread_self();
    gc_tls_bounds(&main_tls_lo, &main_tls_hi);
    main_noted = 1;
}
static gc_thread *_Atomic main_struct; /* registered for main by another thread, until main
                                          adopts it (read by main's signal handler) */

/* This thread's registration, also for main before it adopted the one made for it.
 * Async-signal-safe. */
static gc_thread *self_for_signal(void) {
    gc_thread *t = gc_self;
    if (t == NULL && main_noted && pthread_equal(pthread_self(), main_thread))
        t = atomic_load_explicit(&main_struct, memory_order_acquire);
    return t;
}

static void fill_bounds_of(gc_thread *t, pthread_t th) {
    pthread_attr_t attr;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(th, &attr) == 0) {
        pthread_attr_getstack(&attr, &addr, &size);
        pthread_attr_destroy(&attr);
    }
    t->stack_lo = (uintptr_t)addr;
    t->stack_hi = (uintptr_t)addr + size;
}

static void fill_bounds(gc_thread *t) {
    fill_bounds_of(t, pthread_self());
    gc_tls_bounds(&t->tls_lo, &t->tls_hi);
}

/* Destructors run key by key, ours possibly before a library's own (Guile frees a thread's
 * VM stack, which its mark procedure reads, in its key destructor and unregisters after):
 * so the first round only re-arms the key, and the thread leaves the registry one round
 * later, after the other destructors (glibc runs up to PTHREAD_DESTRUCTOR_ITERATIONS). */
static CGC_TLS int exit_deferred;
static void thread_exit(void *arg) {
    if (gc_self && !exit_deferred && arg) {
        exit_deferred = 1;
        pthread_setspecific(thread_key, arg);
        return;
    }
    if (gc_self) cgc_thread_unregister();
}

int cgc_thread_register(void) {
    gc_ensure_init();
    if (gc_self) return 0;
    if (main_noted && pthread_equal(pthread_self(), main_thread)) {
        pthread_mutex_lock(&gc_threads_lock);
        gc_thread *m = atomic_load_explicit(&main_struct, memory_order_acquire);
        if (m) gc_self = m; /* registered for us at initialisation */
        atomic_signal_fence(memory_order_seq_cst);
        atomic_store_explicit(&main_struct, NULL, memory_order_release);
        pthread_mutex_unlock(&gc_threads_lock);
        if (m) {
            pthread_setspecific(thread_key, m);
            return 0;
        }
    }
    gc_thread *t;
    pthread_mutex_lock(&gc_threads_lock);
    t = free_threads;
    if (t) free_threads = t->next;
    pthread_mutex_unlock(&gc_threads_lock);
    if (t == NULL) {
        t = alloc_meta_new(sizeof(gc_thread));
        if (t == NULL) return ENOMEM;
    }
    memset(t, 0, sizeof *t);
    t->self = pthread_self();
    t->tid = (pid_t)syscall(SYS_gettid);
    fill_bounds(t); /* may call malloc (main thread: reads /proc/self/maps) */
    pthread_mutex_lock(&gc_threads_lock);
    /* Registered during a mark: the stack scan pass is over or will not see us; our stack
     * holds nothing older than this mark, so we allocate black at once. */
    atomic_store_explicit(&t->alloc_black, atomic_load_explicit(&gc_marking, memory_order_relaxed),
                          memory_order_relaxed);
    t->next = gc_threads;
    gc_threads = t;
    gc_self = t;
    pthread_mutex_unlock(&gc_threads_lock);
    pthread_setspecific(thread_key, t);
    return 0;
}

void cgc_thread_unregister(void) {
    gc_thread *t = gc_self;
    if (t == NULL) return;
    /* Our cache's collected spans stay with the cache; the collector takes them back at the
     * next cycle whether or not we are registered. */
    /* A blocking region while we wait: the collector holds gc_threads_lock from a stop to
     * the restart, and must count us as stopped without the signal, which ThreadSanitizer
     * holds back until pthread_mutex_lock returns (the stop then waited forever). Once we
     * have the lock no stop is in progress and we leave the list, so the region is never
     * left: the struct is reset when it is reused. */
    cgc_blocking_enter();
    pthread_mutex_lock(&gc_threads_lock); /* waits out a cycle in progress */
    for (gc_thread **pp = &gc_threads; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    gc_self = NULL;
    t->next = free_threads;
    free_threads = t;
    pthread_mutex_unlock(&gc_threads_lock);
    pthread_setspecific(thread_key, NULL);
}

void gc_register_initial_thread(void) {
    if (!main_noted || pthread_equal(pthread_self(), main_thread)) return; /* main registers itself */
    gc_thread *t;
    t = alloc_meta_new(sizeof(gc_thread));
    if (t == NULL) return;
    memset(t, 0, sizeof *t);
    t->self = main_thread;
    fill_bounds_of(t, main_thread);
    t->tls_lo = main_tls_lo;
    t->tls_hi = main_tls_hi;
    pthread_mutex_lock(&gc_threads_lock);
    t->next = gc_threads;
    gc_threads = t;
    atomic_store_explicit(&main_struct, t, memory_order_release);
    pthread_mutex_unlock(&gc_threads_lock);
}

gc_thread *gc_require_self(const char *what) {
    gc_thread *t = gc_self;
    if (CGC_LIKELY(t != NULL)) return t;
    if (main_noted && pthread_equal(pthread_self(), main_thread)) {
        cgc_thread_register(); /* main was registered at initialisation: adopt that */
        if (gc_self) return gc_self;
    }
    char buf[256];
    size_t n = alloc_fmt(buf, sizeof buf,
        "cgc: fatal: thread %d %s without cgc_thread_register() (its stack would not be "
        "scanned, so its objects could be freed under it)\n", (int)syscall(SYS_gettid), what);
    plat_write_stderr(buf, n);
    plat_abort();
}

CGC_NOINLINE void cgc_blocking_enter(void) {
    /* The caller's callee-saved registers are pushed in this frame (__builtin_unwind_init),
     * which is gone once we return: copy it, and scan the caller's frames in place. */
    __builtin_unwind_init();
    gc_thread *t = gc_self;
    if (t == NULL) return;
    memset(&t->jb, 0, sizeof t->jb);
    setjmp(t->jb);
    uintptr_t sp = current_sp(), top = (uintptr_t)__builtin_frame_address(0) + 16;
    size_t n = top > sp ? top - sp : 0;
    if (n > sizeof t->spill) { /* keep the part next to the caller: the pushes are there */
        sp = top - sizeof t->spill;
        n = sizeof t->spill;
    }
    memcpy(t->spill, (const void *)sp, n);
    t->spill_n = (unsigned)(n / sizeof(uintptr_t));
    t->regs_from_jb = 1;
    atomic_store_explicit(&t->sp, top, memory_order_release);
    atomic_store_explicit(&t->state, GC_BLOCKING, memory_order_seq_cst);
    if (stop_owed(t)) sem_post(&ack_sem); /* a stop is waiting for us: it can hold us now */
}

void cgc_blocking_leave(void) {
    gc_thread *t = gc_self;
    if (t == NULL) return;
    for (;;) {
        int expect = GC_BLOCKING;
        if (atomic_compare_exchange_strong_explicit(&t->state, &expect, GC_RUNNING,
                                                    memory_order_acq_rel, memory_order_acquire))
            break;
        /* Held by a stopped world: wait for the restart. */
        uint32_t e = atomic_load_explicit(&gc_epoch, memory_order_acquire);
        if (e & 1) futex_wait(&gc_epoch, e);
    }
}

/* ---- stopping the world -------------------------------------------------------------------- */
int gc_stop_may_give_up, gc_stop_gave_up; /* leak mode (gc/leak.c); [gc_threads_lock] */

static bool is_target(gc_thread *t, gc_thread *only) {
    return only ? t == only : t != gc_self;
}

/* Acknowledged this stop: parked, or held in a blocking region (we hold it by CAS). */
static bool acked(gc_thread *t, uint32_t e) {
    if (atomic_load_explicit(&t->parked_epoch, memory_order_acquire) == e) return true;
    int st = atomic_load_explicit(&t->state, memory_order_acquire);
    if (st == GC_BLOCKING_HELD) return true;
    if (st != GC_BLOCKING) return false;
    int expect = GC_BLOCKING;
    return atomic_compare_exchange_strong_explicit(&t->state, &expect, GC_BLOCKING_HELD,
                                                   memory_order_acq_rel, memory_order_acquire) ||
           expect == GC_BLOCKING_HELD;
}

static uint64_t stop_threads(gc_thread *only, int work, bool *self_done) {
    uint64_t t0 = plat_now_ns();
    uint32_t e = atomic_fetch_add_explicit(&gc_epoch, 1, memory_order_acq_rel) + 1; /* odd */
    /* Before stop_requested (seq_cst below), which the thread reads first (acquire). */
    if (only) atomic_store_explicit(&only->hold_work, work, memory_order_relaxed);
    for (gc_thread *t = gc_threads; t; t = t->next) {
        if (!is_target(t, only)) continue;
        atomic_store_explicit(&t->stop_requested, 1, memory_order_seq_cst);
        if (!acked(t, e)) pthread_kill(t->self, gc_opt.signal);
    }
    bool warned = false;
    for (;;) {
        bool all = true;
        for (gc_thread *t = gc_threads; t && all; t = t->next)
            if (is_target(t, only) && !acked(t, e)) all = false;
        if (all) break;
        /* First spin, keeping this CPU: a target running elsewhere answers in 10-80 us,
         * and we see it at once. Not sched_yield: with the mutators keeping both CPUs
         * busy, yielding handed our CPU to the other mutator for its whole slice, and the
         * answer, there in 30 us, was seen 1-4 ms later (a quarter of all holds of
         * perf/binarytrees 20 2 took over 1 ms; a fifth as many with the spin). Past 50
         * us the target is likely waiting for this very CPU: sleep on the semaphore. */
        uint64_t waited = plat_now_ns() - t0;
        if (waited < 50000 && plat_ncpu() > 1) { /* one CPU: nothing to wait for */
            plat_cpu_relax();
            continue;
        }
        /* Every target still out has run its handler (it is on a CPU, deferred to the end
         * of a no-stop region or about to park): keep spinning, up to 1 ms. Asleep here,
         * this thread was woken by the answer only 1-3 ms later now and then (an idle vCPU
         * to wake), and a held thread waited for it: a hold's held part reached 2.9 ms. */
        /* Not for a hold whose thread does the work itself: it does not wait for us, and
         * our spinning took the CPU it needed (self-held threads stayed held 1 ms and more
         * at the 99th percentile on binary-trees while we spun, against 0.07 ms asleep). */
        if (waited < 1000000 && plat_ncpu() > 1 && work == 0) {
            bool running = true;
            for (gc_thread *t = gc_threads; t && running; t = t->next)
                if (is_target(t, only) && !acked(t, e) &&
                    atomic_load_explicit(&t->seen_epoch, memory_order_relaxed) != e)
                    running = false;
            if (running) {
                plat_cpu_relax();
                continue;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        sem_timedwait(&ack_sem, &ts);
        uint64_t now = plat_now_ns();
        if (!warned && now - t0 > 5000000000ull) {
            /* leak mode: a thread that cannot be stopped makes its check give up (a late
             * acknowledgement is harmless: it is keyed on an epoch that has passed) */
            if (gc_stop_may_give_up) {
                gc_stop_gave_up = 1;
                break;
            }
            warned = true;
            static const char msg[] = "cgc: warning: a registered thread has not stopped for 5 s "
                                      "(is the stop signal blocked?)\n";
            plat_write_stderr(msg, sizeof msg - 1);
        }
    }
    while (sem_trywait(&ack_sem) == 0) { /* drop stale hints */
    }
    if (only) {
        /* Read by the thread before it answered; a thread held blocking never read it. It
         * parked (and so did the work) exactly when it answered with parked_epoch: a thread
         * outside RUNNING never parks (may_park). */
        atomic_store_explicit(&only->hold_work, 0, memory_order_relaxed);
        *self_done = atomic_load_explicit(&only->parked_epoch, memory_order_acquire) == e;
    }
    return plat_now_ns() - t0;
}

uint64_t gc_stop_world(void) { return stop_threads(NULL, 0, NULL); }
uint64_t gc_hold_thread(gc_thread *t, int work, bool *self_done) {
    return stop_threads(t, work, self_done);
}

void gc_start_world(void) {
    for (gc_thread *t = gc_threads; t; t = t->next) {
        if (!atomic_load_explicit(&t->stop_requested, memory_order_relaxed)) continue;
        atomic_store_explicit(&t->stop_requested, 0, memory_order_release);
        int expect = GC_BLOCKING_HELD;
        atomic_compare_exchange_strong_explicit(&t->state, &expect, GC_BLOCKING,
                                                memory_order_acq_rel, memory_order_acquire);
    }
    atomic_fetch_add_explicit(&gc_epoch, 1, memory_order_acq_rel); /* even: running */
    futex_wake_all(&gc_epoch);
}


void gc_threads_init(void) {
    sem_init(&ack_sem, 0, 0);
    pthread_key_create(&thread_key, thread_exit);
    alloc_deferred_stop_hook = deferred_stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = stop_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask); /* nothing interrupts a parked thread */
    sigaction(gc_opt.signal, &sa, NULL);
}

/* fork: only the forking thread exists in the child; every other registration goes. */
void gc_threads_fork(int what) {
    if (what == 0) pthread_mutex_lock(&gc_threads_lock);
    else if (what == 1) pthread_mutex_unlock(&gc_threads_lock);
    else {
        pthread_mutex_init(&gc_threads_lock, NULL);
        gc_thread *me = gc_self;
        gc_threads = NULL;
        if (me) {
            me->next = NULL;
            me->self = pthread_self();
            me->tid = (pid_t)syscall(SYS_gettid);
            gc_threads = me;
        }
        atomic_store_explicit(&main_struct, NULL, memory_order_relaxed);
        main_thread = pthread_self(); /* the child's only thread plays main's part */
        sem_init(&ack_sem, 0, 0);
        if (atomic_load_explicit(&gc_epoch, memory_order_relaxed) & 1)
            atomic_fetch_add_explicit(&gc_epoch, 1, memory_order_relaxed);
    }
}
