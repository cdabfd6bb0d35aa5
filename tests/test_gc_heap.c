/* The collected heap: scanning kinds, finalizers, weak handles, bounded heap, many threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "gc_test_util.h"

Test(heap, memory_is_zeroed_and_aligned) {
    for (size_t n = 1; n < 70000; n = n * 2 + 3) {
        unsigned char *p = cgc_alloc(n);
        cr_assert(p);
        cr_assert_eq((uintptr_t)p % 16, 0);
        for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], 0, "n=%zu byte %zu", n, i);
        memset(p, 0xff, n);
    }
    cgc_collect(); /* the dirty blocks are reclaimed and handed out again: zeroed */
    for (size_t n = 1; n < 70000; n = n * 2 + 3) {
        unsigned char *p = cgc_alloc(n);
        for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], 0, "reused n=%zu byte %zu", n, i);
    }
}

Test(heap, leaf_objects_do_not_retain) {
    void **volatile leaf = cgc_alloc_leaf(64);
    leaf[3] = unhide(new_hidden());
    uintptr_t h = hide(leaf[3]);
    scrub_stack();
    collect_n(2);
    cr_assert_not(alive(h), "a pointer inside a leaf object kept its target");
    void **volatile scan = cgc_alloc(64); /* the twin: a scanned object does retain */
    scan[3] = unhide(new_hidden());
    h = hide(scan[3]);
    scrub_stack();
    collect_n(5);
    cr_assert(alive(h));
}

typedef struct pair {
    void *ptr;        /* word 0: pointer */
    uintptr_t number; /* word 1: not a pointer */
    void *ptr2;       /* word 2: pointer */
} pair;
static const uint64_t pair_map[1] = {0x5}; /* words 0 and 2 */
static const cgc_type pair_type = {sizeof(pair), 3, pair_map, "pair"};

Test(heap, typed_objects_scan_only_pointer_words) {
    pair *volatile t = cgc_alloc_typed(&pair_type);
    cr_assert(t);
    uintptr_t kept = put_hidden((void *volatile *)&t->ptr);
    /* a pointer in a non-pointer word */
    uintptr_t dropped = put_hidden((void *volatile *)&t->number);
    scrub_stack();
    collect_n(20);
    cr_assert(alive(kept) && intact(unhide(kept)), "pointer word not scanned");
    cr_assert_not(alive(dropped), "a non-pointer word of a typed object retained its target");
    cr_assert_eq(t->number, (uintptr_t)unhide(dropped), "the data itself is untouched");
}

Test(heap, typed_arrays) {
    pair *volatile a = cgc_alloc_array(&pair_type, 1000);
    cr_assert(a);
    for (int i = 0; i < 1000; i++) a[i].ptr2 = unhide(new_hidden());
    uintptr_t h999 = hide(a[999].ptr2);
    scrub_stack();
    collect_n(10);
    for (int i = 0; i < 1000; i++) cr_assert(intact(a[i].ptr2), "element %d", i);
    a[999].ptr2 = NULL;
    collect_n(2);
    cr_assert_not(alive(h999));
    errno = 0;
    cr_assert_null(cgc_alloc_array(&pair_type, SIZE_MAX / 8));
    cr_assert_eq(errno, ENOMEM);
}

/* ---- finalizers ---- */
static _Atomic int fin_runs;
static _Atomic uintptr_t fin_obj;
static void on_final(void *o, void *arg) {
    cr_assert_eq(arg, (void *)0xf00d);
    cr_assert(intact(o), "the object is intact while its finalizer runs");
    atomic_store(&fin_obj, hide(o));
    atomic_fetch_add(&fin_runs, 1);
}

static void manual_finalizers(void) { setenv("CGC_FINALIZERS", "manual", 1); }

__attribute__((noinline)) static void set_final_hidden(uintptr_t h) {
    cgc_set_finalizer(unhide(h), on_final, (void *)0xf00d);
}

Test(finalizers, run_exactly_once_and_keep_the_object_until_then, .init = manual_finalizers) {
    uintptr_t h = new_hidden();
    set_final_hidden(h);
    void *volatile keep; /* reachable: its finalizer must not run */
    uintptr_t h2 = put_hidden(&keep);
    set_final_hidden(h2);
    scrub_stack();
    cgc_collect();
    cr_assert(alive(h), "an object with a pending finalizer is kept for one more cycle");
    cr_assert_eq(cgc_run_finalizers(), 1);
    cr_assert_eq(atomic_load(&fin_runs), 1);
    cr_assert_eq(atomic_load(&fin_obj), h);
    collect_n(5);
    cr_assert_eq(cgc_run_finalizers(), 0, "a finalizer runs once");
    cr_assert_eq(atomic_load(&fin_runs), 1);
    cr_assert_not(alive(h), "collected after its finalizer ran");
    cr_assert(alive(h2));
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.gc_finalizers_run, 1);
}

Test(finalizers, finalizer_thread_runs_them_by_default) {
    uintptr_t h = new_hidden();
    set_final_hidden(h);
    scrub_stack();
    cgc_collect();
    for (int i = 0; i < 500 && atomic_load(&fin_runs) == 0; i++) usleep(10000);
    cr_assert_eq(atomic_load(&fin_runs), 1);
    collect_n(3);
    usleep(50000);
    cr_assert_eq(atomic_load(&fin_runs), 1);
}

/* ---- weak handles ---- */
/* The handle's target, disguised (0 for NULL). */
__attribute__((noinline)) static uintptr_t weak_hidden(cgc_weak *w) {
    void *p = cgc_weak_get(w);
    return p ? hide(p) : 0;
}

__attribute__((noinline)) static cgc_weak *weak_to_hidden(uintptr_t h) { return cgc_weak_new(unhide(h)); }

Test(weak, clears_exactly_when_the_target_is_collected) {
    void *volatile strong;
    uintptr_t h = put_hidden(&strong);
    cgc_weak *volatile w = weak_to_hidden(h);
    for (int i = 0; i < 1000; i++) {
        cgc_collect();
        cr_assert_eq(weak_hidden(w), h, "cleared while the target was reachable");
    }
    strong = NULL;
    scrub_stack();
    cgc_collect();
    cr_assert_eq(weak_hidden(w), 0, "not cleared after the target was collected");
    cr_assert_not(alive(h));
}

Test(weak, object_kept_for_its_finalizer_is_not_yet_collected, .init = manual_finalizers) {
    uintptr_t h = new_hidden();
    cgc_weak *volatile w = weak_to_hidden(h);
    set_final_hidden(h);
    scrub_stack();
    cgc_collect(); /* unreachable, but kept for its finalizer */
    cr_assert_eq(weak_hidden(w), h);
    cr_assert_eq(cgc_run_finalizers(), 1);
    atomic_store(&fin_obj, 0);
    scrub_stack();
    cgc_collect();
    cr_assert_eq(weak_hidden(w), 0);
}

/* ---- bounded heap ---- */
Test(pacing, heap_stays_bounded_while_allocating_100x_live) {
    enum { LIVE = 16 << 20 };
    size_t n = LIVE / sizeof(obj);
    obj **volatile live = cgc_alloc(n * sizeof(obj *));
    for (size_t i = 0; i < n; i++) live[i] = cgc_alloc(sizeof(obj));
    cgc_collect();
    uint64_t peak = 0;
    for (size_t i = 0; i < 100 * n; i++) {
        obj *g = cgc_alloc(sizeof(obj));
        g->magic = i;
        if (i % 4096 == 0) {
            live[(i / 4096) % n] = g; /* the live set churns too */
            cgc_stats st;
            cgc_get_stats(&st);
            if (st.span_bytes > peak) peak = st.span_bytes;
        }
    }
    cgc_stats st;
    cgc_get_stats(&st);
    cr_log_info("live %d MiB, peak span bytes %.1f MiB, cycles %llu", LIVE >> 20,
                peak / 1048576.0, (unsigned long long)st.gc_cycles);
    cr_assert(st.gc_cycles >= 10, "the pacer ran only %llu cycles", (unsigned long long)st.gc_cycles);
    cr_assert(peak <= 3ull * (LIVE + n * sizeof(obj *)), "heap peaked at %llu bytes for %zu live",
              (unsigned long long)peak, (size_t)LIVE);
}

static void hard_cap(void) { setenv("CGC_HEAP_MAX", "32M", 1); }

Test(pacing, hard_cap_returns_enomem_never_overruns, .init = hard_cap) {
    void **volatile keep = cgc_alloc(100000 * sizeof(void *));
    size_t i = 0;
    for (; i < 100000; i++) {
        keep[i] = cgc_alloc(4096);
        if (keep[i] == NULL) break;
    }
    cr_assert(i < 100000, "32 MiB cap never hit with 400 MiB live");
    cr_assert_eq(errno, ENOMEM);
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert(st.gc_heap_bytes <= (32u << 20), "heap %llu over the cap",
              (unsigned long long)st.gc_heap_bytes);
    keep[0] = NULL;
    for (size_t j = 0; j < i; j++) keep[j] = NULL; /* drop everything: allocation works again */
    cr_assert(cgc_alloc(4096));
}

Test(pacing, gc_percent_off_disables_automatic_cycles) {
    cr_assert_eq(cgc_set_gc_percent(-1), 100);
    for (int i = 0; i < 200000; i++) cr_assert(cgc_alloc(256));
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.gc_cycles, 0);
    cr_assert_eq(cgc_set_gc_percent(100), -1);
}

/* The goal after the live heap falls: it slides down from the last peak over CGC_GOAL_HOLD_MS
 * (docs/collector.md "The goal holds a recent peak"); with CGC_GOAL_HOLD_MS=0, at once. */
static void **volatile big_set; /* a global: found by the auto roots, dropped by clearing it */

__attribute__((noinline)) static uint64_t build_big_set(void) {
    enum { LIVE = 24 << 20 };
    size_t n = LIVE / 4096;
    big_set = cgc_alloc(n * sizeof(void *));
    for (size_t i = 0; i < n; i++) big_set[i] = cgc_alloc_leaf(4096);
    cgc_collect();
    cgc_stats st;
    cgc_get_stats(&st);
    return st.gc_goal_bytes;
}

static uint64_t goal_after_a_fall(uint64_t *peak_goal, uint64_t *live_after) {
    *peak_goal = build_big_set();
    big_set = NULL;
    scrub_stack();
    cgc_stats st;
    collect_n(2);
    cgc_get_stats(&st);
    *live_after = st.gc_live_bytes;
    return st.gc_goal_bytes;
}

static void decay_400ms(void) { setenv("CGC_GOAL_HOLD_MS", "400", 1); }

Test(pacing, goal_slides_down_from_a_recent_peak, .init = decay_400ms) {
    uint64_t peak, live;
    uint64_t goal = goal_after_a_fall(&peak, &live);
    cr_log_info("peak goal %.1f MiB, live after the fall %.1f MiB, goal %.1f MiB",
                peak / 1048576.0, live / 1048576.0, goal / 1048576.0);
    cr_assert(peak >= (48u << 20), "24 MiB live gave a goal of only %llu", (unsigned long long)peak);
    cr_assert(live < (4u << 20), "the big set was not collected: %llu live", (unsigned long long)live);
    cr_assert(goal > peak / 2 && goal <= peak, "goal %llu right after the fall, peak %llu",
              (unsigned long long)goal, (unsigned long long)peak);
    usleep(500 * 1000); /* past the decay: the plain goal again */
    cgc_collect();
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert(st.gc_goal_bytes < (16u << 20), "goal %llu 0.5 s after the fall (hold 0.4 s)",
              (unsigned long long)st.gc_goal_bytes);
}

static void no_decay(void) { setenv("CGC_GOAL_HOLD_MS", "0", 1); }

Test(pacing, goal_falls_at_once_with_hold_0, .init = no_decay) {
    uint64_t peak, live;
    uint64_t goal = goal_after_a_fall(&peak, &live);
    cr_assert(peak >= (48u << 20));
    cr_assert(live < (4u << 20), "the big set was not collected: %llu live", (unsigned long long)live);
    cr_assert(goal < (16u << 20), "goal %llu after the fall with CGC_GOAL_HOLD_MS=0",
              (unsigned long long)goal);
}

/* ---- many threads ---- */
#define NT 8
static void *mutator(void *arg) {
    cgc_thread_register();
    uintptr_t seed = (uintptr_t)arg;
    obj *volatile head = NULL;
    size_t len = 0;
    for (int round = 0; round < 40000; round++) {
        seed = seed * 6364136223846793005ull + 1;
        obj *o = cgc_alloc(sizeof(obj));
        o->magic = MAGIC;
        for (int i = 0; i < 6; i++) o->payload[i] = (uint64_t)i * 77;
        if ((seed >> 40) % 3 == 0 || len < 10) {
            o->next = head;
            head = o;
            len++;
        }
        if ((seed >> 33) % 2000 == 0) cgc_collect();
        if (len > 2000) { /* drop half the list */
            obj *q = head;
            for (size_t i = 0; i < len / 2; i++) q = q->next;
            q->next = NULL;
            len = len / 2 + 1;
        }
    }
    size_t n = 0;
    for (obj *q = head; q; q = q->next, n++)
        if (!intact(q)) return (void *)1;
    cgc_thread_unregister();
    return n == len ? NULL : (void *)2;
}

Test(threads, eight_threads_allocate_and_collect_and_lose_nothing, .timeout = 120) {
    cgc_collect();
    pthread_t t[NT];
    for (uintptr_t i = 0; i < NT; i++) pthread_create(&t[i], NULL, mutator, (void *)(i + 1));
    for (int i = 0; i < NT; i++) {
        void *r;
        cgc_blocking_enter();
        pthread_join(t[i], &r);
        cgc_blocking_leave();
        cr_assert_null(r, "thread %d lost or corrupted objects (%p)", i, r);
    }
    cgc_collect();
    cr_assert_null(gc_heap_check());
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert(st.gc_cycles > 20);
}

Test(verify, checkmark_passes_on_a_busy_heap) {
    setenv("CGC_CHECKMARK", "1", 1);
    gc_read_options();
    obj *volatile head = NULL;
    for (int i = 0; i < 100000; i++) {
        obj *o = cgc_alloc(sizeof(obj));
        if (i % 3 == 0) {
            o->next = head;
            head = o;
        }
    }
    collect_n(5);
    cr_assert_null(gc_heap_check());
}

Test(verify, clobber_fills_reclaimed_objects) {
    setenv("CGC_CLOBBER", "1", 1);
    gc_read_options();
    uintptr_t h = new_hidden();
    scrub_stack();
    cgc_collect();
    cr_assert_not(alive(h));
    cr_assert_eq(*(uint64_t *)unhide(h), 0xdeadbeefdeadbeefull, "reclaimed memory is clobbered");
}

/* fork from a registered thread while another thread collects: no deadlock, and the child
 * has a working collected heap of its own (its only thread registered, helpers re-created). */
#include <sys/wait.h>
static _Atomic int stop_collector;
static void *collector_loop(void *arg) {
    (void)arg;
    cgc_thread_register();
    while (!atomic_load(&stop_collector)) cgc_collect();
    return NULL;
}

Test(fork, fork_while_collecting_and_collect_in_the_child, .timeout = 60) {
    cgc_collect();
    pthread_t t;
    pthread_create(&t, NULL, collector_loop, NULL);
    for (int i = 0; i < 300; i++) {
        void *volatile keep;
        uintptr_t h = put_hidden(&keep);
        pid_t pid = fork();
        if (pid == 0) {
            for (int j = 0; j < 2000; j++) cr_assert(cgc_alloc(64));
            cgc_collect();
            _exit(alive(h) && intact_hidden(h) ? 0 : 3);
        }
        int status = 0;
        cgc_blocking_enter();
        waitpid(pid, &status, 0);
        cgc_blocking_leave();
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed: %d", i, status);
    }
    atomic_store(&stop_collector, 1);
    cgc_blocking_enter();
    pthread_join(t, NULL);
    cgc_blocking_leave();
}

Test(threads, stats_while_collecting) {
    cgc_collect();
    atomic_store(&stop_collector, 0);
    pthread_t t;
    pthread_create(&t, NULL, collector_loop, NULL);
    cgc_stats st;
    for (int i = 0; i < 100000; i++) cgc_get_stats(&st);
    atomic_store(&stop_collector, 1);
    cgc_blocking_enter();
    pthread_join(t, NULL);
    cgc_blocking_leave();
    cr_assert(st.gc_cycles > 0);
}

/* Two mixed-map types of the same size class, allocated alternately: each object is scanned
 * with its own type's map (typed objects of one type share a span, without a header). */
typedef struct ta { void *p; uintptr_t n; } ta; /* pointer, number */
typedef struct tb { uintptr_t n; void *p; } tb; /* number, pointer */
static const uint64_t ta_map[1] = {0x1}, tb_map[1] = {0x2};
static const cgc_type ta_type = {sizeof(ta), 2, ta_map, "ta"};
static const cgc_type tb_type = {sizeof(tb), 2, tb_map, "tb"};

Test(heap, alternating_typed_objects_keep_their_own_maps) {
    enum { N = 2000 };
    void **volatile holders = cgc_alloc(2 * N * sizeof(void *));
    static uintptr_t kept[2 * N], dropped[2 * N];
    for (int i = 0; i < N; i++) {
        ta *a = cgc_alloc_typed(&ta_type);
        tb *b = cgc_alloc_typed(&tb_type);
        cr_assert(a && b);
        cr_assert_eq((uintptr_t)a % 16, 0);
        kept[2 * i] = put_hidden(&a->p);
        dropped[2 * i] = put_hidden((void *volatile *)&a->n);
        kept[2 * i + 1] = put_hidden(&b->p);
        dropped[2 * i + 1] = put_hidden((void *volatile *)&b->n);
        holders[2 * i] = a;
        holders[2 * i + 1] = b;
    }
    scrub_stack();
    collect_n(3);
    for (int i = 0; i < 2 * N; i++) {
        cr_assert(alive(kept[i]) && intact_hidden(kept[i]), "pointer word %d lost its target", i);
        cr_assert_not(alive(dropped[i]), "non-pointer word %d retained its target", i);
    }
}

Test(heap, free_of_a_collected_object_is_reported, .signal = SIGABRT) {
    void *p = cgc_alloc(64);
    cgc_free(p);
}

Test(heap, free_of_a_large_collected_object_is_reported, .signal = SIGABRT) {
    void *p = cgc_alloc(100000);
    cgc_free(p);
}

Test(heap, realloc_and_usable_size_refuse_collected_objects) {
    setenv("CGC_ON_ERROR", "warn", 1);
    alloc_read_options();
    void *volatile p = cgc_alloc(64);
    cr_assert_eq(cgc_usable_size(p), 0);
    cr_assert_null(cgc_realloc(p, 128));
    cgc_free(p); /* reported, ignored */
    cgc_collect();
    cr_assert_null(gc_heap_check());
    cgc_stats st;
    cgc_get_stats(&st);
    cr_assert_eq(st.errors, 2);
}
