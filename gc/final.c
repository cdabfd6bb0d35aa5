/* gc/final.c — finalizers and weak handles (DESIGN §3.6).
 *
 * Finalizers. cgc_set_finalizer keeps an entry (object, function, argument) in final_table.
 * A cycle decides at mark termination: an entry whose object is unmarked moves to
 * final_ready and its object is kept (marked) for one more cycle, so the function sees it
 * intact; the finalizer thread (or cgc_run_finalizers) runs the ready entries, once each.
 * In the concurrent cycle the contents of every registered object are scanned as roots at
 * the start of marking (Go's "specials"): what a finalizable object points to is always
 * kept, so at termination only the object itself needs marking — a constant-time step per
 * entry, nothing proportional to the heap in the stop — and objects only reachable from a
 * finalizable object are finalized after it (ordered finalization). The stop-the-world cycle
 * marks from unreachable finalizable objects after the main mark instead.
 *
 * Weak handles are leaf objects holding the target's address (never traced). At mark
 * termination a handle whose target is unmarked is cleared. cgc_weak_get shades its
 * result while marking (through the barrier buffer), so a target read during marking
 * survives the cycle.
 *
 * Locks: final_lock is a no-stop lock (no thread is stopped holding it); the cycle takes it
 * once the world is stopped. The finalizer thread sleeps on final_wait_lock, which the
 * cycle never takes.
 */
#include "cgc/gc.h"

#include <string.h>

static _Atomic uint64_t finalizers_run;

/* ---- finalizers ---------------------------------------------------------------------------------- */
typedef struct fin {
    uintptr_t obj;
    void (*fn)(void *, void *);
    void *arg;
    struct fin *next;
} fin;
static pthread_mutex_t final_lock = PTHREAD_MUTEX_INITIALIZER; /* no-stop: the cycle takes it */
void gc_final_lock(void) { alloc_lock(&final_lock); }
void gc_final_unlock(void) { alloc_unlock(&final_lock); }
uint64_t gc_finalizers_run(void) { return atomic_load_explicit(&finalizers_run, memory_order_relaxed); }
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
        /* Registered while marking: the start-of-mark scan of finalizable objects missed
         * it, so treat the object as reachable this cycle (it is: the caller holds it). */
        if (atomic_load_explicit(&gc_marking, memory_order_acquire)) gc_barrier_shade((uintptr_t)obj);
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

/* [final_lock, world stopped] Entries whose object is unmarked move to the ready queue;
 * mark_only: also set each such object's mark bit (the concurrent cycle, whose contents
 * were marked from the start). */
static void ready_unmarked(bool mark_only) {
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
        if (mark_only) gc_mark_only(f->obj);
    }
}

/* World stopped, roots marked: objects with finalizers that nothing reached move to the
 * ready queue and are marked (with everything they reach) so they survive this cycle. */
void gc_process_finalizers(void) {
    ready_unmarked(false);
    gc_scan_finalizer_roots();
    gc_drain();
}

void gc_scan_finalizer_roots(void) {
    for (fin *f = final_ready; f; f = f->next) gc_shade(f->obj);
    if (gc_bdw_roots_hook) gc_bdw_roots_hook(); /* bdw: its queued finalizers */
}

/* Concurrent cycle, start of marking [final_lock]: ready objects are roots; registered
 * objects' contents are roots (not the objects themselves). */
void gc_final_mark_roots(void) {
    gc_scan_finalizer_roots();
    for (fin *f = final_table; f; f = f->next) gc_mark_contents(f->obj);
}

/* Concurrent cycle, mark termination [final_lock, world stopped]: unmarked registered
 * objects become ready and are marked (their contents were marked from the start). */
void gc_final_terminate(void) { ready_unmarked(true); }

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

void gc_final_wake(void) {
    alloc_lock(&final_lock);
    bool any = final_ready != NULL;
    alloc_unlock(&final_lock);
    if (!gc_opt.finalizer_thread || !any) return;
    /* Blocking region: a registered caller may be stopped while it holds final_wait_lock,
     * so another registered caller waiting for it must not need the stop signal to be
     * counted as stopped. Without the sanitizer the signal interrupts the futex wait; under
     * ThreadSanitizer it is held until pthread_mutex_lock returns, and the stop waited
     * forever (gc_stress under TSan: one mutator parked holding the lock, another blocked
     * on it). Nothing here touches the collected heap. */
    cgc_blocking_enter();
    pthread_mutex_lock(&final_wait_lock);
    /* The finalizer thread runs user code on the collected heap: it is registered, so it
     * must take the stop signal. */
    if (!final_thread_started)
        final_thread_started = plat_spawn_detached(finalizer_main, NULL, 0, gc_opt.signal);
    atomic_store_explicit(&final_pending, 1, memory_order_release);
    pthread_cond_signal(&final_cv);
    pthread_mutex_unlock(&final_wait_lock);
    cgc_blocking_leave();
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
    if (w == NULL) return NULL;
    /* No stop between the read and the shade: mark termination cannot clear the handle
     * after we read a target it then considers unreachable. */
    alloc_nostop_enter();
    void *p = ((volatile const cgc_weak *)w)->target;
    if (p && atomic_load_explicit(&gc_marking, memory_order_acquire)) gc_barrier_shade((uintptr_t)p);
    alloc_nostop_leave();
    return p;
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


/* fork: what = 0 prepare (take the locks), 1 parent, 2 child (the finalizer thread is gone). */
void gc_final_fork(int what) {
    if (what == 0) {
        pthread_mutex_lock(&final_lock);
        pthread_mutex_lock(&final_wait_lock);
    } else if (what == 1) {
        pthread_mutex_unlock(&final_wait_lock);
        pthread_mutex_unlock(&final_lock);
    } else {
        pthread_mutex_init(&final_wait_lock, NULL);
        pthread_cond_init(&final_cv, NULL);
        pthread_mutex_init(&final_lock, NULL);
        final_thread_started = 0;
    }
}
