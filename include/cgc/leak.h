/* cgc/leak.h — leak mode (DESIGN §5): finding, and optionally freeing, the malloc blocks a
 * preloaded program lost. Internal; every function that crosses files, by defining file.
 *
 *   gc/leak.c        options, thread registration, the leak cycle (roots, marking, the walk
 *                    over every malloc block), reclaiming, statistics and the trace line
 *   gc/leak_sites.c  allocation sites: stacks captured at allocation time, deduplicated in
 *                    a table outside the heap; symbolised at report time
 *   gc/leak_walk.c   the stack walk (.eh_frame rules cached per return address; libunwind
 *                    for what it does not handle)
 *   gc/leak_report.c the human-readable and the JSON report
 *
 * Per-block state lives in a side table per span (alloc_span.leak_side), one 64-bit word per
 * slot, never in the block:
 *
 *   bit 63 mark (only during a leak cycle)   bit 62 tracked (written by a leak-mode malloc)
 *   bits 32..61 site id (0: unknown)          bits 0..31 requested size (saturated)
 *
 * Side tables, the site table and every buffer of the cycle are mapped with plat_map, so
 * they are in cgc's own mappings, which the cycle never scans: nothing of leak mode keeps a
 * user block alive. Locks: side_lock, seen_lock (gc/leak.c) and sites_lock (gc/leak_sites.c)
 * are no-stop leaf locks (nothing else is taken under them); a leak check takes gc_lock ->
 * gc_threads_lock -> the loader lock, like a collector cycle. The malloc entry points (alloc/interpose.c) test leak_mode once; when it
 * is 0 nothing here runs.
 */
#ifndef CGC_LEAK_H
#define CGC_LEAK_H

#include "cgc/internal.h"

/* ---- gc/leak.c ---------------------------------------------------------------------------- */
enum { LEAK_OFF = 0, LEAK_REPORT = 1, LEAK_COLLECT = 2 };
/* CGC_LEAKS, set when the allocator reads its options (before the first block is handed
 * out); read by every malloc entry point. */
extern int leak_mode;
#define LEAK_MARK ((uint64_t)1 << 63)
#define LEAK_TRACKED ((uint64_t)1 << 62)
#define LEAK_SITE_SHIFT 32
#define LEAK_SITE_MASK (((uint64_t)1 << 30) - 1)
#define LEAK_SIDE_ENTRIES ALLOC_MAX_NELEMS /* a side table fits any span's slots */

/* Parse CGC_LEAKS (alloc/init.c calls it while reading the allocator's options; it only
 * sets leak_mode and may not allocate). */
void leak_parse_mode(void);
/* The malloc family in leak mode: allocate, then record the block's site and size. ra is
 * the caller's return address (the site when the stack is not sampled). */
void *leak_malloc(size_t n, void *ra);
void *leak_calloc(size_t count, size_t n, void *ra);
void *leak_realloc(void *p, size_t n, void *ra);
void *leak_reallocarray(void *p, size_t count, size_t n, void *ra);
int leak_posix_memalign(void **out, size_t align, size_t n, void *ra);
void *leak_aligned_alloc(size_t align, size_t n, void *ra);
void *leak_memalign(size_t align, size_t n, void *ra);
/* pthread_create interposition: every thread a leak-mode program creates is registered
 * with the collector before its start routine runs. real: the C library's pthread_create. */
typedef int (*leak_pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
                                      void *);
int leak_pthread_create(leak_pthread_create_fn real, pthread_t *th, const pthread_attr_t *attr,
                        void *(*start)(void *), void *arg);
/* Run one leak cycle now (reason: "exit", "interval", ...). Returns false if it gave up. */
bool leak_run_cycle(const char *reason);

/* ---- gc/leak_sites.c --------------------------------------------------------------------- */
/* Stack-capture policy (CGC_LEAKS_STACKS): sample_every 1 = every allocation ("all"),
 * N = one allocation in N gets a full stack, the rest their caller only. */
extern uint32_t leak_sample_every;
/* CGC_LEAKS_STACKS=verify: full stacks, each also taken with libunwind and compared; the
 * counts go into the JSON report ("stack_check"), the first difference to stderr. For
 * tests: not at exit on stderr, which some programs (coreutils) close before we are done. */
extern int leak_stacks_verify;
/* Stacks compared, differing, and left to libunwind (the walker could not take them). */
void leak_sites_verify_counts(uint64_t out[3]);
/* Take (true) or release sites_lock (gc/leak_walk.c inserts its rules under it). */
void leak_sites_lock(bool take);
/* Prepare capture (the library's text range, so our own frames are skipped). */
void leak_sites_init(void);
/* Exclude the site directory from the collector's data/bss scan. */
void leak_sites_roots_exclude(void);
/* Is ip in cgc's own code? (valid after leak_sites_init) */
bool leak_own_code(uintptr_t ip);
/* The site of an allocation being made now: a full stack or the caller only. Never calls
 * malloc on this thread's behalf without the recursion guard. Returns 0 on failure. */
uint32_t leak_site_capture(void *ra);
/* The frames of a site (NULL if unknown). */
const uintptr_t *leak_site_frames(uint32_t id, unsigned *n);
/* Whether the site's stack was captured in full (else: caller only). */
bool leak_site_full(uint32_t id);
/* Symbolise a return address into buf: "function+0x1f (module)" or "module+0x1234". */
size_t leak_symbolize(uintptr_t ip, char *buf, size_t cap);
/* The module holding ip and ip's offset in it (for tools); false if none. */
bool leak_frame_module(uintptr_t ip, const char **module, uintptr_t *offset);
/* Number of distinct sites recorded. */
uint32_t leak_sites_count(void);
void leak_sites_fork(int what);

/* ---- gc/leak_walk.c ---------------------------------------------------------------------- */
/* The calling thread's return addresses, innermost first (out[0]: leak_walk's own), up to
 * max; -1 when it cannot walk this stack the way libunwind would (use unw_backtrace). */
int leak_walk(uintptr_t *out, int max);

/* ---- gc/leak_report.c -------------------------------------------------------------------- */
typedef struct leak_block {
    uintptr_t addr;
    uint64_t size;
    uint32_t site;
} leak_block;
typedef struct leak_summary {
    const char *reason;        /* "exit", "interval", ... */
    uint64_t cycle;            /* leak cycle number (1-based) */
    uint64_t live_blocks, live_bytes; /* allocated and reachable */
    uint64_t lost_blocks, lost_bytes;
    uint64_t stopped_ns;       /* how long the world was stopped */
    int collect;               /* the lost blocks were freed */
} leak_summary;
/* Write the report of a cycle: blocks[0..n) are the lost blocks (sorted here, in place).
 * Human-readable to CGC_LEAKS_FILE (stderr by default), JSON to CGC_LEAKS_JSON if set. */
void leak_report(leak_block *blocks, size_t n, const leak_summary *sum);
/* Report destinations (set from the options). */
extern const char *leak_file_path, *leak_json_path;

#endif /* CGC_LEAK_H */
