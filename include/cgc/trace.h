/* cgc/trace.h — the trace file (CGC_TRACE_FILE=path): Chrome trace-event JSON (internal).
 *
 * Defined in gc/tracefile.c. The collector reports what it did; this module turns it into
 * complete events ("ph":"X") and counters ("ph":"C") that Perfetto and chrome://tracing open,
 * and that tools/cgc-trace summarises. The file format is documented at the top of
 * gc/tracefile.c (the contract between the two).
 *
 * Every function may be called from any thread, including the collector while every other
 * registered thread is stopped: recording never blocks, never allocates from the heap, and
 * never takes a lock (events go into an mmap'd buffer by lock-free append). Only
 * trace_file_flush writes the file; it takes trace_flush_lock and must be called outside
 * any stop. Times are plat_now_ns() values (CLOCK_MONOTONIC, ns).
 */
#ifndef CGC_TRACE_H
#define CGC_TRACE_H

#include <stdbool.h>
#include <stdint.h>

/* Reads CGC_TRACE_FILE and opens the file. Called once from gc_ensure_init. */
void trace_file_init(void);
/* Is a trace file being written? One relaxed load. */
bool trace_file_enabled(void);
/* One world stop, on the calling (collector) thread: "<name>: time-to-stop" over
 * [t_request, t_stopped] and "<name>" over [t_stopped, t_release]. The stop's length, as the
 * statistics count it, is t_release - t_request. */
void trace_stop(uint64_t cycle, const char *name, uint64_t t_request_ns, uint64_t t_stopped_ns,
                uint64_t t_release_ns);
/* A complete event on the calling thread: a concurrent phase, an assist (cat "assist"), a
 * background-worker slice (cat "worker"), a handshake, a sweep (cat "sweep"). */
void trace_span(uint64_t cycle, const char *name, const char *cat, uint64_t t0_ns, uint64_t t1_ns);
/* The three heap counter tracks at time t: bytes in use, the goal, live after the last mark. */
void trace_counters(uint64_t t_ns, uint64_t heap_inuse, uint64_t heap_goal, uint64_t heap_live);
/* trace_counters at most once per millisecond (process-wide): for allocation paths. */
void trace_counters_sample(uint64_t heap_inuse, uint64_t heap_goal, uint64_t heap_live);
/* One event for a whole cycle, cat "cycle", args {"cycle":N}. */
void trace_cycle(uint64_t cycle, uint64_t t0_ns, uint64_t t1_ns);
/* Write what was recorded to the file. Outside any stop (takes trace_flush_lock): the
 * collector calls it after each cycle; it also runs at exit. */
void trace_file_flush(void);

#endif /* CGC_TRACE_H */
