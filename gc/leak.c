/* gc/leak.c — leak mode (DESIGN §5): find, and with CGC_LEAKS=collect free, the malloc
 * blocks a preloaded program lost: allocated, never freed, and reachable from no root.
 *
 * Allocation. In leak mode every malloc entry point (alloc/interpose.c tests leak_mode once)
 * comes here: the site is captured, then — in one no-stop region, so no check can fall
 * between them — the block is allocated as usual and its span's side table gets one word
 * for it: site id, requested size, "tracked" (include/cgc/leak.h). Without that region a
 * check could meet a block the allocator has handed out whose address is not yet anywhere
 * (a new large block is known only by its span until alloc_large returns), and call it
 * lost. free() is the allocator's, untouched (a freed slot is told apart by the allocator's
 * freed tag and remote bits, so its stale side word is never read).
 *
 * Threads. Every thread must be a root. pthread_create is interposed (the start routine is
 * wrapped to unblock the stop signal and register the thread with the collector), and a
 * thread that reaches malloc unregistered (made before we were loaded, or by other means)
 * registers there. The stack of a thread that exited stays mapped in glibc's stack cache
 * with stale words in it: the stacks threads were registered with are remembered and their
 * frames skipped once the kernel has cleared the descriptor's tid (the thread is gone) while
 * the descriptor is still glibc's. A stopped thread's stack is scanned from 16 KiB below its
 * saved stack pointer (the signal frame with its vector registers; callee-saved registers
 * pushed below a frame address), and setjmp's mangled rbp is unmangled.
 *
 * The cycle (leak_run_cycle), with gc_lock and gc_threads_lock held, inside a
 * dl_iterate_phdr callback like the collector's (no thread can be stopped inside the loader):
 *   0. give up if a registered thread blocks the stop signal (it could never be stopped;
 *      glibc blocks all signals for a moment at thread creation and exit, so that is first
 *      waited out for ~50 ms, before the registry is locked);
 *   1. stop the world (gc_stop_world; a stop that times out gives up the cycle);
 *   2. give every malloc span a side table (blocks allocated before leak mode have none);
 *   3. mark, conservatively, from: module data/bss and registered roots (gc/roots.c);
 *      every registered thread's stack from its saved stack pointer, registers and static
 *      TLS; every other writable private anonymous mapping of the process (/proc/self/maps)
 *      that is not cgc's own (plat_own_mappings), not a module's, not a thread stack
 *      scanned above or a dead thread's, read through process_vm_readv (a thread the stop
 *      does not hold may unmap it meanwhile); then every marked block's requested bytes,
 *      transitively. Interior pointers count;
 *   4. walk every malloc block: marked -> clear the mark; allocated and unmarked -> lost;
 *   5. restart the world; then report (gc/leak_report.c) or free the lost blocks.
 * Nothing proportional to the heap is avoided while stopped: leak cycles are rare (exit,
 * CGC_LEAKS_INTERVAL), and a program under a leak checker expects to pay.
 *
 * When: at exit (a destructor: the program's own destructors have run); every
 * CGC_LEAKS_INTERVAL seconds, checked when a thread has allocated another 256 KiB; or with
 * CGC_LEAKS_INTERVAL=cycle (the default under collect) whenever the program has malloc'd
 * max(16 MiB, the reachable bytes of the last cycle) since the last cycle. A cycle runs on
 * the allocating thread, before its allocation, never inside an allocator lock.
 */
#include "cgc/leak.h"
#include "cgc/gc.h"
#include "cgc/trace.h"

#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

int leak_mode;
const char *leak_file_path, *leak_json_path;

static int started;                 /* options read, collector initialised */
static int constructed;             /* our constructor ran: the C library is ready */
static uint64_t interval_ns;        /* CGC_LEAKS_INTERVAL seconds (0: none) */
static int interval_cycle;          /* CGC_LEAKS_INTERVAL=cycle */
static uint64_t start_ns;
static _Atomic uint64_t alloc_since; /* bytes malloc'd since the last cycle */
static _Atomic uint64_t last_cycle_ns;
static _Atomic int cycle_busy;
static uint64_t trigger_bytes = (uint64_t)16 << 20;
static CGC_TLS uint64_t tls_bytes;  /* not yet added to alloc_since */
static CGC_TLS int tls_busy;         /* inside leak code: nested mallocs go straight through */

/* statistics (cgc_stats version 3) */
static _Atomic uint64_t st_cycles, st_lost_blocks, st_lost_bytes, st_freed_blocks, st_freed_bytes,
    st_gave_up;

/* ---- options -------------------------------------------------------------------------------- */
void leak_parse_mode(void) {
    const char *v = plat_getenv("CGC_LEAKS");
    if (v == NULL || *v == 0 || strcmp(v, "0") == 0 || strcmp(v, "off") == 0) return;
    if (strcmp(v, "report") == 0 || strcmp(v, "1") == 0) leak_mode = LEAK_REPORT;
    else if (strcmp(v, "collect") == 0) leak_mode = LEAK_COLLECT;
    else {
        static const char msg[] = "cgc: warning: bad value for CGC_LEAKS (report|collect); leak mode off\n";
        plat_write_stderr(msg, sizeof msg - 1);
    }
}

static void bad(const char *name, const char *v) {
    char buf[200];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc: warning: bad value '%.60s' for %s (default kept)\n",
                         v, name);
    plat_write_stderr(buf, n);
}

static void read_options(void) {
    const char *v;
    interval_cycle = leak_mode == LEAK_COLLECT;
    if ((v = plat_getenv("CGC_LEAKS_INTERVAL")) != NULL && *v) {
        char *end;
        double s = strtod(v, &end);
        if (strcmp(v, "cycle") == 0) interval_cycle = 1;
        else if (strcmp(v, "exit") == 0) interval_cycle = 0;
        else if (end != v && *end == 0 && s > 0 && s < 1e6) {
            interval_ns = (uint64_t)(s * 1e9);
            interval_cycle = 0;
        } else bad("CGC_LEAKS_INTERVAL", v);
    }
    if ((v = plat_getenv("CGC_LEAKS_STACKS")) != NULL && *v) {
        char *end;
        if (strcmp(v, "all") == 0) leak_sample_every = 1;
        else if (strcmp(v, "verify") == 0) leak_sample_every = 1, leak_stacks_verify = 1;
        else if (strncmp(v, "sample:", 7) == 0 && strtoul(v + 7, &end, 10) >= 1 && *end == 0)
            leak_sample_every = (uint32_t)strtoul(v + 7, NULL, 10);
        else bad("CGC_LEAKS_STACKS", v);
    }
    if ((v = plat_getenv("CGC_LEAKS_FILE")) != NULL && *v) leak_file_path = v;
    if ((v = plat_getenv("CGC_LEAKS_JSON")) != NULL && *v) leak_json_path = v;
}

/* ---- side tables ------------------------------------------------------------------------------
 * One word per slot, power-of-two capacities (16 B slots: 1024 words). A span struct keeps
 * its table when recycled; one too small for the span's new class goes back to a free
 * list by capacity. The capacity is the word before the first entry. */
#define SIDE_CLASSES 11 /* capacities 1 .. 1024 */
#define SIDE_CHUNK ((size_t)4 << 20)
static pthread_mutex_t side_lock = PTHREAD_MUTEX_INITIALIZER; /* no-stop */
static uint64_t *side_free[SIDE_CLASSES];                     /* [side_lock] */
static char *side_cur, *side_end;                             /* [side_lock] */

static unsigned side_class(uint32_t need) {
    unsigned c = 0;
    while (((uint32_t)1 << c) < need) c++;
    return c;
}

/* [side_lock] */
static uint64_t *side_alloc(unsigned cls) {
    uint64_t *t = side_free[cls];
    if (t) {
        side_free[cls] = (uint64_t *)t[0];
        memset(t, 0, ((size_t)1 << cls) * sizeof *t);
        return t;
    }
    size_t bytes = (((size_t)1 << cls) + 1) * sizeof(uint64_t);
    bytes = (bytes + 15) & ~(size_t)15;
    if ((size_t)(side_end - side_cur) < bytes) {
        char *c = plat_map(SIDE_CHUNK);
        if (c == NULL) return NULL;
        side_cur = c;
        side_end = c + SIDE_CHUNK;
    }
    uint64_t *h = (uint64_t *)side_cur;
    side_cur += bytes;
    h[0] = (uint64_t)1 << cls;
    return h + 1;
}

static uint32_t span_slots(const alloc_span *s) {
    return alloc_span_state(s) == SPAN_SMALL ? s->nelems : 1;
}

/* The span's side table with room for every slot, made or replaced if needed. The caller
 * allocates from s (owner), or the world is stopped. NULL when out of memory. */
static uint64_t *side_of(alloc_span *s) {
    uint32_t need = span_slots(s);
    uint64_t *t = __atomic_load_n(&s->leak_side, __ATOMIC_ACQUIRE);
    if (CGC_LIKELY(t != NULL && t[-1] >= need)) return t;
    alloc_lock(&side_lock);
    t = __atomic_load_n(&s->leak_side, __ATOMIC_ACQUIRE);
    if (t == NULL || t[-1] < need) {
        uint64_t *nt = side_alloc(side_class(need));
        if (nt) {
            if (t) {
                unsigned oc = side_class((uint32_t)t[-1]);
                t[0] = (uint64_t)(uintptr_t)side_free[oc];
                side_free[oc] = t;
            }
            __atomic_store_n(&s->leak_side, nt, __ATOMIC_RELEASE);
        }
        t = nt;
    }
    alloc_unlock(&side_lock);
    return t;
}

static inline uint64_t side_word(uint32_t site, size_t n) {
    uint64_t sz = n > 0xffffffffu ? 0xffffffffu : n;
    return LEAK_TRACKED | ((uint64_t)(site & LEAK_SITE_MASK) << LEAK_SITE_SHIFT) | sz;
}

/* ---- threads ---------------------------------------------------------------------------------
 * Stacks of registered threads, remembered (by thread pointer) so that once a thread exits,
 * its stack in glibc's cache is not mistaken for program memory. */
#define SEEN_MAX 4096
typedef struct seen_stack {
    uintptr_t lo, hi, tp;
} seen_stack;
static seen_stack *seen;        /* [seen_lock] mapped */
static size_t nseen, seen_next;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER; /* no-stop */

/* Offset of glibc's tid field in the thread descriptor (the kernel clears it when the
 * thread is gone: CLONE_CHILD_CLEARTID), found by looking for this thread's tid in its own
 * descriptor. 0: not found (dead threads' stacks are then scanned like program memory). */
static size_t tid_off;

static void find_tid_offset(void) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    const int32_t *d = (const int32_t *)(uintptr_t)pthread_self();
    for (size_t i = 8; i < 0x600 / 4; i++) {
        if (d[i] == (int32_t)tid) {
            tid_off = i * 4;
            return;
        }
    }
}

static void remember_stack(void) {
    gc_thread *t = gc_self;
    uintptr_t tp = (uintptr_t)pthread_self();
    if (t == NULL || tp < t->stack_lo || tp >= t->stack_hi) return; /* main: no cached stack */
    alloc_lock(&seen_lock);
    if (seen == NULL) seen = plat_map(SEEN_MAX * sizeof *seen);
    if (seen) {
        size_t i;
        for (i = 0; i < nseen; i++)
            if (seen[i].tp == tp) break;
        if (i == nseen) {
            if (nseen < SEEN_MAX) i = nseen++;
            else i = seen_next++ % SEEN_MAX; /* forgetting one only makes marking keep more */
        }
        seen[i] = (seen_stack){t->stack_lo, t->stack_hi, tp};
    }
    alloc_unlock(&seen_lock);
}

/* Register the calling thread, once: a thread whose registration was dropped by its exit
 * (the collector's key destructor) may still malloc in later destructors, and must not be
 * registered again on its way out (it would stay registered after it is gone). */
static CGC_TLS int tls_registered;

static void register_self(void) {
    if (gc_self || tls_registered) return;
    tls_registered = 1;
    tls_busy++;
    cgc_thread_register();
    remember_stack();
    tls_busy--;
}

static void start_mode(void);

typedef struct start_pack {
    void *(*start)(void *);
    void *arg;
} start_pack;

static void *thread_start(void *p) {
    start_pack sp = *(start_pack *)p;
    cgc_free(p);
    /* A thread that blocks every signal (a common pattern) must still answer the stop
     * request, or no leak check could run: unblock just that one, as bdwgc does. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, gc_opt.signal);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    register_self();
    return sp.start(sp.arg);
}

int leak_pthread_create(leak_pthread_create_fn real, pthread_t *th, const pthread_attr_t *attr,
                        void *(*start)(void *), void *arg) {
    /* cgc's own helper threads (scavenger, sweeper...) are never registered: they keep
     * every signal blocked and hold no program pointer. */
    if (!leak_mode || leak_own_code((uintptr_t)start)) return real(th, attr, start, arg);
    if (!started && constructed) start_mode();
    start_pack *p = cgc_malloc(sizeof *p); /* not a program block: no site */
    if (p == NULL) return EAGAIN;
    p->start = start;
    p->arg = arg;
    int r = real(th, attr, thread_start, p);
    if (r != 0) cgc_free(p);
    return r;
}

static void leak_fork_prepare(void) {
    leak_sites_fork(0);
    alloc_lock(&side_lock);
    alloc_lock(&seen_lock);
}
static void leak_fork_parent(void) {
    alloc_unlock(&seen_lock);
    alloc_unlock(&side_lock);
    leak_sites_fork(1);
}
static void leak_fork_child(void) {
    pthread_mutex_init(&seen_lock, NULL);
    alloc_nostop_leave();
    pthread_mutex_init(&side_lock, NULL);
    alloc_nostop_leave();
    leak_sites_fork(2);
    atomic_store_explicit(&cycle_busy, 0, memory_order_relaxed);
}

static void leak_stats(cgc_stats *st);

/* First leak-mode allocation after the library's constructors ran (or the constructor). */
static void start_mode(void) {
    static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
    if (__atomic_load_n(&started, __ATOMIC_ACQUIRE)) return;
    tls_busy++;
    pthread_mutex_lock(&start_lock);
    if (!started) {
        read_options();
        leak_sites_init();
        find_tid_offset();
        gc_ensure_init();
        alloc_leak_stats_hook = leak_stats;
        pthread_atfork(leak_fork_prepare, leak_fork_parent, leak_fork_child);
        start_ns = plat_now_ns();
        atomic_store_explicit(&last_cycle_ns, start_ns, memory_order_relaxed);
        __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&start_lock);
    tls_busy--;
    register_self();
}

__attribute__((constructor)) static void leak_constructor(void) {
    alloc_ensure_init();
    constructed = 1;
    if (leak_mode) start_mode();
}

__attribute__((destructor)) static void leak_destructor(void) {
    if (leak_mode && started) leak_run_cycle("exit");
}

/* ---- allocation ------------------------------------------------------------------------------- */
static CGC_NOINLINE void maybe_cycle(size_t n) {
    uint64_t add = tls_bytes + n;
    tls_bytes = 0;
    uint64_t since = atomic_fetch_add_explicit(&alloc_since, add, memory_order_relaxed) + add;
    bool due = false;
    if (interval_cycle && since >= trigger_bytes) due = true;
    if (interval_ns && plat_coarse_now_ns() - atomic_load_explicit(&last_cycle_ns, memory_order_relaxed) >= interval_ns)
        due = true;
    if (!due || alloc_tls_nostop != 0) return;
    int expect = 0;
    if (!atomic_compare_exchange_strong_explicit(&cycle_busy, &expect, 1, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return;
    leak_run_cycle(interval_cycle ? "cycle" : "interval");
    atomic_store_explicit(&cycle_busy, 0, memory_order_release);
}

/* The site of the allocation being made (captured before the allocation, outside the
 * no-stop region: unwinding may wait for the loader lock, which a check holds). */
static uint32_t site_now(void *ra) {
    if (tls_busy) return 0;
    tls_busy++;
    uint32_t site = leak_site_capture(ra);
    tls_busy--;
    return site;
}

/* Allocation and its side word form one no-stop region: a check never sees a block that
 * the allocator has handed out but whose pointer is not yet anywhere it can look (a new
 * large block is known only by its span until alloc_large returns), nor a stale word. */
#define ALLOC_NOTED(call, p, n, site)                                                           \
    do {                                                                                       \
        alloc_nostop_enter();                                                                  \
        p = call;                                                                              \
        note(p, n, site);                                                                      \
        alloc_nostop_leave();                                                                  \
    } while (0)

/* Record the block p (n bytes requested) just allocated at site. */
static void note(void *p, size_t n, uint32_t site) {
    if (p == NULL) return;
    alloc_span *s = alloc_span_of(p);
    if (s == NULL) return;
    uint64_t *t = side_of(s);
    if (t == NULL) return;
    uint32_t idx = alloc_span_state(s) == SPAN_SMALL ? alloc_slot_index(s, (uintptr_t)p) : 0;
    __atomic_store_n(&t[idx], side_word(site, n), __ATOMIC_RELAXED);
}

/* Before allocating: start leak mode, register the thread, run a due cycle. */
static inline void before(size_t n) {
    if (CGC_UNLIKELY(!started)) {
        if (!constructed || tls_busy) return;
        start_mode();
    }
    /* Never inside a no-stop region (a nested malloc from within an allocation): the
     * registry lock may be held by a check waiting for this very thread to stop. */
    if (CGC_UNLIKELY(gc_self == NULL) && !tls_busy && alloc_tls_nostop == 0) register_self();
    tls_bytes += n;
    if (CGC_UNLIKELY(tls_bytes >= ((uint64_t)256 << 10)) && !tls_busy) maybe_cycle(0);
}

void *leak_malloc(size_t n, void *ra) {
    before(n);
    uint32_t site = site_now(ra);
    void *p;
    ALLOC_NOTED(cgc_malloc(n), p, n, site);
    return p;
}

void *leak_calloc(size_t count, size_t n, void *ra) {
    size_t total = 0;
    if (!__builtin_mul_overflow(count, n, &total)) before(total);
    uint32_t site = site_now(ra);
    void *p;
    ALLOC_NOTED(cgc_calloc(count, n), p, total, site);
    return p;
}

void *leak_realloc(void *p, size_t n, void *ra) {
    before(n);
    uint32_t site = site_now(ra);
    void *q;
    ALLOC_NOTED(cgc_realloc(p, n), q, n, site);
    return q;
}

void *leak_reallocarray(void *p, size_t count, size_t n, void *ra) {
    size_t total = 0;
    if (!__builtin_mul_overflow(count, n, &total)) before(total);
    uint32_t site = site_now(ra);
    void *q;
    ALLOC_NOTED(cgc_reallocarray(p, count, n), q, total, site);
    return q;
}

int leak_posix_memalign(void **out, size_t align, size_t n, void *ra) {
    before(n);
    uint32_t site = site_now(ra);
    void *p = NULL;
    int r;
    alloc_nostop_enter();
    r = cgc_posix_memalign(&p, align, n);
    if (r == 0) {
        note(p, n, site);
        *out = p;
    }
    alloc_nostop_leave();
    return r;
}

void *leak_aligned_alloc(size_t align, size_t n, void *ra) {
    before(n);
    uint32_t site = site_now(ra);
    void *p;
    ALLOC_NOTED(cgc_aligned_alloc(align, n), p, n, site);
    return p;
}

void *leak_memalign(size_t align, size_t n, void *ra) {
    before(n);
    uint32_t site = site_now(ra);
    void *p;
    ALLOC_NOTED(cgc_memalign(align, n), p, n, site);
    return p;
}

/* ---- growable mapped arrays (never malloc: the world may be stopped) ------------------------- */
typedef struct vec {
    void *p;
    size_t n, cap, elem;
} vec;

static bool vec_reserve(vec *v, size_t want) {
    if (want <= v->cap) return true;
    size_t ncap = v->cap ? v->cap * 2 : 4096;
    while (ncap < want) ncap *= 2;
    void *np = plat_map(ncap * v->elem);
    if (np == NULL) return false;
    if (v->p) {
        memcpy(np, v->p, v->n * v->elem);
        plat_unmap(v->p, v->cap * v->elem);
    }
    v->p = np;
    v->cap = ncap;
    return true;
}

static void vec_free(vec *v) {
    if (v->p) plat_unmap(v->p, v->cap * v->elem);
    v->p = NULL;
    v->n = v->cap = 0;
}


/* ---- marking (the world is stopped) ------------------------------------------------------------ */
static vec mark_stack = {.elem = sizeof(uintptr_t)};
static vec lost = {.elem = sizeof(leak_block)};
static bool mark_oom;
/* Heap bounds for this cycle; in our bss (a root), so kept disguised (ALLOC_DISGUISE). */
static uintptr_t heap_lo_x, heap_hi_x;
#define heap_lo (heap_lo_x ^ ALLOC_DISGUISE)
#define heap_hi (heap_hi_x ^ ALLOC_DISGUISE)
static uint64_t scanned_bytes;

/* The side word of the allocated malloc block containing a, and its start; else NULL. */
static inline uint64_t *block_of(uintptr_t a, uintptr_t *base) {
    alloc_span *s = alloc_span_of((void *)a);
    if (s == NULL || s->kind != ALLOC_KIND_MALLOC || s->leak_side == NULL) return NULL;
    uint8_t st = alloc_span_state(s);
    if (st == SPAN_SMALL) {
        uint32_t idx = alloc_slot_index(s, a);
        if (idx >= atomic_load_explicit(&s->bump, memory_order_relaxed)) return NULL;
        uintptr_t b = s->start + (uintptr_t)idx * s->elem_size;
        if (((const uintptr_t *)b)[1] == alloc_freed_tag((void *)b)) return NULL; /* free */
        if (alloc_bits_load(&s->remote_bits[idx >> 6]) & ((uint64_t)1 << (idx & 63))) return NULL;
        *base = b;
        return &s->leak_side[idx];
    }
    if (st == SPAN_LARGE) {
        *base = s->start;
        return &s->leak_side[0];
    }
    return NULL;
}

static size_t usable_of(uintptr_t base) {
    alloc_span *s = alloc_span_of((void *)base);
    return alloc_span_state(s) == SPAN_SMALL ? s->elem_size : s->npages * ALLOC_PAGE_SIZE;
}

/* Bytes of the block that can hold program data: the requested size when known. */
static size_t block_size(uintptr_t base, uint64_t w) {
    size_t usable = usable_of(base);
    if (!(w & LEAK_TRACKED)) return usable;
    size_t sz = (size_t)(w & 0xffffffffu);
    return sz == 0xffffffffu || sz > usable ? usable : sz;
}

static inline void mark_word(uintptr_t v) {
    if (v - heap_lo >= heap_hi - heap_lo) return;
    uintptr_t base;
    uint64_t *w = block_of(v, &base);
    if (w == NULL || (*w & LEAK_MARK)) return;
    *w |= LEAK_MARK;
    if (!vec_reserve(&mark_stack, mark_stack.n + 1)) {
        mark_oom = true;
        return;
    }
    ((uintptr_t *)mark_stack.p)[mark_stack.n++] = base;
}

/* glibc's setjmp stores rbp (and rsp, rip) mangled with the thread's pointer guard, which is
 * the same in every thread (fs:0x30): a pointer held only in rbp must be unmangled to be
 * seen. (Layout: rbx, rbp, r12..r15, rsp, pc.) */
static void mark_jmpbuf(const jmp_buf *jb) {
    const uintptr_t *w = (const uintptr_t *)jb;
    uintptr_t guard;
    __asm__("mov %%fs:0x30, %0" : "=r"(guard));
    for (size_t i = 0; i < sizeof(jmp_buf) / (sizeof(uintptr_t)); i++) mark_word(w[i]);
    uintptr_t rbp = w[1];
    rbp = ((rbp >> 0x11) | (rbp << (64 - 0x11))) ^ guard;
    mark_word(rbp);
}

static void mark_range(uintptr_t lo, uintptr_t hi) {
    lo = (lo + 7) & ~(uintptr_t)7;
    scanned_bytes += hi > lo ? hi - lo : 0;
    for (uintptr_t a = lo; a + sizeof(uintptr_t) <= hi; a += sizeof(uintptr_t)) {
        uintptr_t v = *(const uintptr_t *)a;
        if (v - heap_lo >= heap_hi - heap_lo) continue;
        uintptr_t base;
        uint64_t *w = block_of(v, &base);
        if (w == NULL || (*w & LEAK_MARK)) continue;
        *w |= LEAK_MARK;
        if (!vec_reserve(&mark_stack, mark_stack.n + 1)) {
            mark_oom = true;
            continue;
        }
        ((uintptr_t *)mark_stack.p)[mark_stack.n++] = base;
    }
}

static void drain(void) {
    while (mark_stack.n > 0) {
        uintptr_t base = ((uintptr_t *)mark_stack.p)[--mark_stack.n];
        uintptr_t b2;
        uint64_t *w = block_of(base, &b2);
        if (w == NULL) continue;
        mark_range(base, base + block_size(base, *w));
    }
}

static __attribute__((noinline)) void scan_self(gc_thread *t) {
    jmp_buf jb; /* the callee-saved registers */
    memset(&jb, 0, sizeof jb);
    setjmp(jb);
    /* From the real stack pointer, not the frame address: this function's own pushes of
     * its callers' callee-saved registers lie below the frame address. */
    uintptr_t sp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    mark_jmpbuf(&jb);
    if (t == NULL) return;
    mark_range(sp, t->stack_hi);
    mark_range(t->tls_lo, t->tls_hi);
}

static void scan_threads(void) {
    bool self_seen = false;
    for (gc_thread *t = gc_threads; t; t = t->next) {
        if (t == gc_self) {
            scan_self(t);
            self_seen = true;
            continue;
        }
        uintptr_t sp = atomic_load_explicit(&t->sp, memory_order_acquire);
        uintptr_t lo = t->stack_lo; /* no saved pointer: the whole stack */
        /* Below the saved sp: for a signal stop, the red zone and the signal frame, whose
         * saved vector registers may hold a pointer being copied; for a thread parked at a
         * safepoint or blocking region (registers from setjmp, sp = that function's frame
         * address), the callers' callee-saved registers that function pushed below it.
         * 16 KiB covers both (the stack is mapped down to stack_lo). */
        uintptr_t below = 16384;
        if (sp > t->stack_lo && sp <= t->stack_hi) lo = sp - below > t->stack_lo ? sp - below : t->stack_lo;
        mark_range(lo, t->stack_hi);
        if (t->regs_from_jb) mark_jmpbuf(&t->jb);
        else
            mark_range((uintptr_t)&t->regs.uc_mcontext.gregs,
                       (uintptr_t)&t->regs.uc_mcontext.gregs + sizeof t->regs.uc_mcontext.gregs);
        mark_range(t->tls_lo, t->tls_hi);
    }
    if (!self_seen) scan_self(NULL);
}

/* ---- the rest of the process's memory ---------------------------------------------------------- */
typedef struct rng {
    uintptr_t lo, hi;
} rng;
static vec excl = {.elem = sizeof(rng)};
static vec maps = {.elem = sizeof(rng)};
static vec text = {.elem = 1};

static void excl_add(uintptr_t lo, uintptr_t hi) {
    if (hi <= lo || !vec_reserve(&excl, excl.n + 1)) return;
    ((rng *)excl.p)[excl.n++] = (rng){lo, hi};
}

static int module_excl_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        excl_add(lo & ~(uintptr_t)4095, (lo + ph->p_memsz + 4095) & ~(uintptr_t)4095);
    }
    return 0;
}

static void sort_ranges(rng *r, size_t n) { /* shell sort by lo: no malloc (qsort may) */
    static const size_t gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
    for (size_t g = 0; g < sizeof gaps / sizeof *gaps; g++) {
        size_t gap = gaps[g];
        for (size_t i = gap; i < n; i++) {
            rng x = r[i];
            size_t j = i;
            for (; j >= gap && r[j - gap].lo > x.lo; j -= gap) r[j] = r[j - gap];
            r[j] = x;
        }
    }
}

static uintptr_t parse_hex(const char **pp) {
    const char *p = *pp;
    uintptr_t v = 0;
    for (;; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9') d = (unsigned)(*p - '0');
        else if (*p >= 'a' && *p <= 'f') d = (unsigned)(*p - 'a' + 10);
        else break;
        v = v * 16 + d;
    }
    *pp = p;
    return v;
}

static bool read_file(const char *path, vec *buf) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    buf->n = 0;
    for (;;) {
        if (!vec_reserve(buf, buf->n + 65536)) {
            close(fd);
            return false;
        }
        ssize_t r = read(fd, (char *)buf->p + buf->n, buf->cap - buf->n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        buf->n += (size_t)r;
    }
    close(fd);
    ((char *)buf->p)[buf->n] = 0;
    return true;
}

/* Writable private anonymous mappings of /proc/self/maps into maps. */
static bool read_maps(void) {
    if (!read_file("/proc/self/maps", &text)) return false;
    maps.n = 0;
    for (const char *p = text.p; *p;) {
        uintptr_t lo = parse_hex(&p);
        if (*p == '-') p++;
        uintptr_t hi = parse_hex(&p);
        while (*p == ' ') p++;
        char perm[4] = {p[0], p[0] ? p[1] : 0, 0, 0};
        if (perm[0] && perm[1]) {
            perm[2] = p[2];
            perm[3] = p[2] ? p[3] : 0;
        }
        const char *eol = strchr(p, '\n');
        if (eol == NULL) eol = p + strlen(p);
        /* path: after the fifth field */
        const char *q = p;
        for (int f = 0; f < 4 && q < eol; f++) {
            while (q < eol && *q != ' ') q++;
            while (q < eol && *q == ' ') q++;
        }
        bool anon = q >= eol || *q == '[';
        if (perm[0] == 'r' && perm[1] == 'w' && perm[3] == 'p' && anon &&
            strncmp(q, "[vvar", 5) != 0 && strncmp(q, "[vsys", 5) != 0 && vec_reserve(&maps, maps.n + 1))
            ((rng *)maps.p)[maps.n++] = (rng){lo, hi};
        p = *eol ? eol + 1 : eol;
    }
    return true;
}

/* Memory of the program's own mappings is read through process_vm_readv: a thread the stop
 * does not hold (one exiting after its registration was dropped, or made without
 * pthread_create) may unmap it meanwhile, and a read of a vanished page must not fault. */
static uintptr_t copy_buf[8192];

void gc_leak_roots_exclude(void) {
    GC_ROOTS_EXCLUDE_VAR(copy_buf); /* copies of the program's memory, scratch */
    leak_sites_roots_exclude();
}

static void mark_range_copied(uintptr_t lo, uintptr_t hi) {
    lo = (lo + 7) & ~(uintptr_t)7;
    while (lo < hi) {
        size_t len = hi - lo > sizeof copy_buf ? sizeof copy_buf : (hi - lo) & ~(size_t)7;
        if (len == 0) break;
        struct iovec local = {copy_buf, len}, remote = {(void *)lo, len};
        ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
        if (got > 0) {
            scanned_bytes += (size_t)got;
            for (size_t i = 0; i < (size_t)got / sizeof(uintptr_t); i++) mark_word(copy_buf[i]);
            lo += (size_t)got;
        } else {
            lo = (lo + 4096) & ~(uintptr_t)4095; /* gone (or unreadable): skip the page */
        }
    }
}

static bool read_words(uintptr_t a, uintptr_t *out, size_t n) {
    struct iovec local = {out, n * sizeof *out}, remote = {(void *)a, n * sizeof *out};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)(n * sizeof *out);
}

static bool in_maps(uintptr_t a, size_t len) {
    for (size_t i = 0; i < maps.n; i++) {
        rng m = ((rng *)maps.p)[i];
        if (a >= m.lo && a + len <= m.hi) return true;
    }
    return false;
}

/* Mark from every program mapping that no other root covers. False: cannot tell ours. */
static bool scan_anonymous(void) {
    /* Every buffer is mapped before the snapshot of our own mappings is taken, so the
     * snapshot covers them, and excl never grows afterwards. */
    size_t cap_own = 16384, nthreads = 0;
    for (gc_thread *t = gc_threads; t; t = t->next) nthreads++;
    if (!vec_reserve(&excl, cap_own + SEEN_MAX + 2 * nthreads + 4096) || !read_maps()) return false;
    uintptr_t (*own)[2] = plat_map(cap_own * sizeof *own);
    if (own == NULL) return false;
    bool complete;
    size_t nown = plat_own_mappings(own, cap_own, &complete);
    excl.n = 0;
    for (size_t i = 0; i < nown; i++) excl_add(own[i][0], own[i][1]);
    plat_unmap(own, cap_own * sizeof *own);
    if (!complete) return false;
    excl_add(heap_lo, heap_hi);
    dl_iterate_phdr(module_excl_cb, NULL); /* scanned by gc_scan_static_roots_with */
    for (gc_thread *t = gc_threads; t; t = t->next) {
        excl_add(t->stack_lo, t->stack_hi); /* scanned from the saved stack pointer */
        excl_add(t->tls_lo, t->tls_hi);
    }
    for (size_t i = 0; i < nseen; i++) { /* dead threads' cached stacks */
        seen_stack *d = &seen[i];
        uintptr_t tcb[3], tw;
        uint32_t tid;
        if (tid_off == 0 || !in_maps(d->tp, tid_off + 4) || !read_words(d->tp, tcb, 3) ||
            !read_words(d->tp + (tid_off & ~(size_t)7), &tw, 1))
            continue;
        memcpy(&tid, (const char *)&tw + (tid_off & 7), sizeof tid);
        /* Still glibc's descriptor, and the kernel has cleared its tid: the thread is gone.
         * Skip its dead frames and stale static TLS, but keep scanning the descriptor
         * above tp: glibc still owns what it points to (the DTV). A thread still exiting
         * (tid set) is scanned whole, like any program memory. */
        if (tcb[0] == d->tp && tcb[2] == d->tp && tid == 0) excl_add(d->lo, d->tp);
    }
    rng *x = excl.p;
    sort_ranges(x, excl.n);
    for (size_t i = 0; i < maps.n; i++) {
        rng m = ((rng *)maps.p)[i];
        uintptr_t cur = m.lo;
        for (size_t j = 0; j < excl.n && cur < m.hi; j++) {
            if (x[j].hi <= cur || x[j].lo >= m.hi) continue;
            if (x[j].lo > cur) mark_range_copied(cur, x[j].lo);
            if (x[j].hi > cur) cur = x[j].hi;
        }
        if (cur < m.hi) mark_range_copied(cur, m.hi);
    }
    return true;
}

/* ---- walking every malloc block --------------------------------------------------------------- */
static void for_each_malloc_span(void (*fn)(alloc_span *s)) {
    uintptr_t a0 = heap_lo & ~(uintptr_t)(ALLOC_ARENA_SIZE - 1);
    for (uintptr_t a = a0; a < heap_hi; a += ALLOC_ARENA_SIZE) {
        alloc_arena *ar = alloc_arena_of(a);
        if (ar == NULL) continue;
        for (size_t i = 0; i < ALLOC_ARENA_PAGES; i++) {
            alloc_span *s = atomic_load_explicit(&ar->pagemap[i], memory_order_acquire);
            if (s == NULL || s->start != a + i * ALLOC_PAGE_SIZE) continue;
            uint8_t st = alloc_span_state(s);
            if ((st == SPAN_SMALL || st == SPAN_LARGE) && s->kind == ALLOC_KIND_MALLOC) fn(s);
            if (st == SPAN_SMALL || st == SPAN_LARGE) i += s->npages - 1;
        }
    }
}

static void ensure_side(alloc_span *s) {
    if (side_of(s) == NULL) mark_oom = true;
}

static uint64_t live_blocks, live_bytes;

static void sweep_span(alloc_span *s) {
    uint64_t *t = s->leak_side;
    if (t == NULL) return;
    uint32_t n = alloc_span_state(s) == SPAN_SMALL ? atomic_load_explicit(&s->bump, memory_order_relaxed) : 1;
    for (uint32_t idx = 0; idx < n; idx++) {
        uintptr_t a = s->start + (uintptr_t)idx * s->elem_size, base;
        uint64_t *w = block_of(a, &base);
        if (w == NULL) continue;
        uint64_t v = *w;
        size_t size = block_size(base, v);
        if (v & LEAK_MARK) {
            *w = v & ~LEAK_MARK;
            live_blocks++;
            live_bytes += size;
            continue;
        }
        if (!vec_reserve(&lost, lost.n + 1)) {
            mark_oom = true;
            continue;
        }
        uint32_t site = (v & LEAK_TRACKED) ? (uint32_t)((v >> LEAK_SITE_SHIFT) & LEAK_SITE_MASK) : 0;
        ((leak_block *)lost.p)[lost.n++] = (leak_block){base, size, site};
    }
}

/* ---- the cycle ------------------------------------------------------------------------------ */
typedef struct cycle_ctx {
    bool ok;
    const char *why; /* why it gave up */
    uint64_t stopped_ns;
    pid_t blocked_tid; /* wait_for_blocked_signals: a thread blocking it for ~1 s, or 0 */
} cycle_ctx;

/* A thread that blocks the stop signal could never be stopped: find it before trying. */
static bool tid_blocks_stop_signal(pid_t tid) {
    char path[64];
    alloc_fmt(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    static vec st = {.elem = 1};
    if (!read_file(path, &st)) return false; /* gone: pthread_kill will say so */
    const char *p = strstr(st.p, "SigBlk:");
    if (p == NULL) return false;
    p += 7;
    while (*p == ' ' || *p == '\t') p++;
    uint64_t mask = parse_hex(&p);
    return (mask >> (gc_opt.signal - 1)) & 1;
}

static bool blocks_stop_signal(gc_thread *t) {
    if (t->tid == 0 || atomic_load_explicit(&t->state, memory_order_acquire) != GC_RUNNING)
        return false;
    return tid_blocks_stop_signal(t->tid);
}

/* Before taking the registry: glibc blocks every signal in a thread for a moment while it
 * is created and while it exits (and an exiting thread may be waiting for the registry to
 * unregister), so a blocked signal is usually transient. Wait up to ~1 s for it to pass
 * (on a loaded machine such a thread may wait that long for a core);
 * stopped_work checks again under the lock and gives up if it has not. */
/* Returns 0, or the thread seen blocking at the last of ~1 s of tries (no moment without a
 * blocked thread was seen): stopped_work gives up only if that one still blocks. Giving up
 * on any thread that blocked at the moment stopped_work looked failed leak checks of
 * programs that create and end threads all the time (the allocator stress with thread
 * churn: about one run in ten) — a thread inside pthread_create blocks every signal for the
 * clone, and the stop signal stays pending until it unblocks, so the stop gets it anyway. */
static pid_t wait_for_blocked_signals(void) {
    pid_t tids[256];
    pid_t last = 0;
    for (int tries = 0; tries < 500; tries++) {
        size_t n = 0;
        pthread_mutex_lock(&gc_threads_lock);
        for (gc_thread *t = gc_threads; t && n < 256; t = t->next)
            if (t != gc_self && t->tid != 0 &&
                atomic_load_explicit(&t->state, memory_order_acquire) == GC_RUNNING)
                tids[n++] = t->tid;
        pthread_mutex_unlock(&gc_threads_lock);
        last = 0;
        for (size_t i = 0; i < n && !last; i++)
            if (tid_blocks_stop_signal(tids[i])) last = tids[i];
        if (!last) return 0;
        plat_sleep_ns(2000000);
    }
    return last;
}

static int stop_broken; /* a stop timed out: the stop protocol's count may be off by one */

static void stopped_work(cycle_ctx *c) {
    if (stop_broken) {
        c->why = "an earlier check could not stop a thread";
        return;
    }
    for (gc_thread *t = gc_threads; c->blocked_tid && t; t = t->next) {
        if (t != gc_self && t->tid == c->blocked_tid && blocks_stop_signal(t)) {
            c->why = "a thread blocks the stop signal";
            return;
        }
    }
    uint64_t t0 = plat_now_ns();
    gc_stop_may_give_up = 1;
    gc_stop_world();
    gc_stop_may_give_up = 0;
    uint64_t t_stopped = plat_now_ns();
    if (gc_stop_gave_up) {
        gc_stop_gave_up = 0;
        gc_start_world();
        /* The late thread may still acknowledge this stop, and a later stop would count
         * that acknowledgement as another thread's: no more checks in this process. */
        stop_broken = 1;
        c->why = "a thread did not stop within 5 s; no further leak checks in this process";
        return;
    }
    heap_lo_x = alloc_heap_lo() ^ ALLOC_DISGUISE;
    heap_hi_x = alloc_heap_hi() ^ ALLOC_DISGUISE;
    mark_oom = false;
    mark_stack.n = lost.n = 0;
    scanned_bytes = 0;
    live_blocks = live_bytes = 0;
    if (heap_hi > heap_lo) {
        for_each_malloc_span(ensure_side);
        gc_scan_static_roots_with(mark_range);
        scan_threads();
        if (!scan_anonymous()) c->why = "cgc's own mappings are not all known";
        drain();
        for_each_malloc_span(sweep_span); /* clears every mark, also when giving up */
        if (mark_oom && !c->why) c->why = "out of memory for marking";
    }
    uint64_t t_end = plat_now_ns();
    gc_start_world();
    c->stopped_ns = t_end - t0;
    c->ok = c->why == NULL;
    /* The trace file shows each leak check as a cycle with its one stop (issue #5's
     * cgc-run --leaks ... --trace). */
    if (trace_file_enabled()) {
        static uint64_t checks;
        checks++;
        trace_stop(checks, "leak check", t0, t_stopped, t_end);
        trace_cycle(checks, t0, t_end);
    }
}

static int cycle_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)info;
    (void)size;
    stopped_work(arg);
    return 1; /* once: holding the loader lock is the point */
}

static void trace_line(const leak_summary *s, uint64_t freed_blocks) {
    char buf[300];
    const double mb = 1024.0 * 1024.0;
    size_t n = alloc_fmt(buf, sizeof buf,
        "cgc leaks %llu @%.3fs (%s): %.3f ms stopped, %llu blocks %.2f MB lost%s, "
        "%llu blocks %.2f MB reachable, %u sites\n",
        (unsigned long long)s->cycle, (double)(plat_now_ns() - start_ns) / 1e9, s->reason,
        (double)s->stopped_ns / 1e6, (unsigned long long)s->lost_blocks,
        (double)s->lost_bytes / mb, freed_blocks ? " and freed" : "",
        (unsigned long long)s->live_blocks, (double)s->live_bytes / mb, leak_sites_count());
    plat_write_stderr(buf, n);
}

bool leak_run_cycle(const char *reason) {
    if (!started) return false;
    tls_busy++;
    register_self();
    cgc_blocking_enter(); /* waiting for gc_lock must not hold up another collector */
    pthread_mutex_lock(&gc_lock);
    cgc_blocking_leave();
    pid_t blocked = wait_for_blocked_signals();
    pthread_mutex_lock(&gc_threads_lock);
    cycle_ctx c = {false, NULL, 0, blocked};
    dl_iterate_phdr(cycle_cb, &c);
    pthread_mutex_unlock(&gc_threads_lock);
    pthread_mutex_unlock(&gc_lock);
    atomic_store_explicit(&alloc_since, 0, memory_order_relaxed);
    atomic_store_explicit(&last_cycle_ns, plat_coarse_now_ns(), memory_order_relaxed);
    if (!c.ok) {
        /* Said always for the exit check, once for periodic ones (or each with CGC_TRACE). */
        static int said;
        uint64_t g = atomic_fetch_add_explicit(&st_gave_up, 1, memory_order_relaxed);
        (void)g;
        char buf[200];
        size_t n = alloc_fmt(buf, sizeof buf, "cgc: leaks: pid %d: no leak check (%s): %s; nothing reported\n",
                             (int)getpid(), reason, c.why ? c.why : "failed");
        if (strcmp(reason, "exit") == 0 || gc_opt.trace || !said) plat_write_stderr(buf, n);
        said = 1;
        tls_busy--;
        return false;
    }
    leak_summary sum = {reason, atomic_fetch_add_explicit(&st_cycles, 1, memory_order_relaxed) + 1,
                        live_blocks, live_bytes, lost.n, 0, c.stopped_ns,
                        leak_mode == LEAK_COLLECT && strcmp(reason, "exit") != 0};
    leak_block *b = lost.p;
    for (size_t i = 0; i < lost.n; i++) sum.lost_bytes += b[i].size;
    atomic_store_explicit(&st_lost_blocks, sum.lost_blocks, memory_order_relaxed);
    atomic_store_explicit(&st_lost_bytes, sum.lost_bytes, memory_order_relaxed);
    uint64_t live = live_bytes;
    trigger_bytes = live > ((uint64_t)16 << 20) ? live : (uint64_t)16 << 20;
    if (leak_mode == LEAK_REPORT || leak_file_path || leak_json_path || !sum.collect)
        leak_report(b, lost.n, &sum);
    uint64_t freed = 0;
    if (sum.collect) {
        for (size_t i = 0; i < lost.n; i++) cgc_free((void *)b[i].addr);
        freed = lost.n;
        atomic_fetch_add_explicit(&st_freed_blocks, lost.n, memory_order_relaxed);
        atomic_fetch_add_explicit(&st_freed_bytes, sum.lost_bytes, memory_order_relaxed);
    }
    if (gc_opt.trace) trace_line(&sum, freed);
    if (trace_file_enabled()) trace_file_flush(); /* outside the stop */
    lost.n = 0;
    if (lost.cap > 65536) vec_free(&lost);
    if (mark_stack.cap > 65536) vec_free(&mark_stack);
    tls_busy--;
    return true;
}

static void leak_stats(cgc_stats *st) {
    st->leak_cycles = atomic_load_explicit(&st_cycles, memory_order_relaxed);
    st->leak_lost_blocks = atomic_load_explicit(&st_lost_blocks, memory_order_relaxed);
    st->leak_lost_bytes = atomic_load_explicit(&st_lost_bytes, memory_order_relaxed);
    st->leak_freed_blocks = atomic_load_explicit(&st_freed_blocks, memory_order_relaxed);
    st->leak_freed_bytes = atomic_load_explicit(&st_freed_bytes, memory_order_relaxed);
    st->leak_cycles_given_up = atomic_load_explicit(&st_gave_up, memory_order_relaxed);
}
