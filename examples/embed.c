/* embed.c — embedding cgc's collected heap in a (very) small interpreter.
 *
 * The interpreter's values are cons cells and strings; its global environment is a list of
 * (name . value) bindings. Nothing is ever freed by hand: a value lives while the
 * environment, or a local variable of some registered thread, can reach it.
 *
 * Build: cc embed.c $(pkg-config --cflags --libs cgc) -pthread
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cgc.h>

/* A cons cell. Typed: the collector scans only the words set in the pointer map, so the
 * number in word 2 is never mistaken for a pointer. */
typedef struct cons {
    void *car;        /* word 0: a cons, a string, or NULL for a number */
    struct cons *cdr; /* word 1: the rest of the list */
    long num;         /* word 2: the number, when car is NULL */
} cons;
static const uint64_t cons_map[1] = {0x3}; /* words 0 and 1 hold pointers */
static const cgc_type cons_type = {sizeof(cons), 3, cons_map, "cons"};

static cons *cons_new(void *car, long num, cons *cdr) {
    cons *c = cgc_alloc_typed(&cons_type); /* zeroed; never freed by hand */
    /* Pointer stores into collected memory go through the write barrier (CGC_STORE), so a
     * collection running concurrently on another thread sees them. */
    CGC_STORE(c->car, car);
    CGC_STORE(c->cdr, cdr);
    c->num = num;
    return c;
}

/* Strings hold no pointers: leaf objects, which the collector never scans. */
static char *str_new(const char *s) {
    char *p = cgc_alloc_leaf(strlen(s) + 1);
    return memcpy(p, s, strlen(s) + 1);
}

/* The global environment. Globals are scanned by default (CGC_ROOTS=auto), but an embedder
 * should say what its roots are: then CGC_ROOTS=explicit works too. */
static cons *env;
static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;

static void define(const char *name, cons *value) {
    /* Allocate before taking the lock; the new cells are reachable from this frame. */
    cons *binding = cons_new(cons_new(str_new(name), 0, value), 0, NULL);
    pthread_mutex_lock(&env_lock);
    CGC_STORE(binding->cdr, env);
    CGC_STORE(env, binding); /* a registered root: through the barrier too */
    pthread_mutex_unlock(&env_lock);
}

static void undefine(const char *name) {
    pthread_mutex_lock(&env_lock);
    for (cons **pp = &env; *pp; pp = &(*pp)->cdr) {
        cons *pair = (*pp)->car;
        if (strcmp(pair->car, name) == 0) {
            CGC_STORE(*pp, (*pp)->cdr); /* unlinked: garbage once nothing refers to it */
            break;
        }
    }
    pthread_mutex_unlock(&env_lock);
}

static cons *lookup_pair(const char *name) {
    pthread_mutex_lock(&env_lock);
    cons *found = NULL;
    for (cons *b = env; b && !found; b = b->cdr)
        if (strcmp(((cons *)b->car)->car, name) == 0) found = b->car;
    pthread_mutex_unlock(&env_lock);
    return found;
}

static cons *lookup(const char *name) {
    cons *pair = lookup_pair(name);
    return pair ? pair->cdr : NULL;
}

static void print_value(const char *name) {
    cons *v = lookup(name);
    printf("%s = ", name);
    if (v && v->car && !v->cdr) { /* a one-element list holding a string */
        printf("\"%s\"\n", (const char *)v->car);
        return;
    }
    printf("(");
    for (cons *c = v; c; c = c->cdr) printf("%ld%s", c->num, c->cdr ? " " : "");
    printf(")\n");
}

/* Finalizers run on cgc's finalizer thread after the object became unreachable; the object
 * is still intact while its finalizer runs. */
static char finalized[64];
static atomic_int finalizer_runs;
static void on_collect(void *obj, void *arg) {
    cons *pair = obj;
    snprintf(finalized, sizeof finalized, "%s (\"%s\")", (const char *)arg,
             (const char *)((cons *)pair->cdr)->car);
    atomic_fetch_add(&finalizer_runs, 1);
}

static cgc_weak *scratch_handle; /* the handle is a collected object too: keep it in a root */

/* A worker thread: it must register before it touches the collected heap (its stack and
 * registers become roots), and unregister when done. It also owns the temporary binding,
 * so that once it has exited no stale copy of a pointer to it is left on any scanned stack
 * (the collector is conservative: a dead stack slot can keep an object alive a while). */
static void *worker(void *arg) {
    (void)arg;
    cgc_thread_register();
    cons *squares = NULL;
    for (long i = 10; i >= 1; i--) squares = cons_new(NULL, i * i, squares);
    define("squares", squares);
    printf("worker: defined squares\n");

    define("scratch", cons_new(str_new("temporary"), 0, NULL));
    cons *pair = lookup_pair("scratch");
    cgc_set_finalizer(pair, on_collect, (void *)"scratch");
    CGC_STORE(scratch_handle, cgc_weak_new(pair));
    printf("worker: scratch defined, weak handle set: %s\n",
           cgc_weak_get(scratch_handle) == pair ? "yes" : "no");
    undefine("scratch");
    printf("worker: scratch undefined\n");
    cgc_thread_unregister();
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec ts = {0, ms * 1000000};
    cgc_blocking_enter(); /* a blocked thread need not be interrupted by a collection */
    nanosleep(&ts, NULL);
    cgc_blocking_leave();
}

int main(void) {
    cgc_thread_register(); /* main would be registered anyway if it is first; say so */
    cgc_add_roots(&env, sizeof env);
    cgc_add_roots(&scratch_handle, sizeof scratch_handle);

    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    cgc_blocking_enter(); /* joining blocks */
    pthread_join(t, NULL);
    cgc_blocking_leave();

    define("greeting", cons_new(str_new("hello, world"), 0, NULL));
    cons *primes = NULL;
    static const long p[] = {13, 11, 7, 5, 3, 2};
    for (int i = 0; i < 6; i++) primes = cons_new(NULL, p[i], primes);
    define("primes", primes);

    /* Garbage: 10000 cells (and strings) nobody keeps. */
    for (int i = 0; i < 10000; i++) (void)cons_new(str_new("garbage"), i, NULL);

    print_value("greeting");
    print_value("primes");
    print_value("squares");

    /* The first collection finds the scratch binding unreachable and queues its finalizer
     * (the object survives until it has run); a later one frees it and clears the handle. */
    for (int i = 0; i < 100 && cgc_weak_get(scratch_handle); i++) {
        cgc_collect();
        sleep_ms(1);
    }
    int runs = atomic_load(&finalizer_runs); /* read first: it orders the read of `finalized` */
    printf("finalizer: ran %d time(s), for %s\n", runs, runs ? finalized : "nothing");
    printf("scratch: weak handle cleared: %s\n", cgc_weak_get(scratch_handle) ? "no" : "yes");

    cgc_collect();
    print_value("greeting"); /* still reachable from the root: intact */
    cgc_stats st;
    cgc_get_stats(&st);
    printf("stats: finalizers run %llu, live heap under 1 MiB: %s\n",
           (unsigned long long)st.gc_finalizers_run, st.gc_live_bytes < (1u << 20) ? "yes" : "no");
    return 0;
}
