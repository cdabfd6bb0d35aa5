/* cgc-trace — read a cgc trace and print what matters about its pauses (DESIGN §6).
 *
 *   cgc-trace [--json] [--svg OUT.svg] [--repair OUT.json] FILE
 *
 * Input, detected from the first non-blank character:
 *   '[' or '{'  a trace file written with CGC_TRACE_FILE (Chrome trace-event JSON; the format
 *               is documented at the top of gc/tracefile.c). A file cut short by a crash (no
 *               closing "]", or a half-written last line) is read up to its last complete
 *               event; --repair writes that prefix as valid JSON.
 *   otherwise   saved CGC_TRACE=1 lines (stderr of the program); other lines are ignored:
 *     cgc 7 @1.204s 3%: 0.031+2.4+0.052 ms clock, 0.03+0.8/1.9/0+0.05 ms cpu,
 *         41->44->18 MB, 40 MB goal, 4 T            (one line; see README "The trace line")
 *     cgc 7 @1.204s 3%: -+2.431+0.052 ms clock, -+0.8/1.9/0+0.05 ms cpu, ...
 *                       (stop 1 was a handshake that stopped nobody: one stop, stop 2)
 *
 * DEFINITIONS (the README repeats them):
 * - A stop is one interval during which the program's threads were stopped, from the stop
 *   request to the release: in a trace file, a "stop" event, [ts - time_to_stop_us, ts + dur];
 *   from trace lines, stop1 = [@t, @t + s1] and stop2 = [@t + s1 + mark, @t + s1 + mark + s2];
 *   a first field "-" (concurrent cgc: stop 1 is a handshake) means no stop1, s1 = 0.
 * - The trace span [S, E]: trace file: from the earliest timestamp to the latest event end
 *   (metadata excluded; cgc writes a start marker at initialisation and an exit marker);
 *   trace lines: from 0 (collector start) to the end of the last stop.
 * - Percentiles are nearest-rank: with the n stop lengths sorted ascending, pXX is the value
 *   at 1-based rank ceil(XX * n / 100). Max is rank n.
 * - Minimum mutator utilization, MMU(w) = min over windows [t, t + w] inside [S, E] of the
 *   fraction of the window not covered by stops (Cheng & Blelloch). Computed exactly: the
 *   stopped time in the window is piecewise linear in t and changes slope only where t or
 *   t + w meets a stop edge, so the minimum is found among windows that start or end at a
 *   stop edge or at S or E. A window longer than the span is clipped to the span.
 * - GC CPU share: trace file: (ncpu x total stopped time + time in "assist", "worker" and
 *   "sweep" spans) / (ncpu x span), ncpu from the start marker; trace lines: the collector's
 *   own cumulative figure on the last line.
 * Durations print in ms with 3 decimals, shares in % with 1 decimal (rounded half up).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgc-trace.h"

/* ---- reading ------------------------------------------------------------------------------ */
static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "cgc-trace: out of memory\n");
        exit(2);
    }
    return p;
}

static void add_stop(trace *t, int64_t a, int64_t b, int64_t cycle) {
    if (t->nstops == t->capstops) {
        t->capstops = t->capstops ? 2 * t->capstops : 64;
        t->stops = xrealloc(t->stops, t->capstops * sizeof *t->stops);
    }
    t->stops[t->nstops++] = (stop){a, b, cycle};
}

static void add_sample(series *s, int64_t t, double v) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->p = xrealloc(s->p, s->cap * sizeof *s->p);
    }
    s->p[s->n++] = (sample){t, v};
}

static void add_cycle(trace *t, int64_t c) {
    if (t->ncycles == t->capcycles) {
        t->capcycles = t->capcycles ? 2 * t->capcycles : 64;
        t->cycles = xrealloc(t->cycles, t->capcycles * sizeof *t->cycles);
    }
    t->cycles[t->ncycles++] = c;
}

static void extend_span(trace *t, int64_t a, int64_t b) {
    if (!t->have_span || a < t->span_lo) t->span_lo = a;
    if (!t->have_span || b > t->span_hi) t->span_hi = b;
    t->have_span = true;
}

/* A decimal number (digits[.digits]) times `scale` (a power of ten), as an exact integer.
 * Returns the end of the number or NULL. */
static const char *parse_scaled(const char *s, int64_t scale, int64_t *out) {
    bool neg = *s == '-';
    if (neg) s++;
    if (*s < '0' || *s > '9') return NULL;
    int64_t ip = 0, frac = 0, fs = scale;
    while (*s >= '0' && *s <= '9') ip = ip * 10 + (*s++ - '0');
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            if (fs >= 10) {
                fs /= 10;
                frac += (*s - '0') * fs;
            }
            s++;
        }
    }
    *out = (ip * scale + frac) * (neg ? -1 : 1);
    return s;
}

/* One CGC_TRACE=1 line; false if it is not one. */
static bool parse_line(trace *t, const char *s) {
    int64_t cyc, at, pct, s1, mark, s2, cpu, mb[3], goal, threads;
    bool no_stop1 = false; /* "-": stop 1 was a handshake, not a stop */
    const char *p = s;
#define EXPECT(lit)                                                                          \
    do {                                                                                     \
        size_t l_ = strlen(lit);                                                             \
        if (strncmp(p, lit, l_)) return false;                                               \
        p += l_;                                                                             \
    } while (0)
#define NUM(scale, out) do { if (!(p = parse_scaled(p, scale, out))) return false; } while (0)
    EXPECT("cgc ");
    NUM(1, &cyc);
    EXPECT(" @");
    NUM(1000000000, &at);
    EXPECT("s ");
    NUM(1000, &pct); /* thousandths of a percent, exact */
    EXPECT("%: ");
    if (p[0] == '-' && p[1] == '+') {
        no_stop1 = true;
        s1 = 0;
        p++;
    } else {
        NUM(1000000, &s1);
    }
    EXPECT("+");
    NUM(1000000, &mark);
    EXPECT("+");
    NUM(1000000, &s2);
    EXPECT(" ms clock, ");
    if (no_stop1) EXPECT("-");
    else NUM(1000000, &cpu);
    EXPECT("+");
    NUM(1000000, &cpu);
    EXPECT("/");
    NUM(1000000, &cpu);
    EXPECT("/");
    NUM(1000000, &cpu);
    EXPECT("+");
    NUM(1000000, &cpu);
    EXPECT(" ms cpu, ");
    NUM(1000000, &mb[0]);
    EXPECT("->");
    NUM(1000000, &mb[1]);
    EXPECT("->");
    NUM(1000000, &mb[2]);
    EXPECT(" MB, ");
    NUM(1000000, &goal);
    EXPECT(" MB goal, ");
    NUM(1, &threads);
    EXPECT(" T");
#undef EXPECT
#undef NUM
    while (*p == ' ' || *p == '\r' || *p == '\n') p++;
    if (*p) return false;
    const double mib = 1048576.0 / 1e6; /* MB fields are MiB; values above are x 1e6 */
    int64_t stop1_end = at + s1, stop2_start = at + s1 + mark, end = stop2_start + s2;
    if (!no_stop1) add_stop(t, at, stop1_end, cyc);
    add_stop(t, stop2_start, end, cyc);
    add_cycle(t, cyc);
    extend_span(t, 0, end);
    add_sample(&t->heap[0], at, (double)mb[0] * mib);
    add_sample(&t->heap[0], end, (double)mb[1] * mib);
    add_sample(&t->heap[0], end, (double)mb[2] * mib);
    add_sample(&t->heap[1], at, (double)goal * mib);
    add_sample(&t->heap[2], end, (double)mb[2] * mib);
    t->line_share_mpct = pct;
    return true;
}

static void read_lines(trace *t, char *text) {
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (strncmp(line, "cgc ", 4) == 0 && !parse_line(t, line)) t->skipped_lines++;
        line = nl ? nl + 1 : NULL;
    }
}

/* ---- JSON (the subset a trace needs; tolerant of a file cut short) ------------------------ */
typedef struct jp {
    const char *s, *end;
} jp;

static void ws(jp *j) {
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\n' || *j->s == '\r' || *j->s == '\t'))
        j->s++;
}

static bool lit(jp *j, char c) {
    ws(j);
    if (j->s < j->end && *j->s == c) {
        j->s++;
        return true;
    }
    return false;
}

/* A string into out (truncated to cap-1; escapes other than \" \\ \/ become '?'). */
static bool jstring(jp *j, char *out, size_t cap) {
    ws(j);
    if (j->s >= j->end || *j->s != '"') return false;
    j->s++;
    size_t n = 0;
    while (j->s < j->end && *j->s != '"') {
        char c = *j->s++;
        if (c == '\\') {
            if (j->s >= j->end) return false;
            c = *j->s++;
            if (c == 'u') {
                if (j->end - j->s < 4) return false;
                j->s += 4;
                c = '?';
            } else if (c != '"' && c != '\\' && c != '/') {
                c = c == 'n' ? '\n' : c == 't' ? '\t' : '?';
            }
        }
        if (n + 1 < cap) out[n++] = c;
    }
    if (j->s >= j->end) return false;
    j->s++;
    if (cap) out[n] = 0;
    return true;
}

/* A number: its text (for exact parsing) and its double value. */
static bool jnumber(jp *j, char *txt, size_t cap, double *v) {
    ws(j);
    const char *b = j->s;
    while (j->s < j->end && strchr("+-0123456789.eE", *j->s)) j->s++;
    size_t n = (size_t)(j->s - b);
    if (n == 0 || n >= cap || j->s >= j->end) return false; /* a number never ends a file */
    memcpy(txt, b, n);
    txt[n] = 0;
    char *e;
    *v = strtod(txt, &e);
    return *e == 0;
}

static bool jskip(jp *j, int depth);

static bool jskip_container(jp *j, char open, char close, int depth) {
    if (!lit(j, open)) return false;
    if (lit(j, close)) return true;
    for (;;) {
        if (open == '{') {
            char k[8];
            if (!jstring(j, k, sizeof k) || !lit(j, ':')) return false;
        }
        if (!jskip(j, depth + 1)) return false;
        if (lit(j, close)) return true;
        if (!lit(j, ',')) return false;
    }
}

static bool jskip(jp *j, int depth) {
    ws(j);
    if (j->s >= j->end || depth > 64) return false;
    char c = *j->s, tmp[64];
    double v;
    if (c == '{') return jskip_container(j, '{', '}', depth);
    if (c == '[') return jskip_container(j, '[', ']', depth);
    if (c == '"') return jstring(j, tmp, 1);
    for (const char *w = c == 't' ? "true" : c == 'f' ? "false" : c == 'n' ? "null" : NULL; w;) {
        size_t l = strlen(w);
        if ((size_t)(j->end - j->s) < l || strncmp(j->s, w, l)) return false;
        j->s += l;
        return true;
    }
    return jnumber(j, tmp, sizeof tmp, &v);
}

/* Microseconds (as written: "12.345") to nanoseconds, exactly when there is no exponent. */
static int64_t us_to_ns(const char *txt, double v) {
    int64_t ns;
    const char *e = parse_scaled(txt, 1000, &ns);
    if (e && *e == 0) return ns;
    return (int64_t)llround(v * 1000.0);
}

typedef struct event {
    char name[128], cat[64], ph[4];
    int64_t ts, dur, tts, cycle;
    bool has_ts, has_dur, has_tts, has_cycle;
    double bytes, ncpu;
    bool has_bytes, has_ncpu;
} event;

static bool jevent(jp *j, event *ev) {
    memset(ev, 0, sizeof *ev);
    if (!lit(j, '{')) return false;
    if (lit(j, '}')) return true;
    for (;;) {
        char key[32], txt[64];
        double v;
        if (!jstring(j, key, sizeof key) || !lit(j, ':')) return false;
        if (!strcmp(key, "name") || !strcmp(key, "cat") || !strcmp(key, "ph")) {
            char *dst = key[0] == 'n' ? ev->name : key[0] == 'c' ? ev->cat : ev->ph;
            size_t cap = key[0] == 'n'   ? sizeof ev->name
                         : key[0] == 'c' ? sizeof ev->cat
                                         : sizeof ev->ph;
            if (!jstring(j, dst, cap)) return false;
        } else if (!strcmp(key, "ts") || !strcmp(key, "dur")) {
            if (!jnumber(j, txt, sizeof txt, &v)) return false;
            if (key[0] == 't') ev->ts = us_to_ns(txt, v), ev->has_ts = true;
            else ev->dur = us_to_ns(txt, v), ev->has_dur = true;
        } else if (!strcmp(key, "args")) {
            ws(j);
            if (j->s < j->end && *j->s != '{') { /* not ours: any other value */
                if (!jskip(j, 1)) return false;
                goto next;
            }
            if (!lit(j, '{')) return false;
            if (!lit(j, '}')) {
                for (;;) {
                    if (!jstring(j, key, sizeof key) || !lit(j, ':')) return false;
                    ws(j);
                    bool num = j->s < j->end && strchr("-0123456789", *j->s);
                    if (num && !strcmp(key, "cycle")) {
                        if (!jnumber(j, txt, sizeof txt, &v)) return false;
                        ev->cycle = (int64_t)v, ev->has_cycle = true;
                    } else if (num && !strcmp(key, "time_to_stop_us")) {
                        if (!jnumber(j, txt, sizeof txt, &v)) return false;
                        ev->tts = us_to_ns(txt, v), ev->has_tts = true;
                    } else if (num && !strcmp(key, "bytes")) {
                        if (!jnumber(j, txt, sizeof txt, &v)) return false;
                        ev->bytes = v, ev->has_bytes = true;
                    } else if (num && !strcmp(key, "ncpu")) {
                        if (!jnumber(j, txt, sizeof txt, &v)) return false;
                        ev->ncpu = v, ev->has_ncpu = true;
                    } else if (!jskip(j, 2)) {
                        return false;
                    }
                    if (lit(j, '}')) break;
                    if (!lit(j, ',')) return false;
                }
            }
        } else if (!jskip(j, 1)) {
            return false;
        }
    next:
        if (lit(j, '}')) return true;
        if (!lit(j, ',')) return false;
    }
}

static void take_event(trace *t, const event *ev) {
    if (!strcmp(ev->ph, "M") || !ev->has_ts) return;
    int64_t end = ev->ts + (ev->has_dur ? ev->dur : 0);
    int64_t start = ev->ts - (ev->has_tts ? ev->tts : 0);
    extend_span(t, start, end);
    if (ev->has_ncpu && ev->ncpu >= 1) t->ncpu = (int)ev->ncpu;
    if (!strcmp(ev->ph, "X")) {
        if (!strcmp(ev->cat, "stop")) add_stop(t, start, end, ev->has_cycle ? ev->cycle : -1);
        else if (!strcmp(ev->cat, "cycle") && ev->has_cycle) add_cycle(t, ev->cycle);
        else if (!strcmp(ev->cat, "assist") || !strcmp(ev->cat, "worker") ||
                 !strcmp(ev->cat, "sweep"))
            t->gc_span_ns += ev->dur;
    } else if (!strcmp(ev->ph, "C") && ev->has_bytes) {
        int k = !strcmp(ev->name, "heap in use") ? 0 : !strcmp(ev->name, "heap goal") ? 1
              : !strcmp(ev->name, "live heap") ? 2 : -1;
        if (k >= 0) add_sample(&t->heap[k], ev->ts, ev->bytes / 1048576.0);
    } else if (!strcmp(ev->ph, "i") && !strncmp(ev->name, "cgc: trace events dropped", 25)) {
        t->dropped_notes++;
    }
}

/* Reads the events of an array (or of {"traceEvents":[...]}). Sets t->truncated and
 * t->good_end (the offset just after the last complete event) when the text ends early. */
static void read_json(trace *t, const char *text, size_t len) {
    jp j = {text, text + len};
    t->good_end = 0;
    if (lit(&j, '{')) { /* object format: find traceEvents */
        for (;;) {
            char key[32];
            if (!jstring(&j, key, sizeof key) || !lit(&j, ':')) goto cut;
            if (!strcmp(key, "traceEvents")) break;
            if (!jskip(&j, 1)) goto cut;
            if (!lit(&j, ',')) goto cut;
        }
        t->object_format = true;
    }
    if (!lit(&j, '[')) goto cut;
    t->good_end = (size_t)(j.s - text);
    if (lit(&j, ']')) return;
    for (;;) {
        event ev;
        if (!jevent(&j, &ev)) goto cut;
        take_event(t, &ev);
        t->nevents++;
        t->good_end = (size_t)(j.s - text);
        if (lit(&j, ']')) return;
        if (!lit(&j, ',')) goto cut;
        ws(&j);
        if (j.s >= j.end) goto cut; /* "...},\n" and nothing more: a killed process */
    }
cut:
    t->truncated = true;
}

/* Load FILE into t. Returns false (with a message) if it cannot be read. */
bool trace_load(trace *t, const char *path) {
    memset(t, 0, sizeof *t);
    t->ncpu = 1;
    t->line_share_mpct = -1;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cgc-trace: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xrealloc(NULL, cap);
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    buf[n] = 0;
    t->text = buf;
    t->len = n;
    size_t i = 0;
    while (i < n && strchr(" \t\r\n", buf[i])) i++;
    if (i < n && (buf[i] == '[' || buf[i] == '{')) {
        t->is_json = true;
        read_json(t, buf, n);
    } else {
        char *copy = xrealloc(NULL, n + 1);
        memcpy(copy, buf, n + 1);
        read_lines(t, copy);
        free(copy);
    }
    return true;
}

/* ---- analysis ------------------------------------------------------------------------------- */
static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_stop(const void *a, const void *b) {
    const stop *x = a, *y = b;
    return x->a < y->a ? -1 : x->a > y->a ? 1 : x->b < y->b ? -1 : x->b > y->b;
}

/* Stopped time in [S, x], by binary search over the merged stops and their prefix sums. */
static int64_t covered(const trace *t, int64_t x) {
    size_t lo = 0, hi = t->nmerged; /* first merged interval with a > x */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->merged[mid].a <= x) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return 0;
    const stop *m = &t->merged[lo - 1];
    return t->prefix[lo - 1] + ((x < m->b ? x : m->b) - m->a);
}

double trace_mmu(const trace *t, int64_t w) {
    int64_t S = t->span_lo, E = t->span_hi;
    if (E <= S) return 1.0;
    if (w > E - S) w = E - S;
    if (w <= 0) return 1.0;
    int64_t worst = 0;
    for (size_t i = 0; i <= 4 * t->nmerged; i++) {
        int64_t c;
        if (i == 4 * t->nmerged) c = S;
        else {
            const stop *m = &t->merged[i / 4];
            int64_t edge = (i % 2 == 0) ? m->a : m->b;
            c = (i % 4 < 2) ? edge : edge - w; /* windows starting or ending at an edge */
        }
        if (c < S) c = S;
        if (c > E - w) c = E - w;
        int64_t g = covered(t, c + w) - covered(t, c);
        if (g > worst) worst = g;
    }
    return (double)(w - worst) / (double)w;
}

void trace_analyse(trace *t) {
    t->sorted = xrealloc(NULL, t->nstops * sizeof *t->sorted);
    qsort(t->stops, t->nstops, sizeof *t->stops, cmp_stop);
    t->total_ns = 0;
    t->longest = -1;
    for (size_t i = 0; i < t->nstops; i++) {
        int64_t d = t->stops[i].b - t->stops[i].a;
        t->sorted[i] = d;
        t->total_ns += d;
        if (t->longest < 0 || d > t->stops[t->longest].b - t->stops[t->longest].a)
            t->longest = (long)i;
    }
    qsort(t->sorted, t->nstops, sizeof *t->sorted, cmp_i64);
    /* merged stops (union) and prefix sums of their lengths, for MMU */
    t->merged = xrealloc(NULL, t->nstops * sizeof *t->merged);
    t->prefix = xrealloc(NULL, t->nstops * sizeof *t->prefix);
    t->nmerged = 0;
    for (size_t i = 0; i < t->nstops; i++) {
        stop s = t->stops[i];
        if (t->nmerged && s.a <= t->merged[t->nmerged - 1].b) {
            if (s.b > t->merged[t->nmerged - 1].b) t->merged[t->nmerged - 1].b = s.b;
        } else {
            t->merged[t->nmerged++] = s;
        }
    }
    int64_t sum = 0;
    for (size_t i = 0; i < t->nmerged; i++) {
        t->prefix[i] = sum;
        sum += t->merged[i].b - t->merged[i].a;
    }
    /* distinct cycles */
    qsort(t->cycles, t->ncycles, sizeof *t->cycles, cmp_i64);
    size_t d = 0;
    for (size_t i = 0; i < t->ncycles; i++)
        if (d == 0 || t->cycles[i] != t->cycles[d - 1]) t->cycles[d++] = t->cycles[i];
    t->ncycles = d;
    for (int k = 0; k < 3; k++) { /* counters in time order (threads flush interleaved) */
        series *s = &t->heap[k];
        for (size_t i = 1; i < s->n; i++) /* insertion sort: nearly sorted already */
            for (size_t m = i; m > 0 && s->p[m - 1].t > s->p[m].t; m--) {
                sample x = s->p[m];
                s->p[m] = s->p[m - 1];
                s->p[m - 1] = x;
            }
    }
    int64_t span = t->span_hi - t->span_lo;
    if (!t->is_json) t->gc_share = t->line_share_mpct < 0 ? 0 : t->line_share_mpct / 1e5;
    else if (span > 0)
        t->gc_share = fmin(1.0, ((double)t->ncpu * (double)t->total_ns + (double)t->gc_span_ns) /
                                    ((double)t->ncpu * (double)span));
}

int64_t trace_percentile(const trace *t, int p) {
    if (t->nstops == 0) return 0;
    size_t rank = ((size_t)p * t->nstops + 99) / 100;
    if (rank < 1) rank = 1;
    return t->sorted[rank - 1];
}

/* ---- output ------------------------------------------------------------------------------ */
/* ns as "12.345" ms, rounded half up to the microsecond. */
static const char *ms(char *buf, int64_t ns) {
    int64_t us = (ns + 500) / 1000;
    snprintf(buf, 32, "%lld.%03lld", (long long)(us / 1000), (long long)(us % 1000));
    return buf;
}

/* A fraction as "12.3" percent, rounded half up (the tiny epsilon absorbs binary error in
 * fractions that are exact decimals). */
static const char *pct(char *buf, double f) {
    long permille = (long)floor(f * 1000.0 + 0.5 + 1e-9);
    snprintf(buf, 32, "%ld.%ld", permille / 10, permille % 10);
    return buf;
}

static const int64_t mmu_windows[3] = {1000000, 10000000, 100000000};

static void print_text(const trace *t, const char *path) {
    char a[32], b[32];
    int64_t span = t->span_hi - t->span_lo;
    printf("trace:          %s (%s), %zu cycles, span %s ms\n", path,
           t->is_json ? "trace file" : "trace lines", t->ncycles, ms(a, span));
    printf("stops:          %zu\n", t->nstops);
    if (t->nstops) {
        printf("stop p50:       %s ms\n", ms(a, trace_percentile(t, 50)));
        printf("stop p90:       %s ms\n", ms(a, trace_percentile(t, 90)));
        printf("stop p99:       %s ms\n", ms(a, trace_percentile(t, 99)));
        const stop *l = &t->stops[t->longest];
        printf("stop max:       %s ms (cycle %lld, at %s ms)\n", ms(a, l->b - l->a),
               (long long)l->cycle, ms(b, l->a));
    }
    printf("total stopped:  %s ms (%s%% of the span)\n", ms(a, t->total_ns),
           pct(b, span > 0 ? (double)t->total_ns / (double)span : 0));
    printf("GC CPU share:   %s%%\n", pct(a, t->gc_share));
    for (int i = 0; i < 3; i++)
        printf("MMU %3lld ms:     %s%%\n", (long long)(mmu_windows[i] / 1000000),
               pct(a, trace_mmu(t, mmu_windows[i])));
}

static void print_json(const trace *t, const char *path) {
    printf("{\"file\":\"");
    for (const char *p = path; *p; p++) printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
    printf("\",\"format\":\"%s\",\"truncated\":%s,\"cycles\":%zu,\"span_ns\":%lld,\"stops\":%zu",
           t->is_json ? "trace-file" : "trace-lines", t->truncated ? "true" : "false",
           t->ncycles, (long long)(t->span_hi - t->span_lo), t->nstops);
    static const int ps[3] = {50, 90, 99};
    for (int i = 0; i < 3; i++)
        printf(",\"p%d_ns\":%lld", ps[i], (long long)trace_percentile(t, ps[i]));
    const stop *l = t->nstops ? &t->stops[t->longest] : NULL;
    printf(",\"max_ns\":%lld,\"max_cycle\":%lld,\"max_at_ns\":%lld,\"total_stopped_ns\":%lld",
           (long long)(l ? l->b - l->a : 0), (long long)(l ? l->cycle : -1),
           (long long)(l ? l->a : 0), (long long)t->total_ns);
    printf(",\"gc_cpu_share\":%.6f,\"mmu\":{", t->gc_share);
    for (int i = 0; i < 3; i++)
        printf("%s\"%lldms\":%.6f", i ? "," : "", (long long)(mmu_windows[i] / 1000000),
               trace_mmu(t, mmu_windows[i]));
    printf("}}\n");
}

static bool repair(const trace *t, const char *out) {
    if (!t->is_json || t->object_format) {
        fprintf(stderr, "cgc-trace: --repair handles JSON array trace files only\n");
        return false;
    }
    FILE *f = fopen(out, "wb");
    if (f == NULL) {
        fprintf(stderr, "cgc-trace: cannot write %s: %s\n", out, strerror(errno));
        return false;
    }
    fwrite(t->text, 1, t->good_end, f);
    if (t->truncated) fputs("\n]\n", f);
    bool ok = fclose(f) == 0;
    if (!ok) fprintf(stderr, "cgc-trace: cannot write %s\n", out);
    return ok;
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: cgc-trace [--json] [--svg OUT.svg] [--repair OUT.json] FILE\n"
        "  FILE            a CGC_TRACE_FILE trace (JSON) or saved CGC_TRACE=1 lines\n"
        "  --json          print the summary as one JSON object\n"
        "  --svg OUT.svg   draw the heap timeline with stops, the pause histogram and the\n"
        "                  MMU curve into OUT.svg\n"
        "  --repair OUT    write a trace file that was cut short as valid JSON to OUT\n"
        "Prints: pause count, p50/p90/p99/max of stops (nearest rank), total stopped time,\n"
        "GC CPU share, the longest stop and its cycle, minimum mutator utilization at 1, 10\n"
        "and 100 ms windows. See README \"Reading traces\".\n");
}

int main(int argc, char **argv) {
    const char *svg = NULL, *fix = NULL, *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--svg") && i + 1 < argc) svg = argv[++i];
        else if (!strcmp(argv[i], "--repair") && i + 1 < argc) fix = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "cgc-trace: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "cgc-trace: one FILE only\n");
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (path == NULL) {
        usage(stderr);
        return 2;
    }
    trace t;
    if (!trace_load(&t, path)) return 1;
    if (t.is_json && t.truncated)
        fprintf(stderr, "cgc-trace: note: %s ends early (the program did not exit cleanly); "
                "read its %zu complete events%s\n", path, t.nevents,
                fix ? "" : " (--repair OUT writes them as valid JSON)");
    if (t.skipped_lines)
        fprintf(stderr, "cgc-trace: note: %zu lines starting with \"cgc \" are not trace lines "
                "(ignored)\n", t.skipped_lines);
    if (t.dropped_notes)
        fprintf(stderr, "cgc-trace: note: the trace buffer overflowed %zu time(s); some events "
                "are missing\n", t.dropped_notes);
    if (!t.have_span) {
        fprintf(stderr, "cgc-trace: %s holds no trace events or trace lines\n", path);
        return 1;
    }
    trace_analyse(&t);
    if (json) print_json(&t, path);
    else print_text(&t, path);
    int rc = 0;
    if (svg && !trace_svg(&t, svg)) rc = 1;
    if (fix && !repair(&t, fix)) rc = 1;
    return rc;
}
