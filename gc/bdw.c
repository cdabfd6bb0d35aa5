/* gc/bdw.c — the Boehm GC's C interface on cgc (libcgc-bdw.so, also installed in the build
 * tree as bdw/libgc.so.1 so a program linked against libgc.so.1 runs on cgc unchanged).
 *
 * Mapping (see README "Running Boehm-GC programs on cgc" for the full table):
 *   GC_malloc -> cgc_alloc (conservative), GC_malloc_atomic -> cgc_alloc_leaf, custom kinds
 *   -> gc/bdw_kinds.c, GC_malloc_uncollectable -> explicit-free memory registered as a root.
 *   GC_free clears the object's allocation bit so its slot is reused (small objects; a large
 *   one is left to the next collection). Threads map onto cgc_thread_register/unregister,
 *   GC_do_blocking onto cgc_blocking_enter/leave. GC_call_with_alloc_lock runs its function
 *   holding gc_lock: no collection can run while it does, as in the Boehm GC.
 * Initialisation sets gc_opt.stop_the_world = 1: these programs store pointers without a
 * write barrier, so marking must not run concurrently with them. Pacing honours the Boehm
 * GC's environment (GC_FREE_SPACE_DIVISOR, GC_INITIAL_HEAP_SIZE, GC_MAXIMUM_HEAP_SIZE,
 * GC_DONT_GC, GC_PRINT_STATS) unless the corresponding CGC_* variable is set.
 *
 * What cgc cannot honour fails loudly (bdw_unsupported names the function and aborts).
 * Allocation in the library itself never uses the collected heap (metadata memory, mmap).
 */
#include "cgc/bdw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

/* ---- exported variables (deprecated in the Boehm GC, still read by some programs) ---------- */
GC_API_EXPORT int GC_all_interior_pointers = 1;
GC_API_EXPORT GC_word GC_free_space_divisor = 3;
GC_API_EXPORT int GC_dont_gc;
GC_API_EXPORT int GC_java_finalization = 1;
/* Bounds for the GC_MARK_AND_PUSH macro's filter. cgc's heap grows anywhere in the 48-bit
 * space, and these words lie in scanned data: so they are the widest bounds that are never
 * themselves heap addresses. GC_mark_and_push does the exact test. */
GC_API_EXPORT void *GC_least_plausible_heap_addr = (void *)4096;
GC_API_EXPORT void *GC_greatest_plausible_heap_addr = (void *)(((uintptr_t)1 << ALLOC_ADDR_BITS) - 1);

static _Atomic int inited;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static GC_warn_proc warn_proc;
static GC_oom_func oom_fn;
static pthread_mutex_t disable_lock = PTHREAD_MUTEX_INITIALIZER;
static int disable_count, saved_percent; /* [disable_lock] */

_Noreturn void bdw_unsupported(const char *fn, const char *why) {
    char buf[400];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc-bdw: fatal: %s: %s\n", fn, why);
    plat_write_stderr(buf, n);
    plat_abort();
}

static bool env_size(const char *name, uint64_t *out) {
    const char *v = plat_getenv(name);
    if (v == NULL || *v == 0) return false;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1u << 10, end++;
    else if (*end == 'm' || *end == 'M') mul = 1u << 20, end++;
    else if (*end == 'g' || *end == 'G') mul = 1u << 30, end++;
    if (end == v || *end != 0) {
        char buf[200];
        size_t len = alloc_fmt(buf, sizeof buf, "cgc-bdw: warning: bad value '%.60s' for %s (ignored)\n", v, name);
        plat_write_stderr(buf, len);
        return false;
    }
    *out = (uint64_t)n * mul;
    return true;
}

/* Pacing. The Boehm GC allocates about (2 * traced live + roots) / divisor between
 * collections: a pacer goal of live * (1 + 2/divisor) + roots / divisor. The live part: only
 * when the program or its environment sets a divisor is gc_percent 200 / divisor; by default
 * cgc's own percentage (100) holds, which measured closer to the Boehm GC's real heap growth
 * (perf/bdw-compare: divisor 3's 66% gave Guile 1.5x the Boehm GC's collections and 1.19x its
 * CPU time at 0.84x its RSS). The roots part is always 100 / divisor (33%, not cgc's 100%):
 * Guile's data, bss and registered .go segments are ~1.1 MiB, which at 100% made every small
 * Guile heap 1.1 MiB larger than under the Boehm GC (weak tables: 1.2x its peak RSS). The
 * floor is 2 MiB (not cgc's 4 MiB), the heap Guile asks for at start-up (GC_expand_hp), unless
 * GC_INITIAL_HEAP_SIZE says otherwise. And the goal never shrinks, as the Boehm GC's heap
 * never does: a program whose live data swings (binary trees: 2 to 4 MiB) collects at its
 * largest goal instead of at every low one — peak RSS is set by that largest goal anyway
 * (trees: 355 cycles instead of 375, 3% less CPU). Pointer-free live bytes weigh a quarter in
 * the growth (gc_opt.leaf_percent), as in the Boehm GC's min_bytes_allocd: they cost a cycle
 * almost nothing to mark (hashes.scm 69.0 -> 66.8 MB, threads.scm 29.1 -> 25.3 MB). */
#define BDW_GOAL_MIN ((uint64_t)2 << 20)
static void set_divisor(GC_word d, bool live_too) {
    GC_free_space_divisor = d;
    gc_opt.roots_percent = (int)(100 / d);
    if (live_too) gc_opt.gc_percent = (int)(200 / d);
}

static void read_boehm_env(void) {
    uint64_t u;
    gc_opt.goal_min = BDW_GOAL_MIN;
    gc_opt.goal_keep = true;
    if (plat_getenv("CGC_GC_PERCENT") == NULL) { /* else cgc's own pacing, roots included */
        gc_opt.leaf_percent = 25;
        set_divisor(GC_free_space_divisor, false);
        if (env_size("GC_FREE_SPACE_DIVISOR", &u) && u > 0 && u < 1000) set_divisor((GC_word)u, true);
    }
    if (env_size("GC_INITIAL_HEAP_SIZE", &u) && u > 0) gc_opt.goal_min = u;
    if (plat_getenv("CGC_HEAP_MAX") == NULL && env_size("GC_MAXIMUM_HEAP_SIZE", &u) && u > 0)
        gc_opt.heap_max = u;
    if (plat_getenv("CGC_TRACE") == NULL && plat_getenv("GC_PRINT_STATS") != NULL) gc_opt.trace = 1;
    if (plat_getenv("GC_DONT_GC") != NULL) GC_dont_gc = 1;
}

void bdw_init(void) {
    if (CGC_LIKELY(atomic_load_explicit(&inited, memory_order_acquire))) return;
    pthread_mutex_lock(&init_lock);
    if (!atomic_load_explicit(&inited, memory_order_relaxed)) {
        gc_ensure_init();
        gc_opt.stop_the_world = 1; /* no write barrier in these programs */
        bdw_kinds_init();
        bdw_final_init();
        read_boehm_env();
        int pct = gc_opt.gc_percent;
        cgc_set_gc_percent(GC_dont_gc ? -1 : pct); /* recomputes the goal */
        if (GC_dont_gc) {
            disable_count = 1;
            saved_percent = pct;
        }
        atomic_store_explicit(&inited, 1, memory_order_release);
    }
    pthread_mutex_unlock(&init_lock);
}

GC_API_EXPORT void GC_init(void) { bdw_init(); }
GC_API_EXPORT int GC_is_init_called(void) { return atomic_load_explicit(&inited, memory_order_acquire); }

/* ---- allocation ------------------------------------------------------------------------------ */
void *bdw_oom(size_t n) {
    GC_oom_func f = oom_fn;
    return f ? f(n) : NULL;
}

static CGC_TLS int in_finalizers;

void bdw_after_alloc(void) {
    if (CGC_LIKELY(!atomic_load_explicit(&bdw_final_ready, memory_order_relaxed))) return;
    if (!atomic_exchange_explicit(&bdw_final_ready, 0, memory_order_acq_rel)) return;
    if (bdw_finalize_on_demand) {
        GC_finalizer_notifier_proc f = bdw_finalizer_notifier;
        if (f) f();
        return;
    }
    if (in_finalizers) return;
    in_finalizers = 1;
    bdw_invoke_finalizers();
    in_finalizers = 0;
}

GC_API_EXPORT void *GC_malloc(size_t n) {
    bdw_init();
    void *p = cgc_alloc(n);
    if (CGC_UNLIKELY(p == NULL)) return bdw_oom(n);
    bdw_after_alloc();
    return p;
}

GC_API_EXPORT void *GC_malloc_atomic(size_t n) {
    bdw_init();
    void *p = cgc_alloc_leaf(n);
    if (CGC_UNLIKELY(p == NULL)) return bdw_oom(n);
    bdw_after_alloc();
    return p;
}

/* cgc recognises interior pointers anywhere in an object, so "ignore off page" changes
 * nothing but what the Boehm GC promises to keep alive (cgc keeps more). */
GC_API_EXPORT void *GC_malloc_ignore_off_page(size_t n) { return GC_malloc(n); }
GC_API_EXPORT void *GC_malloc_atomic_ignore_off_page(size_t n) { return GC_malloc_atomic(n); }

/* Uncollectable: explicit-free memory, zeroed, scanned as a root until GC_free. */
GC_API_EXPORT void *GC_malloc_uncollectable(size_t n) {
    bdw_init();
    void *p = cgc_calloc(1, n ? n : 1);
    if (p == NULL) return bdw_oom(n);
    cgc_add_roots(p, cgc_usable_size(p));
    return p;
}
GC_API_EXPORT void *GC_malloc_atomic_uncollectable(size_t n) {
    bdw_init();
    void *p = cgc_calloc(1, n ? n : 1);
    return p ? p : bdw_oom(n);
}

GC_API_EXPORT char *GC_strdup(const char *s) {
    if (s == NULL) return NULL;
    size_t n = strlen(s) + 1;
    char *p = GC_malloc_atomic(n);
    if (p) memcpy(p, s, n);
    return p;
}
GC_API_EXPORT char *GC_strndup(const char *s, size_t max) {
    size_t n = strnlen(s, max);
    char *p = GC_malloc_atomic(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* The object's base and size, for collected and uncollectable objects; false otherwise. */
static bool object_of(const void *p, uintptr_t *base, size_t *size, alloc_span **span) {
    if (gc_find_object((uintptr_t)p, base, size, span)) return true;
    alloc_span *s = alloc_span_of(p);
    if (s == NULL || s->kind != ALLOC_KIND_MALLOC) return false;
    uint8_t st = alloc_span_state(s);
    if (st == SPAN_SMALL) {
        uint32_t idx = alloc_slot_index(s, (uintptr_t)p);
        if (idx >= s->nelems) return false;
        *base = s->start + (size_t)idx * s->elem_size;
        *size = s->elem_size;
    } else if (st == SPAN_LARGE) {
        *base = s->start;
        *size = s->npages * ALLOC_PAGE_SIZE;
    } else {
        return false;
    }
    *span = s;
    return true;
}

GC_API_EXPORT void *GC_base(void *p) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    return object_of(p, &base, &size, &s) ? (void *)base : NULL;
}

GC_API_EXPORT size_t GC_size(const void *p) {
    uintptr_t base;
    size_t size;
    alloc_span *s;
    if (!object_of(p, &base, &size, &s)) return 0;
    return size - ((uintptr_t)p - base);
}

/* Any page of cgc's heap, like the Boehm GC's test (any heap block: collected, uncollectable
 * or free). Guile calls it on every set-car! and set-cdr! (a literal pair in a mapped .go file
 * is immutable): one page-map lookup, no read of the span (2% of a list-sorting program's
 * time when it also read the span's kind). */
GC_API_EXPORT int GC_is_heap_ptr(const void *p) { return alloc_span_of(p) != NULL; }

GC_API_EXPORT void *GC_is_visible(void *p) { return p; }
GC_API_EXPORT void *GC_same_obj(void *p, void *q) { (void)q; return p; }
GC_API_EXPORT void *GC_pre_incr(void **p, ptrdiff_t how_much) { return *p = (char *)*p + how_much; }

/* Explicit free of a small collected object: clear its allocation (and pending mark) bit.
 * The owner's allocation path stores its bitmap word with a plain load and store, so a free
 * that races with it can be lost; the object then stays allocated until the next collection
 * finds it unreachable — a late free, never a wrong one (only the owner ever sets bits). */
GC_API_EXPORT void GC_free(void *p) {
    if (p == NULL) return;
    bdw_init();
    alloc_span *s = alloc_span_of(p);
    if (s == NULL) bdw_unsupported("GC_free", "the pointer is not from the collected heap");
    if (s->kind == ALLOC_KIND_MALLOC) { /* uncollectable */
        cgc_remove_roots(p);
        cgc_free(p);
        return;
    }
    if (s->kind < ALLOC_KIND_GC_SCAN || alloc_span_state(s) != SPAN_SMALL) return; /* large: next cycle */
    uint32_t idx = alloc_slot_index(s, (uintptr_t)p);
    if (idx >= s->nelems || s->start + (size_t)idx * s->elem_size != (uintptr_t)p)
        bdw_unsupported("GC_free", "the pointer is not the start of an object");
    uint64_t bit = (uint64_t)1 << (idx & 63);
    uint64_t was = atomic_fetch_and_explicit(&s->gcbits[idx >> 6].alloc, ~bit, memory_order_relaxed);
    gc_mark_byte_set(s, idx, 0);
    if (!(was & bit)) return; /* already free */
    uint64_t cur = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    while (cur >= s->elem_size &&
           !atomic_compare_exchange_weak_explicit(&gc_heap_bytes, &cur, cur - s->elem_size,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

GC_API_EXPORT void *GC_realloc(void *p, size_t n) {
    bdw_init();
    if (p == NULL) return GC_malloc(n);
    if (n == 0) {
        GC_free(p);
        return NULL;
    }
    uintptr_t base;
    size_t size;
    alloc_span *s;
    if (!object_of(p, &base, &size, &s) || base != (uintptr_t)p)
        bdw_unsupported("GC_realloc", "the pointer is not the start of a collected object");
    if (n <= size && n >= size / 2) {
        memset((char *)p + n, 0, size - n); /* no stale pointers in the tail */
        return p;
    }
    int kind = bdw_kind_of(base, s);
    void *q;
    if (kind == BDW_KIND_UNCOLLECTABLE) {
        q = GC_malloc_uncollectable(n);
    } else {
        q = bdw_alloc_kind(n, kind);
        if (q == NULL) q = bdw_oom(n);
    }
    if (q == NULL) return NULL;
    memcpy(q, p, n < size ? n : size);
    GC_free(p);
    return q;
}

/* ---- roots ---------------------------------------------------------------------------------- */
GC_API_EXPORT void GC_add_roots(void *lo, void *hi) {
    bdw_init();
    if ((uintptr_t)hi > (uintptr_t)lo) cgc_add_roots(lo, (size_t)((uintptr_t)hi - (uintptr_t)lo));
}
GC_API_EXPORT void GC_remove_roots(void *lo, void *hi) {
    (void)hi;
    bdw_init();
    cgc_remove_roots(lo);
}
GC_API_EXPORT void GC_clear_roots(void) {
    bdw_unsupported("GC_clear_roots", "cgc cannot drop the roots it finds itself");
}
/* Every displacement is recognised (cgc accepts interior pointers). */
GC_API_EXPORT void GC_register_displacement(size_t n) { (void)n; }
GC_API_EXPORT void GC_set_all_interior_pointers(int v) { GC_all_interior_pointers = v; }
GC_API_EXPORT int GC_get_all_interior_pointers(void) { return GC_all_interior_pointers; }

/* ---- threads -------------------------------------------------------------------------------- */
GC_API_EXPORT void GC_allow_register_threads(void) { bdw_init(); }
GC_API_EXPORT int GC_register_my_thread(const struct GC_stack_base *sb) {
    (void)sb; /* cgc takes the whole stack mapping: more conservative, never less */
    bdw_init();
    if (gc_self) return BDW_DUPLICATE;
    return cgc_thread_register() == 0 ? BDW_SUCCESS : BDW_NO_MEMORY;
}
GC_API_EXPORT int GC_unregister_my_thread(void) {
    cgc_thread_unregister();
    return BDW_SUCCESS;
}
GC_API_EXPORT int GC_thread_is_registered(void) { return gc_self != NULL; }

GC_API_EXPORT int GC_get_stack_base(struct GC_stack_base *sb) {
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return BDW_UNIMPLEMENTED;
    int r = pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    if (r != 0) return BDW_UNIMPLEMENTED;
    sb->mem_base = (char *)addr + size;
    return BDW_SUCCESS;
}

GC_API_EXPORT void *GC_call_with_stack_base(GC_stack_base_func fn, void *arg) {
    struct GC_stack_base sb;
    sb.mem_base = __builtin_frame_address(0);
    return fn(&sb, arg);
}

/* Blocking regions nest; only the outermost is cgc's blocking region. */
static CGC_TLS int blocking_depth;

GC_API_EXPORT void *GC_do_blocking(GC_fn_type fn, void *cd) {
    if (gc_self == NULL) return fn(cd);
    void *r;
    if (blocking_depth++ > 0) {
        r = fn(cd);
    } else {
        cgc_blocking_enter();
        r = fn(cd);
        cgc_blocking_leave();
    }
    blocking_depth--;
    return r;
}

GC_API_EXPORT void *GC_call_with_gc_active(GC_fn_type fn, void *cd) {
    if (gc_self == NULL || blocking_depth == 0) return fn(cd);
    int saved = blocking_depth;
    blocking_depth = 0;
    cgc_blocking_leave();
    void *r = fn(cd);
    cgc_blocking_enter(); /* rescans from here: this frame and its callers' */
    blocking_depth = saved;
    return r;
}

/* No collection runs while fn does and callers exclude each other, as under the Boehm GC's
 * allocation lock: fn runs holding gc_lock, which every cycle holds from start to end. Not a
 * no-stop region: a stop deferred to its end would park the thread exactly after fn.
 * That point matters: Guile (vm_expand_stack) moves its VM stack inside fn and stores the
 * new stack pointer only after fn returns, and its thread mark procedure, run with the world
 * stopped, returns the unused part of that stack to the OS with madvise — a thread stopped
 * in between makes it zero everything from the new stack up to the old one (other threads'
 * stacks included). The Boehm GC has the same window but its collector rarely lands in it;
 * here the unlock wakes a waiting collector, which could stop the world within microseconds
 * while this thread sat preempted. So a cycle's start waits until ALLOC_LOCK_GRACE_NS have
 * passed since the last GC_call_with_alloc_lock returned (yielding the CPU meanwhile).
 * fn must not allocate (the Boehm GC's rule too). */
#define ALLOC_LOCK_GRACE_NS 1000000u
static CGC_TLS int alloc_lock_depth;
_Atomic uint64_t bdw_alloc_lock_left_ns;
GC_API_EXPORT void *GC_call_with_alloc_lock(GC_fn_type fn, void *cd) {
    bdw_init();
    if (alloc_lock_depth > 0) return fn(cd);
    pthread_mutex_lock(&gc_lock);
    alloc_lock_depth = 1;
    void *r = fn(cd);
    alloc_lock_depth = 0;
    atomic_store_explicit(&bdw_alloc_lock_left_ns, plat_now_ns(), memory_order_release);
    pthread_mutex_unlock(&gc_lock);
    return r;
}

void bdw_alloc_lock_grace(void) {
    uint64_t left = atomic_load_explicit(&bdw_alloc_lock_left_ns, memory_order_acquire);
    if (left == 0) return;
    while (plat_now_ns() - left < ALLOC_LOCK_GRACE_NS) sched_yield();
}

/* Threads created through GC_pthread_create register themselves before running fn. */
typedef struct start_info {
    void *(*fn)(void *);
    void *arg;
} start_info;

static void *thread_start(void *p) {
    start_info si = *(start_info *)p;
    cgc_thread_register();
    GC_free(p); /* uncollectable: it kept arg alive until we had it on our stack */
    void *r = si.fn(si.arg);
    cgc_thread_unregister();
    return r;
}

GC_API_EXPORT int GC_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                                    void *(*fn)(void *), void *arg) {
    bdw_init();
    start_info *si = GC_malloc_uncollectable(sizeof *si);
    if (si == NULL) return EAGAIN;
    si->fn = fn;
    si->arg = arg;
    int r = pthread_create(t, attr, thread_start, si);
    if (r != 0) GC_free(si);
    return r;
}
GC_API_EXPORT int GC_pthread_join(pthread_t t, void **ret) { return pthread_join(t, ret); }
GC_API_EXPORT int GC_pthread_detach(pthread_t t) { return pthread_detach(t); }
GC_API_EXPORT int GC_pthread_cancel(pthread_t t) { return pthread_cancel(t); }
GC_API_EXPORT _Noreturn void GC_pthread_exit(void *ret) {
    cgc_thread_unregister();
    pthread_exit(ret);
}
GC_API_EXPORT int GC_pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    return pthread_sigmask(how, set, old);
}
GC_API_EXPORT int GC_get_suspend_signal(void) { return gc_opt.signal; }
GC_API_EXPORT int GC_get_thr_restart_signal(void) { return gc_opt.signal; }

/* ---- control -------------------------------------------------------------------------------- */
static void notify_after_collect(void) { bdw_after_alloc(); }

GC_API_EXPORT void GC_gcollect(void) {
    bdw_init();
    pthread_mutex_lock(&disable_lock);
    int off = disable_count > 0;
    pthread_mutex_unlock(&disable_lock);
    if (off) return; /* the Boehm GC: even explicit collections are off while disabled */
    cgc_collect();
    notify_after_collect();
}
GC_API_EXPORT void GC_gcollect_and_unmap(void) {
    GC_gcollect();
    cgc_release_memory();
}
GC_API_EXPORT int GC_try_to_collect(int (*stop)(void)) {
    (void)stop; /* a stop-the-world cycle is not abandoned half-way */
    GC_gcollect();
    return 1;
}
/* No incremental work is pending outside a cycle: cycles run whole. */
GC_API_EXPORT int GC_collect_a_little(void) { bdw_init(); return 0; }

GC_API_EXPORT void GC_disable(void) {
    bdw_init();
    pthread_mutex_lock(&disable_lock);
    if (disable_count++ == 0) saved_percent = cgc_set_gc_percent(-1);
    pthread_mutex_unlock(&disable_lock);
}
GC_API_EXPORT void GC_enable(void) {
    bdw_init();
    pthread_mutex_lock(&disable_lock);
    if (disable_count > 0 && --disable_count == 0) cgc_set_gc_percent(saved_percent);
    pthread_mutex_unlock(&disable_lock);
}
GC_API_EXPORT int GC_is_disabled(void) { return disable_count > 0; }

/* Growing the heap ahead of need: the pacer will not collect below this many bytes more. */
GC_API_EXPORT int GC_expand_hp(size_t n) {
    bdw_init();
    uint64_t heap = atomic_load_explicit(&gc_heap_bytes, memory_order_relaxed);
    uint64_t floor = gc_opt.goal_min; /* BDW_GOAL_MIN or GC_INITIAL_HEAP_SIZE (read_boehm_env) */
    if (heap + n > floor) gc_opt.goal_min = heap + n;
    cgc_set_gc_percent(gc_opt.gc_percent);
    return 1;
}
GC_API_EXPORT void GC_set_max_heap_size(GC_word n) {
    bdw_init();
    gc_opt.heap_max = n ? n : UINT64_MAX;
}
GC_API_EXPORT void GC_set_free_space_divisor(GC_word d) {
    bdw_init();
    if (d == 0) return;
    pthread_mutex_lock(&disable_lock);
    set_divisor(d, false);
    if (disable_count > 0) saved_percent = (int)(200 / d);
    else cgc_set_gc_percent((int)(200 / d));
    pthread_mutex_unlock(&disable_lock);
}
GC_API_EXPORT GC_word GC_get_free_space_divisor(void) { return GC_free_space_divisor; }

/* ---- statistics ----------------------------------------------------------------------------- */
static GC_word heap_size_of(const cgc_stats *st) {
    uint64_t h = st->span_bytes + st->free_page_bytes;
    return (GC_word)(h > st->released_bytes ? h - st->released_bytes : 0);
}

GC_API_EXPORT size_t GC_get_heap_size(void) {
    bdw_init();
    cgc_stats st;
    cgc_get_stats(&st);
    return heap_size_of(&st);
}
GC_API_EXPORT size_t GC_get_free_bytes(void) {
    bdw_init();
    cgc_stats st;
    cgc_get_stats(&st);
    GC_word h = heap_size_of(&st);
    return h > st.gc_heap_bytes ? h - st.gc_heap_bytes : 0;
}
GC_API_EXPORT size_t GC_get_bytes_since_gc(void) {
    cgc_stats st;
    cgc_get_stats(&st);
    return st.gc_heap_bytes > st.gc_live_bytes ? st.gc_heap_bytes - st.gc_live_bytes : 0;
}
GC_API_EXPORT size_t GC_get_total_bytes(void) {
    cgc_stats st;
    cgc_get_stats(&st);
    /* cgc does not count bytes ever allocated; objects reclaimed + in the heap is a floor */
    return (size_t)(st.gc_heap_bytes + st.gc_freed_total * 16);
}
GC_API_EXPORT void GC_get_heap_usage_safe(GC_word *heap, GC_word *free_bytes, GC_word *unmapped,
                                          GC_word *since_gc, GC_word *total) {
    bdw_init();
    cgc_stats st;
    cgc_get_stats(&st);
    GC_word h = heap_size_of(&st);
    if (heap) *heap = h;
    if (free_bytes) *free_bytes = h > st.gc_heap_bytes ? h - st.gc_heap_bytes : 0;
    if (unmapped) *unmapped = st.released_bytes;
    if (since_gc) *since_gc = st.gc_heap_bytes > st.gc_live_bytes ? st.gc_heap_bytes - st.gc_live_bytes : 0;
    if (total) *total = (GC_word)(st.gc_heap_bytes + st.gc_freed_total * 16);
}
GC_API_EXPORT GC_word GC_get_gc_no(void) {
    return (GC_word)atomic_load_explicit(&bdw_gc_no, memory_order_acquire);
}
GC_API_EXPORT void GC_dump(void) { cgc_print_stats(); }

/* ---- callbacks ------------------------------------------------------------------------------ */
static void default_warn(char *msg, GC_word arg) {
    (void)arg;
    static const char pre[] = "cgc-bdw: warning: ";
    plat_write_stderr(pre, sizeof pre - 1);
    plat_write_stderr(msg, strlen(msg));
}
GC_API_EXPORT void GC_set_warn_proc(GC_warn_proc p) { warn_proc = p; }
GC_API_EXPORT GC_warn_proc GC_get_warn_proc(void) { return warn_proc ? warn_proc : default_warn; }
GC_API_EXPORT void GC_set_oom_fn(GC_oom_func f) { oom_fn = f; }
GC_API_EXPORT GC_oom_func GC_get_oom_fn(void) { return oom_fn; }
GC_API_EXPORT void GC_set_finalize_on_demand(int v) { bdw_finalize_on_demand = v; }
GC_API_EXPORT int GC_get_finalize_on_demand(void) { return bdw_finalize_on_demand; }
/* No-order finalizers already mark everything reachable from a finalizable object before it
 * is finalized, which is what Java-style finalization asks for. */
GC_API_EXPORT void GC_set_java_finalization(int v) { GC_java_finalization = v; }
GC_API_EXPORT int GC_get_java_finalization(void) { return GC_java_finalization; }
GC_API_EXPORT void GC_set_finalizer_notifier(GC_finalizer_notifier_proc f) { bdw_finalizer_notifier = f; }
GC_API_EXPORT GC_finalizer_notifier_proc GC_get_finalizer_notifier(void) { return bdw_finalizer_notifier; }
GC_API_EXPORT void GC_set_start_callback(GC_start_callback_proc f) { bdw_start_callback = f; }
GC_API_EXPORT GC_start_callback_proc GC_get_start_callback(void) { return bdw_start_callback; }

/* Incremental and generational modes are the Boehm GC's own; cgc's cycle is its own. */
GC_API_EXPORT void GC_enable_incremental(void) { bdw_init(); }
GC_API_EXPORT int GC_get_parallel(void) { return plat_ncpu() > 1; }
GC_API_EXPORT void GC_set_dont_expand(int v) {
    if (v) bdw_unsupported("GC_set_dont_expand", "cgc cannot forbid heap growth (use CGC_HEAP_MAX)");
}
GC_API_EXPORT void GC_set_find_leak(int v) {
    if (v) bdw_unsupported("GC_set_find_leak", "the Boehm GC's leak-finding mode is not supported");
}
