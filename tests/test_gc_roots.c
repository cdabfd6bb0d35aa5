/* Roots: an object reachable only from one kind of root survives 1,000 forced collections,
 * and its negative twin (the same, with that reference gone) is reclaimed. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "gc_test_util.h"

#define CYCLES 1000

/* (a) the main thread's stack */
Test(roots, main_stack_keeps_object) {
    void *volatile p;
    uintptr_t h = put_hidden(&p);
    scrub_stack();
    collect_n(CYCLES);
    cr_assert(intact_hidden(h), "object reachable from the stack was reclaimed or clobbered");
    cr_assert(alive(h));
}

Test(roots, main_stack_negative_twin) {
    uintptr_t h = new_hidden();
    scrub_stack();
    collect_n(2);
    cr_assert_not(alive(h), "an object nothing points to survived");
}

/* (b) another registered thread's stack, (c) a register of another thread */
static _Atomic int release_thread;
static _Atomic uintptr_t shared_hidden;
static _Atomic int ready;

static void *stack_thread(void *arg) {
    cgc_thread_register();
    bool keep = arg != NULL;
    void *volatile p;
    atomic_store(&shared_hidden, put_hidden(&p));
    if (!keep) p = NULL;
    scrub_stack();
    atomic_store(&ready, 1);
    while (!atomic_load(&release_thread)) cgc_safepoint();
    bool ok = !keep || intact(p);
    cgc_thread_unregister();
    return (void *)(uintptr_t)ok;
}

static void run_thread_case(void *(*fn)(void *), bool keep) {
    atomic_store(&release_thread, 0);
    atomic_store(&ready, 0);
    cgc_init();
    cgc_collect(); /* the collector is up and this thread registered */
    pthread_t t;
    pthread_create(&t, NULL, fn, keep ? (void *)1 : NULL);
    while (!atomic_load(&ready)) sched_yield();
    collect_n(keep ? CYCLES : 2);
    bool was_alive = alive(atomic_load(&shared_hidden));
    atomic_store(&release_thread, 1);
    void *ok;
    pthread_join(t, &ok);
    cr_assert(ok, "the thread's object was corrupted");
    if (keep) cr_assert(was_alive, "object reachable from a thread was reclaimed");
    else cr_assert_not(was_alive, "negative twin: unreachable object survived");
}

Test(roots, other_thread_stack_keeps_object) { run_thread_case(stack_thread, true); }
Test(roots, other_thread_stack_negative_twin) { run_thread_case(stack_thread, false); }

/* The object's only reference lives in r12 while the thread spins in assembly. */
static void *register_thread(void *arg) {
    cgc_thread_register();
    bool keep = arg != NULL;
    uintptr_t h = new_hidden();
    atomic_store(&shared_hidden, h);
    scrub_stack();
    atomic_store(&ready, 1);
    uintptr_t out;
    __asm__ volatile(
        "mov %[h], %%r12\n\t"
        "xor %[mask], %%r12\n\t" /* r12 = the real pointer, nowhere else */
        "test %[keep], %[keep]\n\t"
        "jnz 1f\n\t"
        "xor %%r12, %%r12\n\t" /* negative twin: drop it */
        "1: pause\n\t"
        "cmpl $0, %[flag]\n\t"
        "je 1b\n\t"
        "mov %%r12, %[out]\n\t"
        : [out] "=&r"(out)
        : [h] "r"(h), [mask] "r"(MASK), [keep] "r"((uintptr_t)keep), [flag] "m"(release_thread)
        : "r12", "memory", "cc");
    bool ok = !keep || (out == (h ^ MASK) && intact((obj *)out));
    cgc_thread_unregister();
    return (void *)(uintptr_t)ok;
}

Test(roots, register_keeps_object) { run_thread_case(register_thread, true); }
Test(roots, register_negative_twin) { run_thread_case(register_thread, false); }

/* (d) a registered root: malloc'd memory is not scanned unless registered */
Test(roots, registered_root_keeps_object_and_removal_releases_it) {
    cgc_init();
    void **slot = malloc(4 * sizeof *slot);
    slot[0] = slot[1] = slot[3] = NULL;
    cgc_add_roots(slot, 4 * sizeof *slot);
    uintptr_t h = put_hidden((void *volatile *)&slot[2]);
    scrub_stack();
    collect_n(CYCLES);
    cr_assert(alive(h) && intact_hidden(h), "object in a registered root was reclaimed");
    cgc_remove_roots(slot); /* negative twin: the same memory, no longer a root */
    collect_n(2);
    cr_assert_not(alive(h), "object only in unregistered malloc memory survived");
    free(slot);
}

/* (e) a global, in auto mode (the default), and its twin in explicit mode */
static void *global_ref;

Test(roots, global_keeps_object_in_auto_mode) {
    uintptr_t h = put_hidden((void *volatile *)&global_ref);
    scrub_stack();
    collect_n(CYCLES);
    cr_assert(alive(h) && intact_hidden(h));
}

static void explicit_roots(void) { setenv("CGC_ROOTS", "explicit", 1); }

Test(roots, global_is_not_a_root_in_explicit_mode, .init = explicit_roots) {
    uintptr_t h = put_hidden((void *volatile *)&global_ref);
    scrub_stack();
    collect_n(2);
    cr_assert_not(alive(h), "CGC_ROOTS=explicit still scanned the data segment");
    global_ref = NULL;
}

/* (f) a __thread variable, on the main thread and on another */
static __thread void *tls_ref;

Test(roots, thread_local_keeps_object_on_main_thread) {
    uintptr_t h = put_hidden((void *volatile *)&tls_ref);
    scrub_stack();
    collect_n(CYCLES);
    cr_assert(alive(h) && intact_hidden(h));
    tls_ref = NULL; /* negative twin */
    collect_n(2);
    cr_assert_not(alive(h), "object survived after its __thread reference was cleared");
}

static void *tls_thread(void *arg) {
    cgc_thread_register();
    bool keep = arg != NULL;
    atomic_store(&shared_hidden, put_hidden((void *volatile *)&tls_ref));
    if (!keep) tls_ref = NULL;
    scrub_stack();
    atomic_store(&ready, 1);
    while (!atomic_load(&release_thread)) cgc_safepoint();
    bool ok = !keep || intact(tls_ref);
    cgc_thread_unregister();
    return (void *)(uintptr_t)ok;
}

Test(roots, thread_local_keeps_object_on_other_thread) { run_thread_case(tls_thread, true); }
Test(roots, thread_local_negative_twin_on_other_thread) { run_thread_case(tls_thread, false); }

/* (g) another object's field */
Test(roots, field_of_live_object_keeps_object) {
    obj *volatile parent = unhide(new_hidden());
    uintptr_t child = put_hidden((void *volatile *)&parent->next);
    scrub_stack();
    collect_n(CYCLES);
    cr_assert(alive(child) && intact_hidden(child));
    parent->next = NULL; /* negative twin */
    scrub_stack();
    collect_n(2);
    cr_assert_not(alive(child));
    cr_assert(intact(parent));
}

/* (h) an interior pointer */
__attribute__((noinline)) static uintptr_t put_interior(char *volatile *slot) {
    uintptr_t h = new_hidden();
    *slot = (char *)unhide(h) + 24;
    return h;
}

Test(roots, interior_pointer_keeps_object) {
    char *volatile inner;
    uintptr_t h = put_interior(&inner);
    scrub_stack();
    collect_n(CYCLES);
    cr_assert(alive(h) && intact_hidden(h));
    inner = NULL; /* negative twin */
    scrub_stack();
    collect_n(2);
    cr_assert_not(alive(h));
}

static void *alloc_unregistered(void *arg) { return cgc_alloc(64 + (size_t)arg); }

Test(roots, unregistered_thread_gets_a_clear_fatal, .signal = SIGABRT) {
    cgc_init();
    cgc_collect();
    pthread_t t;
    pthread_create(&t, NULL, alloc_unregistered, NULL);
    pthread_join(t, NULL);
}

/* The main thread is registered at initialisation even when another thread initialises the
 * collector: its stack is a root from the first cycle on. */
static void *init_from_other_thread(void *arg) {
    cgc_thread_register(); /* first use of the collector, on this thread */
    collect_n(CYCLES);
    *(bool *)arg = true;
    return NULL;
}

Test(roots, main_thread_is_registered_when_another_thread_initialises) {
    bool done = false;
    pthread_t t;
    pthread_create(&t, NULL, init_from_other_thread, &done);
    pthread_join(t, NULL); /* main is stopped by signals meanwhile: it never registered itself */
    cr_assert(done);
    void *volatile p;
    uintptr_t h = put_hidden(&p); /* main adopts its registration here */
    scrub_stack();
    collect_n(CYCLES);
    cr_assert(alive(h) && intact_hidden(h));
}
