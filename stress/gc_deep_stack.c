/* stress/gc_deep_stack.c — pointers that move from a deep part of a stack to a shallow one
 * while the collector marks concurrently.
 *
 * A thread's stack is scanned once per cycle, while the thread is held, and never again
 * (the hybrid barrier). If any part of it were read later — as the 32 KiB chunks of a deep
 * stack were until 2026-12-07 — a pointer the thread moved, after its release, from a part
 * not yet read into a part already read would be missed. Each mutator here keeps an object
 * only in frames ~200 KiB down its stack, allocates there (driving cycles), then carries the
 * object back up to its outermost frame, wipes the deep frames with another descent, and
 * checks the object; CGC_CLOBBER makes a reclaimed object's words 0xdeadbeef... (or the slot
 * is handed out again, zeroed): either way the check fails.
 *
 * Run with CGC_ROOTS=explicit: in auto mode stop 2 rescans every stack, which catches up on
 * such a miss. The code before the fix lost an object within 5-10 cycles that way; fixed,
 * 3 x 500 cycles lost nothing. (Not with CGC_CHECKMARK in explicit mode: re-marking from the
 * stacks as they are at the final stop, it reports stale words that frames built since the
 * stack scan left uninitialised — old copies of objects that are garbage — as missed.)
 *
 *   gc_deep_stack [-t threads] [-c cycles] [-s seconds]     exit 0: nothing lost
 */
#include <cgc.h>
#include <cgc/barrier.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x5eed0bad5eed0badull
#define DEPTH 2000 /* frames of ~100 bytes: ~200 KiB, six 32 KiB chunks */

typedef struct obj {
    uint64_t magic;
    uint64_t serial;
    struct obj *next;
} obj;

static _Atomic int stop;
static _Atomic uint64_t checks, lost;

/* Each mutator's object on its way down, until the deepest frame takes it: a registered
 * root, written through the barrier (with CGC_ROOTS=explicit, stop 2 rescans no stack: a
 * stack read late is then missed for good, which is the case this driver is for). */
static obj *mailbox[64];

/* One frame; only the deepest one holds the object, in a volatile slot: it takes it from
 * the mailbox and clears that before the spin, so while a cycle marks, the object is
 * referenced from ~200 KiB down this stack and nowhere else. It is then carried back up in
 * the return value (a register) to the outermost frame. */
__attribute__((noinline)) static obj *descend(int depth, int me, unsigned spin) {
    volatile uintptr_t slot[8];
    for (int i = 0; i < 8; i++) slot[i] = (uintptr_t)depth;
    obj *r;
    if (depth == 0) {
        slot[0] = (uintptr_t)__atomic_load_n(&mailbox[me], __ATOMIC_RELAXED);
        cgc_store((void **)&mailbox[me], NULL);
        /* Allocate until a cycle is marking (the barrier is on: this thread has been or is
         * about to be held), a little more, then go back up at once — while the collector
         * may still be busy with the other threads' stacks. */
        unsigned i = 0;
        for (; i < (1u << 20) && !__atomic_load_n(&cgc_barrier_phase_, __ATOMIC_RELAXED); i++) {
            obj *g = cgc_alloc(sizeof(obj));
            g->magic = i;
        }
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do { /* 0-510 us: the stack scan's hold comes after the barrier handshake */
            obj *g = cgc_alloc(sizeof(obj));
            g->magic = i++;
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < (long)spin * 2000);
        r = (obj *)slot[0];
    } else {
        r = descend(depth - 1, me, spin);
    }
    for (int i = 0; i < 8; i++) slot[i] = 0;
    return r;
}

/* Overwrites the frames descend used (returns a value so the frames are not tail calls). */
__attribute__((noinline)) static uintptr_t wipe(int depth) {
    volatile uintptr_t slot[8];
    for (int i = 0; i < 8; i++) slot[i] = 0;
    return depth > 0 ? wipe(depth - 1) + slot[1] : slot[2];
}

/* A new object, put in the mailbox: no copy of it is left in the outer frames. */
__attribute__((noinline)) static void new_object(int me, uint64_t serial) {
    obj *p = cgc_alloc(sizeof(obj));
    p->magic = MAGIC;
    p->serial = serial;
    cgc_store((void **)&mailbox[me], p);
}

static void *mutator(void *arg) {
    cgc_thread_register();
    int me = (int)(uintptr_t)arg;
    uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1, serial = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        new_object(me, ++serial);
        obj *top = descend(DEPTH, me, (unsigned)(seed >> 56));
        if (wipe(DEPTH) != 0) abort(); /* the deep frame's copy is gone: top is the only one */
        for (unsigned i = 0; i < 2000; i++) { /* more cycles */
            obj *g = cgc_alloc(sizeof(obj));
            g->magic = i;
        }
        atomic_fetch_add_explicit(&checks, 1, memory_order_relaxed);
        if (top->magic != MAGIC || top->serial != serial) {
            fprintf(stderr, "gc_deep_stack: object %p lost: magic %#llx serial %llu (want %llu)\n",
                    (void *)top, (unsigned long long)top->magic,
                    (unsigned long long)top->serial, (unsigned long long)serial);
            atomic_fetch_add_explicit(&lost, 1, memory_order_relaxed);
            atomic_store(&stop, 1);
        }
    }
    cgc_thread_unregister();
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 4;
    unsigned long cycles = 500, seconds = 60;
    int opt;
    while ((opt = getopt(argc, argv, "t:c:s:")) != -1) {
        if (opt == 't') threads = atoi(optarg);
        else if (opt == 'c') cycles = strtoul(optarg, NULL, 10);
        else if (opt == 's') seconds = strtoul(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: gc_deep_stack [-t threads] [-c cycles] [-s seconds]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64) threads = 4;
    cgc_add_roots(mailbox, sizeof mailbox);
    pthread_t tid[64];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 8u << 20);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], &attr, mutator, (void *)(uintptr_t)i) != 0) {
            perror("pthread_create");
            return 2;
        }
    time_t t0 = time(NULL);
    cgc_stats st;
    for (;;) {
        usleep(20000);
        cgc_get_stats(&st);
        if (st.gc_cycles >= cycles || (unsigned long)(time(NULL) - t0) >= seconds ||
            atomic_load(&lost))
            break;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    cgc_get_stats(&st);
    printf("gc_deep_stack: %d threads, %llu cycles, %llu checks, %llu lost\n", threads,
           (unsigned long long)st.gc_cycles, (unsigned long long)atomic_load(&checks),
           (unsigned long long)atomic_load(&lost));
    if (st.gc_cycles < 10) {
        fprintf(stderr, "gc_deep_stack: only %llu cycles ran\n", (unsigned long long)st.gc_cycles);
        return 1;
    }
    return atomic_load(&lost) ? 1 : 0;
}
