/* alloc/init.c — initialisation, options, fork handling, statistics and error reports.
 *
 * Initialisation happens on the first allocation (or cgc_init, or the library constructor,
 * whichever comes first) in two steps, because step 2 calls into the C library, which may
 * call malloc again on this very thread:
 *   1. core: size classes and options; afterwards alloc_ready = 1 and allocation works;
 *   2. the thread-exit key and the fork handlers; afterwards alloc_ready = 2.
 * Options are read once, from `environ` directly (getenv is fine too, but this keeps the
 * "never allocate while initialising" rule obvious).
 */
#include "cgc/internal.h"
#include "cgc/leak.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

alloc_options alloc_opt = {
    .stats = 0,
    .on_error_warn = 0,
    .decay_ns = 1000ull * 1000 * 1000,
    .scavenger = 1,
};
_Atomic int alloc_ready;
uintptr_t alloc_tag_key = 0x5bd1e9955bd1e995u; /* replaced by a random key at init */
static _Atomic int init_started;
static _Atomic uint64_t error_count;

void (*alloc_leak_stats_hook)(cgc_stats *st);
extern uint64_t alloc_dead_nmalloc, alloc_dead_nfree, alloc_dead_nremote, alloc_threads_created;

size_t alloc_fmt(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- options ----------------------------------------------------------------------------- */
/* Every CGC_* variable this build understands. README "Options" documents each one. */
static const char *const known_options[] = {
    "CGC_STATS", "CGC_ON_ERROR", "CGC_DECAY_MS", "CGC_SCAVENGER",
    /* the collector's (gc/cycle.c reads them) */
    "CGC_GC_PERCENT", "CGC_MEMORY_LIMIT", "CGC_HEAP_MAX", "CGC_TRACE", "CGC_CLOBBER",
    "CGC_CHECKMARK", "CGC_ROOTS", "CGC_SIGNAL", "CGC_FINALIZERS", "CGC_TRACE_FILE",
    "CGC_STOPTHEWORLD", "CGC_DEBUG_BARRIER", "CGC_GOAL_HOLD_MS",
    /* leak mode's (gc/leak.c) */
    "CGC_LEAKS", "CGC_LEAKS_INTERVAL", "CGC_LEAKS_STACKS", "CGC_LEAKS_FILE", "CGC_LEAKS_JSON", NULL,
};

static void warn_unknown(const char *name, size_t len, const char *value) {
    (void)value;
    for (const char *const *k = known_options; *k; k++)
        if (strlen(*k) == len && memcmp(*k, name, len) == 0) return;
    char buf[256];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc: warning: unknown option %.*s (ignored)\n",
                         (int)(len > 100 ? 100 : len), name);
    plat_write_stderr(buf, n);
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (s == NULL || *s == 0) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > UINT64_MAX / 10) return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static void bad_option(const char *name, const char *value) {
    char buf[256];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc: warning: bad value '%.60s' for %s (default kept)\n",
                         value, name);
    plat_write_stderr(buf, n);
}

void alloc_read_options(void) {
    const char *v;
    uint64_t u;
    if ((v = plat_getenv("CGC_STATS")) != NULL) alloc_opt.stats = strcmp(v, "0") != 0 && *v;
    if ((v = plat_getenv("CGC_ON_ERROR")) != NULL) {
        if (strcmp(v, "warn") == 0) alloc_opt.on_error_warn = 1;
        else if (strcmp(v, "abort") == 0) alloc_opt.on_error_warn = 0;
        else bad_option("CGC_ON_ERROR", v);
    }
    if ((v = plat_getenv("CGC_DECAY_MS")) != NULL) {
        if (parse_u64(v, &u) && u > 0 && u < 24ull * 3600 * 1000) alloc_opt.decay_ns = u * 1000000;
        else bad_option("CGC_DECAY_MS", v);
    }
    if ((v = plat_getenv("CGC_SCAVENGER")) != NULL) {
        if (strcmp(v, "0") == 0 || strcmp(v, "1") == 0) alloc_opt.scavenger = *v == '1';
        else bad_option("CGC_SCAVENGER", v);
    }
    leak_parse_mode(); /* before the first block is handed out: every block is tracked */
    plat_env_foreach("CGC_", warn_unknown);
}

/* ---- initialisation ---------------------------------------------------------------------- */
void alloc_init_slow(void) {
    if (atomic_load_explicit(&alloc_ready, memory_order_acquire) >= 1) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&init_started, &expected, 1,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        /* Another thread is initialising the core; it takes microseconds. */
        while (atomic_load_explicit(&alloc_ready, memory_order_acquire) < 1) sched_yield();
        return;
    }
    alloc_sizeclass_init();
    alloc_cache_init(&alloc_orphan_cache);
    alloc_tag_key = plat_random_u64() | 1;
    alloc_read_options();
    atomic_store_explicit(&alloc_ready, 1, memory_order_release);
    /* From here malloc works; these may call it. */
    alloc_cache_key_init();
    pthread_atfork(alloc_fork_prepare, alloc_fork_parent, alloc_fork_child);
    atomic_store_explicit(&alloc_ready, 2, memory_order_release);
}

void cgc_init(void) { alloc_ensure_init(); }

__attribute__((constructor)) static void alloc_constructor(void) { alloc_ensure_init(); }

__attribute__((destructor)) static void alloc_destructor(void) {
    if (alloc_opt.stats) cgc_print_stats();
}

/* ---- fork ------------------------------------------------------------------------------- */
/* Lock order: registry, orphan, centrals, heap. The forking thread holds them across fork,
 * so it must not be stopped by the collector meanwhile: a no-stop region, left in the
 * parent and dropped in the child (which has no collector thread to answer). */
CGC_TLS unsigned char alloc_tls_fork_skip, alloc_tls_fork_checked;

void alloc_fork_prepare(void) {
    if (alloc_tls_fork_skip) return; /* the collector's handler found us inside cgc */
    if (!alloc_tls_fork_checked && alloc_tls_nostop > 0) { /* interrupted inside a lock */
        alloc_tls_fork_skip = 1;
        return;
    }
    alloc_tls_fork_checked = 0;
    alloc_nostop_enter();
    pthread_mutex_lock(&alloc_cache_registry_lock);
    pthread_mutex_lock(&alloc_orphan_lock);
    for (unsigned i = 0; i < ALLOC_NCLASSES; i++) pthread_mutex_lock(&alloc_centrals[i].lock);
    pthread_mutex_lock(&alloc_heap_lock);
}

void alloc_fork_parent(void) {
    if (alloc_tls_fork_skip) {
        if (alloc_tls_fork_skip == 1) alloc_tls_fork_skip = 0; /* else the collector's clears it */
        return;
    }
    pthread_mutex_unlock(&alloc_heap_lock);
    for (unsigned i = ALLOC_NCLASSES; i-- > 0;) pthread_mutex_unlock(&alloc_centrals[i].lock);
    pthread_mutex_unlock(&alloc_orphan_lock);
    pthread_mutex_unlock(&alloc_cache_registry_lock);
    alloc_nostop_leave();
}

void alloc_fork_child(void) {
    if (alloc_tls_fork_skip) {
        if (alloc_tls_fork_skip == 1) alloc_tls_fork_skip = 0;
        return;
    }
    pthread_mutex_init(&alloc_heap_lock, NULL);
    for (unsigned i = 0; i < ALLOC_NCLASSES; i++) pthread_mutex_init(&alloc_centrals[i].lock, NULL);
    pthread_mutex_init(&alloc_orphan_lock, NULL);
    pthread_mutex_init(&alloc_cache_registry_lock, NULL);
    if (alloc_gc_fork_child_hook) alloc_gc_fork_child_hook(); /* before the release hook runs */
    alloc_cache_fork_child();
    alloc_scavenger_after_fork_child();
    alloc_tls_stop_deferred = 0; /* the parent's collector is not ours */
    alloc_tls_nostop--;
}

/* ---- errors ----------------------------------------------------------------------------- */
void alloc_report_error(const char *what, const void *p) {
    atomic_fetch_add_explicit(&error_count, 1, memory_order_relaxed);
    char buf[256];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc: error: %s: %p (pid %d)%s\n", what, p, (int)getpid(),
                         alloc_opt.on_error_warn ? "" : "; aborting (CGC_ON_ERROR=warn to continue)");
    plat_write_stderr(buf, n);
    if (!alloc_opt.on_error_warn) plat_abort();
}

_Noreturn void alloc_assert_fail(const char *expr, const char *file, int line) {
    char buf[512];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc: internal assertion failed: %s at %s:%d\n", expr,
                         file, line);
    plat_write_stderr(buf, n);
    plat_abort();
}

/* ---- statistics --------------------------------------------------------------------------- */
void cgc_get_stats(cgc_stats *out) {
    alloc_ensure_init();
    cgc_stats st;
    memset(&st, 0, sizeof st);
    st.version = CGC_STATS_VERSION;
    st.size = sizeof st;
    alloc_lock(&alloc_cache_registry_lock); /* no-stop: the collector needs it stopped */
    st.malloc_count = alloc_dead_nmalloc;
    st.free_count = alloc_dead_nfree;
    st.remote_free_count = alloc_dead_nremote;
    st.threads = alloc_threads_created;
    for (alloc_cache *c = alloc_cache_registry; c; c = c->reg_next) {
        st.malloc_count += atomic_load_explicit(&c->nmalloc, memory_order_relaxed);
        st.free_count += atomic_load_explicit(&c->nfree, memory_order_relaxed);
        st.remote_free_count += atomic_load_explicit(&c->nremote, memory_order_relaxed);
    }
    alloc_unlock(&alloc_cache_registry_lock);
    alloc_lock(&alloc_orphan_lock);
    st.malloc_count += atomic_load_explicit(&alloc_orphan_cache.nmalloc, memory_order_relaxed);
    alloc_unlock(&alloc_orphan_lock);
    st.malloc_count += atomic_load_explicit(&alloc_orphan_nlarge, memory_order_relaxed);
    st.remote_free_count += atomic_load_explicit(&alloc_orphan_nremote, memory_order_relaxed);
    st.free_count += st.remote_free_count;
    st.free_count += atomic_load_explicit(&alloc_orphan_nfree, memory_order_relaxed);
    alloc_heap_stats hs;
    alloc_heap_get_stats(&hs);
    st.mapped_bytes = hs.mapped;
    st.released_bytes = hs.released;
    st.committed_bytes = hs.mapped - hs.released;
    st.span_bytes = hs.span_bytes;
    st.free_page_bytes = hs.free_bytes;
    st.large_bytes = hs.large_bytes;
    st.large_count = hs.large_count;
    st.scavenged_bytes = hs.scavenged;
    st.errors = atomic_load_explicit(&error_count, memory_order_relaxed);
    if (alloc_gc_stats_hook) alloc_gc_stats_hook(&st);
    if (alloc_leak_stats_hook) alloc_leak_stats_hook(&st);
    *out = st;
}

void cgc_print_stats(void) {
    cgc_stats st;
    cgc_get_stats(&st);
    char buf[1024];
    const double mib = 1024.0 * 1024.0;
    size_t n = alloc_fmt(buf, sizeof buf,
        "cgc: stats: pid %d: mallocs %llu frees %llu (remote %llu) large %llu threads %llu errors %llu\n"
        "cgc: stats: heap: mapped %.1f MiB, committed %.1f MiB, in spans %.1f MiB (large %.1f MiB), "
        "free pages %.1f MiB, released %.1f MiB, scavenged total %.1f MiB\n",
        (int)getpid(), (unsigned long long)st.malloc_count, (unsigned long long)st.free_count,
        (unsigned long long)st.remote_free_count, (unsigned long long)st.large_count,
        (unsigned long long)st.threads, (unsigned long long)st.errors, st.mapped_bytes / mib,
        st.committed_bytes / mib, st.span_bytes / mib, st.large_bytes / mib,
        st.free_page_bytes / mib, st.released_bytes / mib, st.scavenged_bytes / mib);
    if (st.gc_cycles > 0 && n < sizeof buf) {
        n += alloc_fmt(buf + n, sizeof buf - n,
            "cgc: stats: collector: %llu cycles, live %.1f MiB, heap %.1f MiB, goal %.1f MiB, "
            "%llu objects freed, %llu finalizers run, stops %.3f ms total, %.3f ms max, "
            "single-thread holds %.3f ms max (%.3f ms after the thread answered)\n",
            (unsigned long long)st.gc_cycles, st.gc_live_bytes / mib, st.gc_heap_bytes / mib,
            st.gc_goal_bytes / mib, (unsigned long long)st.gc_freed_total,
            (unsigned long long)st.gc_finalizers_run, st.gc_pause_total_ns / 1e6,
            st.gc_pause_max_ns / 1e6, st.gc_hold_max_ns / 1e6, st.gc_hold_held_max_ns / 1e6);
    }
    if ((st.leak_cycles > 0 || st.leak_cycles_given_up > 0) && n < sizeof buf) {
        n += alloc_fmt(buf + n, sizeof buf - n,
            "cgc: stats: leaks: %llu checks (%llu given up), last check %llu blocks %.1f MiB lost, "
            "%llu blocks %.1f MiB freed since start\n",
            (unsigned long long)st.leak_cycles, (unsigned long long)st.leak_cycles_given_up,
            (unsigned long long)st.leak_lost_blocks, st.leak_lost_bytes / mib,
            (unsigned long long)st.leak_freed_blocks, st.leak_freed_bytes / mib);
    }
    plat_write_stderr(buf, n);
}
