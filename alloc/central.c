/* alloc/central.c — spans that no thread owns (Go's mcentral), one list pair per class.
 *
 * A span lands here when its owner thread exits; a cache in need of a span adopts one
 * before asking the page heap. While a span is here (owner == NULL) its owner-only fields
 * are protected by this class's lock, and every free into it — from any thread — collects
 * under that lock (alloc_central_collect), so a span that empties goes straight back to the
 * page heap and memory freed by other threads after an owner exited is never stranded.
 *
 * Lock order: a central lock is taken after the registry lock and before the heap lock;
 * never two central locks at once. alloc_heap_free is called after unlocking.
 */
#include "cgc/internal.h"

/* Statically initialised: malloc can be called before any constructor runs. */
alloc_central alloc_centrals[ALLOC_NCLASSES] = {
    [0 ... ALLOC_NCLASSES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};

/* The central lock must be held. */
static void partial_changed(alloc_central *ce) {
    atomic_store_explicit(&ce->npartial, ce->partial.count, memory_order_relaxed);
}

alloc_span *alloc_central_adopt(unsigned c, alloc_cache *owner) {
    alloc_central *ce = &alloc_centrals[c];
    /* Peek without the lock: a stale answer only costs a new span or a wasted lock. */
    if (atomic_load_explicit(&ce->npartial, memory_order_relaxed) == 0) return NULL;
    alloc_lock(&ce->lock);
    alloc_span *s = ce->partial.head;
    if (s) {
        alloc_list_remove(&ce->partial, s);
        partial_changed(ce);
        s->on_central = 0;
        atomic_store_explicit(&s->owner, owner, memory_order_seq_cst);
        alloc_span_collect(s); /* frees that raced with the store above */
        s->in_full = 0;
    }
    alloc_unlock(&ce->lock);
    return s;
}

bool alloc_central_claim(alloc_span *s, alloc_cache *c) {
    alloc_central *ce = &alloc_centrals[s->sizeclass];
    alloc_lock(&ce->lock);
    if (atomic_load_explicit(&s->owner, memory_order_relaxed) != NULL || !s->on_central) {
        alloc_unlock(&ce->lock);
        return false;
    }
    alloc_list_remove(s->in_full ? &ce->full : &ce->partial, s);
    partial_changed(ce);
    s->on_central = 0;
    s->in_full = 0;
    atomic_store_explicit(&s->owner, c, memory_order_seq_cst);
    alloc_span_collect(s);
    alloc_unlock(&ce->lock);
    alloc_cache_take_span(c, s);
    return true;
}

void alloc_central_abandon(alloc_span *s) {
    alloc_central *ce = &alloc_centrals[s->sizeclass];
    /* Lock first: a freer that sees owner == NULL collects under this lock, and must find
     * the span on a list. */
    alloc_lock(&ce->lock);
    atomic_store_explicit(&s->owner, NULL, memory_order_seq_cst);
    atomic_store_explicit(&s->full, 0, memory_order_relaxed);
    alloc_span_collect(s);
    if (s->used == 0) {
        alloc_unlock(&ce->lock);
        alloc_heap_free(s);
        return;
    }
    s->in_full = !alloc_span_has_room(s);
    s->on_central = 1;
    alloc_list_push(s->in_full ? &ce->full : &ce->partial, s);
    partial_changed(ce);
    alloc_unlock(&ce->lock);
}

void alloc_central_collect(alloc_span *s, unsigned cls) {
    alloc_central *ce = &alloc_centrals[cls];
    alloc_lock(&ce->lock);
    /* Adopted meanwhile: the adopter's collect (after its owner store) saw our free. Or
     * never on a central list: a dying owner's abandon collected our free and gave the
     * empty span back to the page heap (then the struct may already serve another span:
     * on_central is checked before anything else of it is read, and a central span of
     * another class is left alone — its lock is not the one we hold). */
    if (atomic_load_explicit(&s->owner, memory_order_acquire) != NULL || !s->on_central ||
        s->sizeclass != cls) {
        alloc_unlock(&ce->lock);
        return;
    }
    alloc_span_collect(s);
    alloc_span_list *from = s->in_full ? &ce->full : &ce->partial;
    if (s->used == 0) {
        alloc_list_remove(from, s);
        partial_changed(ce);
        s->on_central = 0;
        alloc_unlock(&ce->lock);
        alloc_heap_free(s);
        return;
    }
    if (s->in_full && alloc_span_has_room(s)) {
        alloc_list_remove(&ce->full, s);
        s->in_full = 0;
        alloc_list_push(&ce->partial, s);
        partial_changed(ce);
    }
    alloc_unlock(&ce->lock);
}
