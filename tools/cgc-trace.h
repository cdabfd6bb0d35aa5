/* cgc-trace.h — what tools/cgc-trace.c reads from a trace, shared with its SVG writer
 * (tools/cgc-trace-svg.c). Times are nanoseconds on the trace's own clock. */
#ifndef CGC_TRACE_TOOL_H
#define CGC_TRACE_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct stop {
    int64_t a, b;   /* request .. release */
    int64_t cycle;  /* -1: unknown */
} stop;

typedef struct sample {
    int64_t t;
    double mb;      /* MiB */
} sample;

typedef struct series {
    sample *p;
    size_t n, cap;
} series;

typedef struct trace {
    char *text;             /* the whole file */
    size_t len, good_end;   /* good_end: just after the last complete event (JSON) */
    bool is_json, object_format, truncated;
    size_t nevents, skipped_lines, dropped_notes;
    stop *stops;            /* sorted by start after trace_analyse */
    size_t nstops, capstops;
    int64_t *cycles;        /* distinct after trace_analyse */
    size_t ncycles, capcycles;
    series heap[3];         /* in use, goal, live */
    bool have_span;
    int64_t span_lo, span_hi;
    int ncpu;
    int64_t gc_span_ns;     /* time in assist, worker and sweep spans */
    int64_t line_share_mpct;/* trace lines: last line's GC share in 1/1000 %, -1 none */
    /* trace_analyse */
    int64_t *sorted;        /* stop lengths, ascending */
    stop *merged;           /* union of the stops */
    int64_t *prefix;        /* stopped time before merged[i] */
    size_t nmerged;
    int64_t total_ns;
    long longest;           /* index into stops, -1 none */
    double gc_share;
} trace;

bool trace_load(trace *t, const char *path);
void trace_analyse(trace *t);
int64_t trace_percentile(const trace *t, int p);
double trace_mmu(const trace *t, int64_t window_ns);
/* tools/cgc-trace-svg.c */
bool trace_svg(const trace *t, const char *out);

#endif
