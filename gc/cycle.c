/* gc/cycle.c — the collection cycle, pacing, finalizers, weak handles, statistics.
 *
 * A cycle (this version: marking with the world stopped; DESIGN §3.1 makes it concurrent):
 *   1. sweep termination: finish sweeping the previous cycle (no thread is stopped);
 *   2. inside a dl_iterate_phdr callback (the loader lock is held: no dlopen can be caught
 *      half-way), take gc_threads_lock and the roots lock, stop the world;
 *   3. mark from the roots, drain; queue the finalizers of unmarked objects and mark from
 *      them (they live one more cycle); clear weak handles whose target is unmarked;
 *      optionally verify the marking (CGC_CHECKMARK);
 *   4. reset the pacer from the marked bytes; put every collected span up for sweeping;
 *   5. restart the world; wake the background sweeper and the finalizer thread.
 * Nothing done while stopped allocates from the heap being collected.
 *
 * Pacing v1: the goal is live * (1 + gc_percent/100) (at least 4 MiB), lowered to the soft
 * memory limit; allocation adds to gc_heap_bytes (in 64 KiB batches per thread) and the
 * allocating thread runs a cycle when it passes the goal. CGC_HEAP_MAX is a hard cap: an
 * allocation that would pass it collects first and fails with ENOMEM if it still would.
 */
#include "cgc/gc.h"

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
    .roots_auto = 1,
    .signal = SIGPWR,
    .finalizer_thread = 1,
};
pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;

#define MIN_GOAL ((uint64_t)4 << 20)
static _Atomic uint64_t gc_goal = MIN_GOAL;
static uint64_t live_after_mark;
static _Atomic uint64_t cycles;
static uint64_t pause_total, pause_max, pauses[CGC_STATS_PAUSES];
static uint64_t start_ns;
static _Atomic uint64_t finalizers_run;


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
        gc_roots_exclude((uintptr_t)alloc_arena_index,
                         (uintptr_t)alloc_arena_index + sizeof alloc_arena_index);
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

/* ---- finalizers ---------------------------------------------------------------------------------- */
typedef struct fin {
    uintptr_t obj;
    void (*fn)(void *, void *);
    void *arg;
    struct fin *next;
} fin;
static pthread_mutex_t final_lock = PTHREAD_MUTEX_INITIALIZER; /* no-stop: the cycle takes it */
/* The finalizer thread sleeps on its own mutex and condition: it may be held (blocking)
 * by a stopped world while it owns them, and the cycle never takes them. */
static pthread_mutex_t final_wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t final_cv = PTHREAD_COND_INITIALIZER;
static _Atomic int final_pending; /* final_ready is non-empty (a hint for the thread) */
static fin *final_table; /* [final_lock] registered, object still reachable */
static fin *final_ready; /* [final_lock] object unreachable: to run, object kept alive */
static fin *final_free;
static int final_thread_started;

void cgc_set_finalizer(void *obj, void (*fn)(void *obj, void *arg), void *arg) {
    gc_ensure_init();
    if (obj == NULL) return;
    alloc_lock(&final_lock);
    for (fin **pp = &final_table; *pp; pp = &(*pp)->next) {
        if ((*pp)->obj == (uintptr_t)obj) {
            fin *f = *pp;
            if (fn == NULL) { /* remove */
                *pp = f->next;
                f->next = final_free;
                final_free = f;
            } else {
                f->fn = fn;
                f->arg = arg;
            }
            alloc_unlock(&final_lock);
            return;
        }
    }
    if (fn) {
        fin *f = final_free;
        if (f) final_free = f->next;
        else {
            f = alloc_meta_new(sizeof(fin));
        }
        if (f) {
            *f = (fin){(uintptr_t)obj, fn, arg, final_table};
            final_table = f;
        }
    }
    alloc_unlock(&final_lock);
}

/* World stopped, roots marked: objects with finalizers that nothing reached move to the
 * ready queue and are marked (with everything they reach) so they survive this cycle. */
void gc_process_finalizers(void) {
    fin **pp = &final_table;
    while (*pp) {
        fin *f = *pp;
        if (gc_is_marked(f->obj)) {
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        f->next = final_ready;
        final_ready = f;
    }
    gc_scan_finalizer_roots();
    gc_drain();
}

void gc_scan_finalizer_roots(void) {
    for (fin *f = final_ready; f; f = f->next) gc_shade(f->obj);
}

int cgc_run_finalizers(void) {
    gc_ensure_init();
    int n = 0;
    for (;;) {
        /* The object must reach this stack before the lock is dropped: once the entry is
         * off the ready queue, this frame is the only thing keeping it alive, and the world
         * can stop as soon as we leave the (no-stop) lock. */
        void *volatile obj = NULL;
        void (*fn)(void *, void *) = NULL;
        void *arg = NULL;
        alloc_lock(&final_lock);
        fin *f = final_ready;
        if (f) {
            final_ready = f->next;
            obj = (void *)f->obj;
            fn = f->fn;
            arg = f->arg;
            f->next = final_free;
            final_free = f;
        }
        alloc_unlock(&final_lock);
        if (f == NULL) break;
        fn(obj, arg);
        obj = NULL;
        n++;
        atomic_fetch_add_explicit(&finalizers_run, 1, memory_order_relaxed);
    }
    return n;
}

static void *finalizer_main(void *arg) {
    (void)arg;
    cgc_thread_register();
    for (;;) {
        cgc_blocking_enter();
        pthread_mutex_lock(&final_wait_lock);
        while (!atomic_load_explicit(&final_pending, memory_order_acquire))
            pthread_cond_wait(&final_cv, &final_wait_lock);
        atomic_store_explicit(&final_pending, 0, memory_order_relaxed);
        pthread_mutex_unlock(&final_wait_lock);
        cgc_blocking_leave();
        cgc_run_finalizers();
    }
    return NULL;
}

static void wake_finalizers(void) {
    alloc_lock(&final_lock);
    bool any = final_ready != NULL;
    alloc_unlock(&final_lock);
    if (!gc_opt.finalizer_thread || !any) return;
    pthread_mutex_lock(&final_wait_lock);
    /* The finalizer thread runs user code on the collected heap: it is registered, so it
     * must take the stop signal. */
    if (!final_thread_started)
        final_thread_started = plat_spawn_detached(finalizer_main, NULL, 0, gc_opt.signal);
    atomic_store_explicit(&final_pending, 1, memory_order_release);
    pthread_cond_signal(&final_cv);
    pthread_mutex_unlock(&final_wait_lock);
}

/* ---- weak handles ---------------------------------------------------------------------------- */
struct cgc_weak {
    void *target; /* cleared by the collector once the target is collected */
};
typedef struct weak_ref {
    cgc_weak *h;
    struct weak_ref *next;
} weak_ref;
static weak_ref *weak_list, *weak_free; /* [final_lock] */

cgc_weak *cgc_weak_new(void *obj) {
    cgc_weak *h = cgc_alloc_leaf(sizeof(cgc_weak)); /* leaf: the target is not traced */
    if (h == NULL) return NULL;
    h->target = obj;
    alloc_lock(&final_lock);
    weak_ref *r = weak_free;
    if (r) weak_free = r->next;
    else {
        r = alloc_meta_new(sizeof(weak_ref));
    }
    if (r) {
        r->h = h;
        r->next = weak_list;
        weak_list = r;
    }
    alloc_unlock(&final_lock);
    return h;
}

void *cgc_weak_get(const cgc_weak *w) {
    /* Marking happens with the world stopped, so a plain read is consistent. */
    return w ? ((volatile const cgc_weak *)w)->target : NULL;
}

/* World stopped, finalizers processed: clear handles whose target is unmarked; forget
 * handles that are themselves unmarked (collected). */
void gc_process_weak(void) {
    weak_ref **pp = &weak_list;
    while (*pp) {
        weak_ref *r = *pp;
        if (!gc_is_marked((uintptr_t)r->h)) {
            *pp = r->next;
            r->next = weak_free;
            weak_free = r;
            continue;
        }
        if (r->h->target && !gc_is_marked((uintptr_t)r->h->target)) r->h->target = NULL;
        pp = &r->next;
    }
}

/* ---- the cycle -------------------------------------------------------------------------------- */
typedef struct cycle_times {
    uint64_t t_start, stop_wait, t_stopped, t_marked, t_end;
    uint64_t prev_freed; /* objects the previous cycle's sweep reclaimed (complete by now) */
    uint64_t heap_before;
    unsigned nthreads;
} cycle_times;

static void compute_goal(void) {
    uint64_t goal = MIN_GOAL;
    if (gc_opt.gc_percent >= 0) {
        uint64_t g = live_after_mark + live_after_mark / 100 * (uint64_t)gc_opt.gc_percent +
                     gc_roots_bytes_last / 100 * (uint64_t)gc_opt.gc_percent;
        if (g > goal) goal = g;
    }
    if (gc_opt.memory_limit != UINT64_MAX && goal > gc_opt.memory_limit) {
        goal = gc_opt.memory_limit > live_after_mark + (1u << 20) ? gc_opt.memory_limit
                                                                   : live_after_mark + (1u << 20);
    }
    atomic_store_explicit(&gc_goal, goal, memory_order_relaxed);
}

static void stopped_work(cycle_times *ct) {
    ct->stop_wait = gc_stop_world();
    ct->t_stopped = plat_now_ns();
    unsigned n = 0;
    for (gc_thread *t = gc_threads; t; t = t->next) n++;
    ct->nthreads = n;
    gc_marked_bytes = 0;
    gc_mark_reset_cache();
    /* Taken only now: a mutator waiting for it is in a no-stop region and would never
     * acknowledge the stop if we had held it across stop_world. */
    gc_roots_lock();
    gc_scan_roots();
    gc_scan_finalizer_roots();
    gc_drain();
    alloc_lock(&final_lock);
    gc_process_finalizers();
    gc_process_weak();
    alloc_unlock(&final_lock);
    if (gc_opt.checkmark) gc_checkmark();
    gc_roots_unlock();
    ct->t_marked = plat_now_ns();
    __atomic_store_n(&live_after_mark, gc_marked_bytes, __ATOMIC_RELAXED); /* cgc_get_stats reads it */
    atomic_store_explicit(&gc_heap_bytes, live_after_mark, memory_order_relaxed);
    compute_goal();
    gc_prepare_sweep();
    gc_start_world();
    ct->t_end = plat_now_ns();
}

static int cycle_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)info;
    (void)size;
    stopped_work(arg);
    return 1; /* once: the loader lock is what we wanted */
}

static void trace_line(const cycle_times *ct) {
    const double ms = 1e6, mb = 1024.0 * 1024.0;
    uint64_t n = atomic_load_explicit(&cycles, memory_order_relaxed);
    double since = (double)(ct->t_start - start_ns) / 1e9;
    double wall = (double)(ct->t_end - ct->t_start);
    double share = since > 0 ? 100.0 * (double)pause_total / ((double)(ct->t_end - start_ns)) : 0;
    char buf[400];
    size_t len = alloc_fmt(buf, sizeof buf,
        "cgc %llu @%.3fs %.0f%%: %.3f+%.3f+%.3f ms clock, %.3f ms stopped, %.1f->%.1f MB, "
        "%.1f MB goal, %.1f MB roots, %llu freed by the last sweep, %u T\n",
        (unsigned long long)n, since, share, (double)ct->stop_wait / ms,
        (double)(ct->t_marked - ct->t_stopped) / ms, (double)(ct->t_end - ct->t_marked) / ms,
        wall / ms, (double)ct->heap_before / mb, (double)live_after_mark / mb,
        (double)atomic_load_explicit(&gc_goal, memory_order_relaxed) / mb,
        (double)gc_roots_bytes_last / mb,
        (unsigned long long)ct->prev_freed, ct->nthreads);
    plat_write_stderr(buf, len);
}

static void collect(bool finish_sweep) {
    gc_ensure_init();
    gc_require_self("ran a collection");
    gc_finish_sweep(); /* sweep termination: marks must describe this cycle only */
    cycle_times ct;
    memset(&ct, 0, sizeof ct);
    ct.prev_freed = atomic_load_explicit(&gc_freed_objects_last, memory_order_relaxed);
    atomic_fetch_add_explicit(&gc_freed_total, ct.prev_freed, memory_order_relaxed);
    ct.t_start = plat_now_ns();
    ct.heap_before = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    pthread_mutex_lock(&gc_threads_lock);
    dl_iterate_phdr(cycle_cb, &ct);
    pthread_mutex_unlock(&gc_threads_lock);
    uint64_t pause = ct.t_end - ct.t_start;
    uint64_t n = atomic_load_explicit(&cycles, memory_order_relaxed);
    /* Relaxed atomic stores: cgc_get_stats reads these without gc_lock (TSan). */
    __atomic_store_n(&pauses[n % CGC_STATS_PAUSES], pause, __ATOMIC_RELAXED);
    __atomic_store_n(&pause_total, pause_total + pause, __ATOMIC_RELAXED);
    if (pause > pause_max) __atomic_store_n(&pause_max, pause, __ATOMIC_RELAXED);
    atomic_store_explicit(&cycles, n + 1, memory_order_release);
    /* An explicit cgc_collect() returns with the heap swept; a paced cycle leaves the
     * sweeping to allocation (lazy) and the background sweeper. */
    if (finish_sweep) gc_finish_sweep();
    else gc_sweeper_wake();
    if (gc_opt.trace) trace_line(&ct);
}

void cgc_collect(void) {
    gc_ensure_init();
    pthread_mutex_lock(&gc_lock);
    collect(true);
    pthread_mutex_unlock(&gc_lock);
    wake_finalizers();
}

/* Allocation passed the goal: collect, unless another thread just did. */
static void triggered(void) {
    uint64_t seen = atomic_load_explicit(&cycles, memory_order_acquire);
    cgc_blocking_enter(); /* waiting for gc_lock must not hold up another collector */
    pthread_mutex_lock(&gc_lock);
    cgc_blocking_leave();
    if (atomic_load_explicit(&cycles, memory_order_acquire) == seen &&
        atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed) >=
            atomic_load_explicit(&gc_goal, memory_order_relaxed)) {
        collect(false);
    }
    pthread_mutex_unlock(&gc_lock);
    wake_finalizers();
}

void gc_account(uint64_t bytes) {
    uint64_t now = atomic_fetch_add_explicit(&gc_heap_bytes, bytes, memory_order_relaxed) + bytes;
    if (gc_opt.gc_percent >= 0 && now >= atomic_load_explicit(&gc_goal, memory_order_relaxed))
        triggered();
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
    h->type = elem;
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
    st->gc_finalizers_run = atomic_load_explicit(&finalizers_run, memory_order_relaxed);
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
    if (alloc_tls_nostop > 0 || fork_mutex_mine(&gc_lock) || fork_mutex_mine(&gc_threads_lock)) {
        alloc_tls_fork_skip = 2;
        return;
    }
    alloc_tls_fork_checked = 1;
    pthread_mutex_lock(&gc_lock);
    gc_threads_fork(0);
    gc_roots_fork(0);
    alloc_nostop_enter();
    pthread_mutex_lock(&final_lock);
    pthread_mutex_lock(&final_wait_lock);
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
    pthread_mutex_unlock(&final_wait_lock);
    pthread_mutex_unlock(&final_lock);
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
    pthread_mutex_init(&final_wait_lock, NULL);
    pthread_cond_init(&final_cv, NULL);
    pthread_mutex_init(&final_lock, NULL);
    final_thread_started = 0;
    alloc_tls_stop_deferred = 0;
    alloc_tls_nostop--;
    gc_roots_fork(2);
    gc_threads_fork(2);
    pthread_mutex_init(&gc_lock, NULL);
}
