/* links.c — disappearing links (short and long) on cgc's libgc.so.1 (libcgc-bdw.so), the way
 * Guile's weak tables use them, at a size that makes the link table grow and rebuild.
 *
 * Links hold hidden pointers (~p, the Boehm GC's GC_HIDE_POINTER), so they keep nothing alive.
 * Checks: a link to a reachable object is never cleared; links to dropped objects are cleared
 * (most of them: the scan of the stack is conservative); an unregistered link is left alone;
 * a moved link is cleared at its new place, not the old; short and long links of a finalizable
 * object: the short one is cleared when the finalizer is queued, the long one only once the
 * object is really gone. Prints "ok ..." and exits 0, or names the failed check and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void GC_init(void);
void *GC_malloc(size_t n);
void GC_gcollect(void);
int GC_general_register_disappearing_link(void **link, const void *obj);
int GC_register_long_link(void **link, const void *obj);
int GC_unregister_disappearing_link(void **link);
int GC_move_disappearing_link(void **link, void **new_link);
typedef void (*GC_finalization_proc)(void *obj, void *cd);
void GC_register_finalizer_no_order(void *obj, GC_finalization_proc fn, void *cd,
                                    GC_finalization_proc *ofn, void **ocd);
int GC_invoke_finalizers(void);
void GC_set_finalize_on_demand(int v);

#define N 60000
#define NF 2000
static uintptr_t slot[N], moved[N]; /* bss: scanned, but they hold hidden pointers */
static void *keep[N];                /* the objects that stay reachable */
static uintptr_t fshort[NF], flong[NF];
static int finalized;
static int failed;

static uintptr_t hide(void *p) { return ~(uintptr_t)p; }

static void fin(void *obj, void *cd) {
    (void)obj;
    (void)cd;
    finalized++;
}

static void check(int ok, const char *what) {
    if (!ok && failed < 10) fprintf(stderr, "FAIL: %s\n", what); /* the first few */
    if (!ok) failed++;
}

static int registered(int i) { return i % 3 != 0 || i % 6 == 0; }

int main(void) {
    GC_init();
    GC_set_finalize_on_demand(1);
    /* N links, then churn: unregister a third and register them again (tombstones, rebuilds). */
    for (int i = 0; i < N; i++) {
        void *p = GC_malloc(32);
        slot[i] = hide(p);
        check(GC_general_register_disappearing_link((void **)&slot[i], p) == 0, "register");
        if (i % 2 == 0) keep[i] = p;
    }
    check(GC_general_register_disappearing_link((void **)&slot[0], keep[0]) == 1,
          "registering a link twice reports a duplicate");
    for (int i = 0; i < N; i += 3) check(GC_unregister_disappearing_link((void **)&slot[i]), "unregister");
    for (int i = 0; i < N; i += 6) /* re-register every other unregistered one */
        check(GC_general_register_disappearing_link((void **)&slot[i], (void *)~slot[i]) == 0,
              "register again");
    /* Move the registered links of i % 5 == 1 to moved[i]. */
    for (int i = 1; i < N; i += 5) {
        if (!registered(i)) continue;
        moved[i] = slot[i];
        check(GC_move_disappearing_link((void **)&slot[i], (void **)&moved[i]) == 0, "move");
    }
    GC_gcollect();
    GC_gcollect();
    int dead = 0, cleared = 0;
    for (int i = 0; i < N; i++) {
        int is_moved = i % 5 == 1 && registered(i);
        uintptr_t v = is_moved ? moved[i] : slot[i];
        if (is_moved && slot[i] == 0) check(0, "a moved link was cleared at its old place");
        if (keep[i]) {
            if (v != hide(keep[i])) {
                fprintf(stderr, "FAIL: link %d of a reachable object was changed\n", i);
                failed = 1;
                break;
            }
        } else if (!registered(i)) {
            if (v == 0) check(0, "an unregistered link was cleared");
        } else {
            dead++;
            cleared += v == 0;
        }
    }
    check(dead > 0 && cleared * 10 >= dead * 9, "links to dropped objects were cleared");

    /* Short and long links of finalizable objects. */
    for (int i = 0; i < NF; i++) {
        void *p = GC_malloc(48);
        fshort[i] = flong[i] = hide(p);
        GC_general_register_disappearing_link((void **)&fshort[i], p);
        GC_register_long_link((void **)&flong[i], p);
        GC_register_finalizer_no_order(p, fin, NULL, NULL, NULL);
    }
    GC_gcollect();
    int sh = 0, lg = 0;
    for (int i = 0; i < NF; i++) {
        sh += fshort[i] == 0;
        lg += flong[i] == 0;
        if (fshort[i] != 0 && flong[i] == 0) check(0, "a long link was cleared before its short link");
    }
    check(sh * 10 >= NF * 9, "short links of finalizable objects cleared when they are queued");
    check(lg == 0, "long links of objects queued for finalization are kept");
    int ran = GC_invoke_finalizers();
    check(ran == finalized && ran >= sh, "the queued finalizers ran");
    GC_gcollect();
    GC_gcollect();
    lg = 0;
    for (int i = 0; i < NF; i++) lg += flong[i] == 0;
    check(lg * 10 >= NF * 9, "long links cleared once the finalized objects are gone");
    if (failed) return 1;
    printf("ok links: %d of %d dropped cleared, finalizable %d short / %d long cleared, %d finalizers\n",
           cleared, dead, sh, lg, finalized);
    return 0;
}
