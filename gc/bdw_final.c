/* gc/bdw_final.c — Boehm disappearing links and finalizers on cgc's cycle.
 *
 * Two open-addressing hash tables in mapped memory (never scanned, so an entry keeps nothing
 * alive by itself): links, keyed by the link's address, and finalizers, keyed by the object.
 * Deleted slots become tombstones; a table is rebuilt when they pile up.
 *
 * What a cycle does, with the world stopped (the order is the Boehm GC's):
 *   roots hook:   the client data of every registered finalizer and every queued finalizer's
 *                 object and data are roots (Boehm keeps them in traced memory);
 *   process hook, after the roots are drained:
 *     1. short links whose object is unmarked are cleared (*link = NULL) and forgotten —
 *        before finalization, so a finalizer that revives an object does not revive them;
 *     2. finalizable objects that are unmarked move to the ready queue ("no order": an
 *        object is finalized even if another finalizable object points to it), then
 *        everything reachable from them is marked so they survive until their finalizer ran;
 *     3. long links whose object is still unmarked are cleared;
 *     4. registrations whose link lies inside a collected object that is unmarked (dead)
 *        are forgotten.
 * The ready queue is run by GC_invoke_finalizers; after a cycle that queued something the
 * next GC_* allocation either calls the program's finalizer notifier (finalize-on-demand,
 * what Guile uses) or runs the finalizers itself (the Boehm GC's default).
 *
 * Locking: bdw_lock is a no-stop lock (alloc_lock): a thread is never stopped holding it, so
 * the hooks, which run with the world stopped, read the tables without it.
 */
#include "cgc/bdw.h"

#include <string.h>

/* 16 bytes: a Guile weak table registers a link per entry, so the table is a large part of
 * a weak-heavy program's memory. The link is word-aligned (link_add checks), which leaves
 * its low bits for the long flag and for the empty (0) and tombstone (1) markers. */
#define LINK_LONG ((uintptr_t)2)
typedef struct link_ent {
    uintptr_t key; /* the link's address | LINK_LONG for a long link; 0 empty, 1 tombstone */
    uintptr_t obj;
} link_ent;

static inline uintptr_t link_addr(const link_ent *e) { return e->key & ~LINK_LONG; }
static inline int link_is_long(const link_ent *e) { return (e->key & LINK_LONG) != 0; }


typedef struct fin_ent {
    uintptr_t obj; /* 0 empty, 1 tombstone */
    GC_finalization_proc fn;
    void *cd;
} fin_ent;

typedef struct table {
    void *e;
    size_t cap, used, dead; /* used counts live entries + tombstones */
} table;

/* Tables are rebuilt when live entries and tombstones fill three quarters of them (linear
 * probing stays short at that load), doubled when the live entries alone fill half. */
static inline bool table_full(const table *t) { return (t->used + 1) * 4 > t->cap * 3; }
static inline size_t table_new_cap(const table *t) {
    if (t->cap == 0) return 1024;
    return (t->used - t->dead + 1) * 2 > t->cap ? t->cap * 2 : t->cap;
}

static pthread_mutex_t bdw_lock = PTHREAD_MUTEX_INITIALIZER;
static table links = {0}, fins = {0};           /* [bdw_lock] */
static fin_ent *ready;                          /* [bdw_lock] queued finalizers */
static size_t ready_head, ready_tail, ready_cap;
_Atomic int bdw_final_ready;
_Atomic uint64_t bdw_gc_no; /* cycles that reached mark termination (GC_get_gc_no) */
int bdw_finalize_on_demand;
GC_finalizer_notifier_proc bdw_finalizer_notifier;
GC_start_callback_proc bdw_start_callback;

static inline size_t hash_addr(uintptr_t a, size_t cap) {
    return (size_t)((a >> 3) * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
}

static void *map_zero(size_t bytes, const char *what) {
    void *p = plat_map(bytes);
    if (p == NULL) bdw_unsupported(what, "out of memory for its table");
    return p;
}

/* ---- links ------------------------------------------------------------------------------------ */
static link_ent *link_find(uintptr_t link) {
    link_ent *t = links.e;
    if (t == NULL) return NULL;
    for (size_t h = hash_addr(link, links.cap);; h = (h + 1) & (links.cap - 1)) {
        if (link_addr(&t[h]) == link) return &t[h];
        if (t[h].key == 0) return NULL;
    }
}

static void link_insert_raw(link_ent *t, size_t cap, link_ent v) {
    size_t h = hash_addr(link_addr(&v), cap);
    while (t[h].key > 1) h = (h + 1) & (cap - 1);
    t[h] = v;
}

static void link_rehash(size_t ncap) {
    link_ent *nt = map_zero(ncap * sizeof(link_ent), "GC_general_register_disappearing_link");
    link_ent *t = links.e;
    size_t live = 0;
    for (size_t i = 0; i < links.cap; i++)
        if (t[i].key > 1) {
            link_insert_raw(nt, ncap, t[i]);
            live++;
        }
    if (t) plat_unmap(t, links.cap * sizeof(link_ent));
    links = (table){nt, ncap, live, 0};
}

static int link_add(void **link, const void *obj, int is_long, const char *fn) {
    bdw_init();
    if (((uintptr_t)link & 7) != 0) bdw_unsupported(fn, "the link is not word-aligned");
    uintptr_t base;
    size_t sz;
    alloc_span *s;
    /* An object outside the collected heap never becomes unreachable: nothing to clear. */
    if (!gc_find_object((uintptr_t)obj, &base, &sz, &s)) return BDW_SUCCESS;
    alloc_lock(&bdw_lock);
    if (link_find((uintptr_t)link)) {
        alloc_unlock(&bdw_lock);
        return BDW_DUPLICATE;
    }
    if (table_full(&links)) link_rehash(table_new_cap(&links));
    link_ent *t = links.e;
    size_t h = hash_addr((uintptr_t)link, links.cap);
    while (t[h].key > 1) h = (h + 1) & (links.cap - 1);
    if (t[h].key == 0) links.used++;
    else links.dead--;
    t[h] = (link_ent){(uintptr_t)link | (is_long ? LINK_LONG : 0), (uintptr_t)obj};
    alloc_unlock(&bdw_lock);
    return BDW_SUCCESS;
}

static void link_kill(link_ent *e) {
    e->key = 1;
    links.dead++;
}

GC_API_EXPORT int GC_general_register_disappearing_link(void **link, const void *obj) {
    return link_add(link, obj, 0, "GC_general_register_disappearing_link");
}
GC_API_EXPORT int GC_register_disappearing_link(void **link) {
    /* The object is the one containing the link. */
    bdw_init();
    uintptr_t base;
    size_t sz;
    alloc_span *s;
    if (!gc_find_object((uintptr_t)link, &base, &sz, &s))
        bdw_unsupported("GC_register_disappearing_link", "the link is not inside a collected object");
    return link_add(link, (void *)base, 0, "GC_register_disappearing_link");
}
GC_API_EXPORT int GC_register_long_link(void **link, const void *obj) {
    return link_add(link, obj, 1, "GC_register_long_link");
}

static int link_remove(void **link, int is_long) {
    bdw_init();
    alloc_lock(&bdw_lock);
    link_ent *e = link_find((uintptr_t)link);
    int found = e && link_is_long(e) == is_long;
    if (found) link_kill(e);
    alloc_unlock(&bdw_lock);
    return found;
}
GC_API_EXPORT int GC_unregister_disappearing_link(void **link) { return link_remove(link, 0); }
GC_API_EXPORT int GC_unregister_long_link(void **link) { return link_remove(link, 1); }

static int link_move(void **link, void **new_link, int is_long) {
    bdw_init();
    alloc_lock(&bdw_lock);
    link_ent *e = link_find((uintptr_t)link);
    if (e == NULL || link_is_long(e) != is_long) {
        alloc_unlock(&bdw_lock);
        return BDW_NOT_FOUND;
    }
    if (new_link == link) {
        alloc_unlock(&bdw_lock);
        return BDW_SUCCESS;
    }
    if (link_find((uintptr_t)new_link)) {
        alloc_unlock(&bdw_lock);
        return BDW_DUPLICATE;
    }
    uintptr_t obj = e->obj;
    link_kill(e);
    alloc_unlock(&bdw_lock);
    return link_add(new_link, (void *)obj, is_long, "GC_move_disappearing_link");
}
GC_API_EXPORT int GC_move_disappearing_link(void **link, void **new_link) {
    return link_move(link, new_link, 0);
}
GC_API_EXPORT int GC_move_long_link(void **link, void **new_link) {
    return link_move(link, new_link, 1);
}

/* ---- finalizers ------------------------------------------------------------------------------- */
static fin_ent *fin_find(uintptr_t obj) {
    fin_ent *t = fins.e;
    if (t == NULL) return NULL;
    for (size_t h = hash_addr(obj, fins.cap);; h = (h + 1) & (fins.cap - 1)) {
        if (t[h].obj == obj) return &t[h];
        if (t[h].obj == 0) return NULL;
    }
}

static void fin_rehash(size_t ncap) {
    fin_ent *nt = map_zero(ncap * sizeof(fin_ent), "GC_register_finalizer_no_order");
    fin_ent *t = fins.e;
    size_t live = 0;
    for (size_t i = 0; i < fins.cap; i++) {
        if (t[i].obj <= 1) continue;
        size_t h = hash_addr(t[i].obj, ncap);
        while (nt[h].obj) h = (h + 1) & (ncap - 1);
        nt[h] = t[i];
        live++;
    }
    if (t) plat_unmap(t, fins.cap * sizeof(fin_ent));
    fins = (table){nt, ncap, live, 0};
}

GC_API_EXPORT void GC_register_finalizer_no_order(void *obj, GC_finalization_proc fn, void *cd,
                                                  GC_finalization_proc *ofn, void **ocd) {
    bdw_init();
    uintptr_t base;
    size_t sz;
    alloc_span *s;
    GC_finalization_proc old_fn = NULL;
    void *old_cd = NULL;
    /* Like the Boehm GC: a pointer that is not an object's start is ignored. */
    if (obj && gc_find_object((uintptr_t)obj, &base, &sz, &s) && base == (uintptr_t)obj) {
        alloc_lock(&bdw_lock);
        fin_ent *e = fin_find((uintptr_t)obj);
        if (e) {
            old_fn = e->fn;
            old_cd = e->cd;
            if (fn) {
                e->fn = fn;
                e->cd = cd;
            } else {
                e->obj = 1;
                fins.dead++;
            }
        } else if (fn) {
            if (table_full(&fins)) fin_rehash(table_new_cap(&fins));
            fin_ent *t = fins.e;
            size_t h = hash_addr((uintptr_t)obj, fins.cap);
            while (t[h].obj > 1) h = (h + 1) & (fins.cap - 1);
            if (t[h].obj == 0) fins.used++;
            else fins.dead--;
            t[h] = (fin_ent){(uintptr_t)obj, fn, cd};
        }
        alloc_unlock(&bdw_lock);
    }
    if (ofn) *ofn = old_fn;
    if (ocd) *ocd = old_cd;
}

static const char topo_msg[] = "cgc runs finalizers in no order; topological ordering (and "
                               "ignore-self / unreachable variants) is not supported — use "
                               "GC_register_finalizer_no_order";
GC_API_EXPORT void GC_register_finalizer(void *obj, GC_finalization_proc fn, void *cd,
                                         GC_finalization_proc *ofn, void **ocd) {
    (void)obj; (void)fn; (void)cd; (void)ofn; (void)ocd;
    bdw_unsupported("GC_register_finalizer", topo_msg);
}
GC_API_EXPORT void GC_register_finalizer_ignore_self(void *obj, GC_finalization_proc fn, void *cd,
                                                     GC_finalization_proc *ofn, void **ocd) {
    (void)obj; (void)fn; (void)cd; (void)ofn; (void)ocd;
    bdw_unsupported("GC_register_finalizer_ignore_self", topo_msg);
}
GC_API_EXPORT void GC_register_finalizer_unreachable(void *obj, GC_finalization_proc fn, void *cd,
                                                     GC_finalization_proc *ofn, void **ocd) {
    (void)obj; (void)fn; (void)cd; (void)ofn; (void)ocd;
    bdw_unsupported("GC_register_finalizer_unreachable", topo_msg);
}

/* World stopped: append to the ready queue (mapped memory, grown by doubling). */
static void ready_push(fin_ent f) {
    if (ready_tail == ready_cap) {
        if (ready_head > 0) { /* compact first */
            memmove(ready, ready + ready_head, (ready_tail - ready_head) * sizeof(fin_ent));
            ready_tail -= ready_head;
            ready_head = 0;
        }
        if (ready_tail == ready_cap) {
            size_t ncap = ready_cap ? ready_cap * 2 : 1024;
            fin_ent *n = map_zero(ncap * sizeof(fin_ent), "GC_register_finalizer_no_order");
            if (ready) {
                memcpy(n, ready, ready_tail * sizeof(fin_ent));
                plat_unmap(ready, ready_cap * sizeof(fin_ent));
            }
            ready = n;
            ready_cap = ncap;
        }
    }
    ready[ready_tail++] = f;
}

int bdw_invoke_finalizers(void) {
    int n = 0;
    for (;;) {
        /* The object is on this stack before the lock is dropped (see cgc_run_finalizers). */
        void *volatile obj = NULL;
        void *volatile cd = NULL;
        GC_finalization_proc fn = NULL;
        alloc_lock(&bdw_lock);
        if (ready_head < ready_tail) {
            fin_ent *f = &ready[ready_head++];
            obj = (void *)f->obj;
            fn = f->fn;
            cd = f->cd;
            if (ready_head == ready_tail) ready_head = ready_tail = 0;
        }
        alloc_unlock(&bdw_lock);
        if (fn == NULL) break;
        fn(obj, cd);
        obj = NULL;
        cd = NULL;
        n++;
    }
    return n;
}

GC_API_EXPORT int GC_invoke_finalizers(void) {
    bdw_init();
    atomic_store_explicit(&bdw_final_ready, 0, memory_order_relaxed);
    return bdw_invoke_finalizers();
}
GC_API_EXPORT int GC_should_invoke_finalizers(void) {
    alloc_lock(&bdw_lock);
    int r = ready_head < ready_tail;
    alloc_unlock(&bdw_lock);
    return r;
}

/* ---- the collector hooks ---------------------------------------------------------------------- */
static void roots_hook(void) {
    fin_ent *t = fins.e;
    for (size_t i = 0; i < fins.cap; i++)
        if (t[i].obj > 1 && t[i].cd) gc_shade((uintptr_t)t[i].cd);
    for (size_t i = ready_head; i < ready_tail; i++) {
        gc_shade(ready[i].obj);
        if (ready[i].cd) gc_shade((uintptr_t)ready[i].cd);
    }
}

static void clear_links(int is_long) {
    link_ent *t = links.e;
    for (size_t i = 0; i < links.cap; i++) {
        if (t[i].key <= 1 || link_is_long(&t[i]) != is_long) continue;
        if (!gc_is_marked(t[i].obj)) {
            *(void **)link_addr(&t[i]) = NULL;
            link_kill(&t[i]);
        }
    }
}

static void process_hook(void) {
    atomic_fetch_add_explicit(&bdw_gc_no, 1, memory_order_release);
    clear_links(0);
    fin_ent *t = fins.e;
    size_t first = ready_tail;
    for (size_t i = 0; i < fins.cap; i++) {
        if (t[i].obj <= 1 || gc_is_marked(t[i].obj)) continue;
        ready_push(t[i]);
        t[i].obj = 1;
        fins.dead++;
    }
    if (ready_tail > first) {
        for (size_t i = first; i < ready_tail; i++) gc_shade(ready[i].obj);
        gc_drain();
        atomic_store_explicit(&bdw_final_ready, 1, memory_order_release);
    }
    clear_links(1);
    /* Links inside dead collected objects: that memory is about to be reused. */
    link_ent *l = links.e;
    for (size_t i = 0; i < links.cap; i++) {
        if (l[i].key <= 1) continue;
        uintptr_t base;
        size_t sz;
        alloc_span *s;
        if (gc_find_object(link_addr(&l[i]), &base, &sz, &s) && !gc_is_marked(base)) link_kill(&l[i]);
    }
    /* Tables full of tombstones are rebuilt by the next registration that needs room; here
     * only shrink the probe chains when most of a table is dead (no allocation: same size). */
    if (links.cap && links.dead * 2 > links.cap / 2) link_rehash(links.cap);
    if (fins.cap && fins.dead * 2 > fins.cap / 2) fin_rehash(fins.cap);
}

static void start_hook(void) {
    bdw_alloc_lock_grace();
    GC_start_callback_proc f = bdw_start_callback;
    if (f) f();
}

void bdw_final_init(void) {
    gc_bdw_roots_hook = roots_hook;
    gc_bdw_process_hook = process_hook;
    gc_bdw_start_hook = start_hook;
}
