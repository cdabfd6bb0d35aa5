/* cgc/bdw.h — the Boehm-compatible interface (libcgc-bdw.so): the GC_* ABI that programs
 * built against the Boehm GC's libgc.so.1 import, and the bdw_* functions that cross the
 * files implementing it.
 *
 *   gc/bdw.c        initialisation, options, allocation, GC_base/size/free/realloc, threads,
 *                   blocking, roots, control and statistics, warn/oom procedures
 *   gc/bdw_final.c  disappearing links, finalizers, and the collector hooks that process them
 *   gc/bdw_kinds.c  kinds, mark procedures, descriptors, GC_generic_malloc(_many),
 *                   explicitly typed objects, GC_mark_and_push, the scan hook
 *
 * The declarations below are written from the Boehm GC's documented C interface (names,
 * argument types and return conventions must match its ABI exactly); the code is cgc's own.
 * Everything is mapped onto cgc's collector, which in this mode marks with the world stopped
 * (gc_opt.stop_the_world = 1): these programs store pointers without a write barrier.
 *
 * Lock order: bdw_lock (links, finalizers) is a no-stop lock (alloc_lock) taken after
 * gc_final_lock and before the allocator's locks; no GC_* allocation happens while holding it.
 */
#ifndef CGC_BDW_H
#define CGC_BDW_H

#include "cgc/gc.h"

#define GC_API_EXPORT __attribute__((visibility("default")))

typedef unsigned long GC_word;
typedef long GC_signed_word;
typedef GC_word GC_descr;
typedef void (*GC_finalization_proc)(void *obj, void *client_data);
typedef void *(*GC_fn_type)(void *client_data);
struct GC_stack_base {
    void *mem_base; /* the hot end of the stack (the highest address on x86-64) */
};
typedef void *(*GC_stack_base_func)(struct GC_stack_base *sb, void *arg);
typedef void (*GC_warn_proc)(char *msg, GC_word arg);
typedef void *(*GC_oom_func)(size_t bytes);
typedef void (*GC_start_callback_proc)(void);
typedef void (*GC_finalizer_notifier_proc)(void);
/* One entry of the mark stack a mark procedure may push to. */
struct GC_ms_entry {
    GC_word *mse_start;
    union {
        GC_word w;
        GC_signed_word sw;
        void *vp;
    } mse_descr;
};
typedef struct GC_ms_entry *(*GC_mark_proc)(GC_word *addr, struct GC_ms_entry *mark_stack_ptr,
                                            struct GC_ms_entry *mark_stack_limit, GC_word env);

/* Return codes. */
#define BDW_SUCCESS 0
#define BDW_DUPLICATE 1
#define BDW_NO_MEMORY 2
#define BDW_UNIMPLEMENTED 3
#define BDW_NOT_FOUND 4

/* Descriptor encoding (the low two bits are the tag). */
#define BDW_DS_TAG_BITS 2
#define BDW_DS_TAGS 3u
#define BDW_DS_LENGTH 0u
#define BDW_DS_BITMAP 1u
#define BDW_DS_PROC 2u
#define BDW_DS_PER_OBJECT 3u
#define BDW_LOG_MAX_MARK_PROCS 6
#define BDW_MAX_MARK_PROCS (1 << BDW_LOG_MAX_MARK_PROCS)

/* Predefined kinds, numbered as the Boehm GC numbers them. */
#define BDW_KIND_PTRFREE 0
#define BDW_KIND_NORMAL 1
#define BDW_KIND_UNCOLLECTABLE 2
#define BDW_KIND_FIRST_CUSTOM 4

/* ---- gc/bdw.c ----------------------------------------------------------------------------- */
/* Initialise the collector in Boehm mode (idempotent; every GC_* entry point calls it). */
void bdw_init(void);
/* Print "cgc-bdw: fatal: <fn>: <why>" and abort: a function cgc cannot honour. */
_Noreturn void bdw_unsupported(const char *fn, const char *why);
/* Allocation failed: the Boehm GC's out-of-memory protocol (the oom function's result). */
void *bdw_oom(size_t n);
/* At the start of a cycle: let a thread that just left GC_call_with_alloc_lock finish what
 * it was doing (see gc/bdw.c). */
void bdw_alloc_lock_grace(void);
/* After an allocation: run or announce finalizers that a cycle queued. */
void bdw_after_alloc(void);

/* ---- gc/bdw_final.c ----------------------------------------------------------------------- */
void bdw_final_init(void);           /* installs the collector hooks */
extern _Atomic int bdw_final_ready;  /* finalizers are queued (set by the cycle) */
extern _Atomic uint64_t bdw_gc_no;   /* completed marks: GC_get_gc_no, read often by Guile */
extern int bdw_finalize_on_demand;   /* GC_set_finalize_on_demand */
extern GC_finalizer_notifier_proc bdw_finalizer_notifier;
extern GC_start_callback_proc bdw_start_callback;
int bdw_invoke_finalizers(void);

/* ---- gc/bdw_kinds.c ----------------------------------------------------------------------- */
void bdw_kinds_init(void);
/* Allocate n bytes of Boehm kind k (any kind, predefined or custom); NULL on failure. */
void *bdw_alloc_kind(size_t n, int k);
/* The kind of a collected object (for GC_realloc): BDW_KIND_* or a custom one. */
int bdw_kind_of(uintptr_t base, alloc_span *s);

#endif /* CGC_BDW_H */
