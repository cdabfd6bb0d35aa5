/* cgc-trace-svg.c — cgc-trace --svg: one picture of a trace, three panels (each a <g> with
 * an id, which the tests look for):
 *   timeline   heap in use, heap goal and live heap (MiB) over time; every stop is a red
 *              mark in the strip under the plot (and a faint line across it);
 *   histogram  how many stops fell in each length bin; bins are 4 per decade on a log axis;
 *   mmu        minimum mutator utilization against window length (log axis), with the
 *              1, 10 and 100 ms values that cgc-trace prints marked.
 * Plain SVG 1.1, no scripts or external fonts: it opens in any browser and renders with
 * rsvg-convert.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cgc-trace.h"

#define W 960
#define H 780

typedef struct box {
    double x0, y0, x1, y1; /* plot area in pixels */
} box;

static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void text(FILE *f, double x, double y, const char *anchor, int size, const char *s) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\">", x, y, anchor,
            size);
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputs("</text>\n", f);
}

static void frame(FILE *f, box b, const char *title, const char *xlabel, const char *ylabel) {
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" "
               "stroke=\"#888\"/>\n", b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
    text(f, b.x0, b.y0 - 10, "start", 15, title);
    text(f, (b.x0 + b.x1) / 2, b.y1 + 33, "middle", 12, xlabel);
    fprintf(f, "<g transform=\"translate(%.1f,%.1f) rotate(-90)\">", b.x0 - 46, (b.y0 + b.y1) / 2);
    text(f, 0, 0, "middle", 12, ylabel);
    fputs("</g>\n", f);
}

static void xtick(FILE *f, box b, double x, const char *label) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x,
            b.y0, x, b.y1);
    text(f, x, b.y1 + 16, "middle", 11, label);
}

static void ytick(FILE *f, box b, double y, const char *label) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", b.x0,
            y, b.x1, y);
    text(f, b.x0 - 6, y + 4, "end", 11, label);
}

/* A duration label for a log axis: 1us, 10us, ..., 1s, 10s. */
static void dur_label(char *buf, size_t cap, double ns) {
    if (ns >= 1e9) snprintf(buf, cap, "%gs", ns / 1e9);
    else if (ns >= 1e6) snprintf(buf, cap, "%gms", ns / 1e6);
    else if (ns >= 1e3) snprintf(buf, cap, "%gus", ns / 1e3);
    else snprintf(buf, cap, "%gns", ns);
}

static void timeline(FILE *f, const trace *t, box b) {
    static const char *const color[3] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
    static const char *const label[3] = {"heap in use", "heap goal", "live heap"};
    double S = (double)t->span_lo, E = (double)t->span_hi, ymax = 1;
    if (E <= S) E = S + 1;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < t->heap[k].n; i++)
            if (t->heap[k].p[i].mb > ymax) ymax = t->heap[k].p[i].mb;
    double ystep = nice_step(ymax * 1.1, 5);
    ymax = ceil(ymax * 1.1 / ystep) * ystep;
#define X(ns) (b.x0 + ((double)(ns) - S) / (E - S) * (b.x1 - b.x0))
#define Y(mb) (b.y1 - (mb) / ymax * (b.y1 - b.y0))
    fputs("<g id=\"timeline\">\n", f);
    frame(f, b, "Heap over time; each red mark is a stop (all threads paused)",
          "time since the trace started (s)", "MiB");
    double xstep = nice_step((E - S) / 1e9, 8);
    for (double s = ceil(S / 1e9 / xstep) * xstep; s <= E / 1e9 + 1e-12; s += xstep) {
        char l[32];
        snprintf(l, sizeof l, "%g", fabs(s) < 1e-12 ? 0 : s);
        xtick(f, b, X(s * 1e9), l);
    }
    for (double v = 0; v <= ymax + 1e-9; v += ystep) {
        char l[32];
        snprintf(l, sizeof l, "%g", v);
        ytick(f, b, Y(v), l);
    }
    for (size_t i = 0; i < t->nstops; i++) { /* stops: a faint line and a mark in the strip */
        double x = X(t->stops[i].a), w = X(t->stops[i].b) - x;
        if (w < 1.5) w = 1.5;
        fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"#d62728\" "
                   "fill-opacity=\"0.12\"/>\n", x, b.y0, w, b.y1 - b.y0);
        fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"10\" fill=\"#d62728\"/>\n",
                x, b.y1 + 40, w);
    }
    text(f, b.x0 - 6, b.y1 + 49, "end", 11, "stops");
    for (int k = 0; k < 3; k++) {
        const series *s = &t->heap[k];
        if (s->n == 0) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s points=\"",
                color[k], k == 0 ? "1.5" : "1.2", k == 1 ? " stroke-dasharray=\"6,3\"" : "");
        for (size_t i = 0; i < s->n; i++) {
            /* steps: a value holds until the next sample (the heap in use is sampled every
             * millisecond while threads allocate, and does not change during a stop) */
            if (i > 0) fprintf(f, "%.2f,%.2f ", X(s->p[i].t), Y(s->p[i - 1].mb));
            fprintf(f, "%.2f,%.2f ", X(s->p[i].t), Y(s->p[i].mb));
        }
        if (k > 0) fprintf(f, "%.2f,%.2f", X(E), Y(s->p[s->n - 1].mb));
        fputs("\"/>\n", f);
        double lx = b.x1 - 330 + 110 * k;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2\"%s/>\n", lx, b.y0 + 14, lx + 18, b.y0 + 14, color[k],
                k == 1 ? " stroke-dasharray=\"6,3\"" : "");
        text(f, lx + 22, b.y0 + 18, "start", 11, label[k]);
    }
    fputs("</g>\n", f);
#undef X
#undef Y
}

static void histogram(FILE *f, const trace *t, box b) {
    fputs("<g id=\"histogram\">\n", f);
    frame(f, b, "Pause histogram (log scale)", "stop length", "stops");
    int64_t lo_ns = t->nstops ? t->sorted[0] : 1000;
    int64_t hi_ns = t->nstops ? t->sorted[t->nstops - 1] : 1000;
    int d0 = (int)floor(log10((double)(lo_ns > 0 ? lo_ns : 1)));
    int d1 = (int)ceil(log10((double)(hi_ns > 0 ? hi_ns : 1)) + 1e-12);
    if (d1 <= d0) d1 = d0 + 1;
    if (d1 - d0 < 2) d1 = d0 + 2;
    int nb = 4 * (d1 - d0);
    int counts[64] = {0}, cmax = 1;
    if (nb > 64) nb = 64;
    for (size_t i = 0; i < t->nstops; i++) {
        double l = log10((double)(t->sorted[i] > 0 ? t->sorted[i] : 1));
        int k = (int)floor((l - d0) * 4 + 1e-9);
        if (k < 0) k = 0;
        if (k >= nb) k = nb - 1;
        if (++counts[k] > cmax) cmax = counts[k];
    }
    double ystep = nice_step(cmax, 5);
    if (ystep < 1) ystep = 1;
    double ymax = ceil(cmax / ystep) * ystep;
    for (double v = 0; v <= ymax + 1e-9; v += ystep) {
        char l[32];
        snprintf(l, sizeof l, "%g", v);
        ytick(f, b, b.y1 - v / ymax * (b.y1 - b.y0), l);
    }
    double bw = (b.x1 - b.x0) / nb;
    for (int d = d0; d <= d1; d++) {
        char l[32];
        dur_label(l, sizeof l, pow(10, d));
        xtick(f, b, b.x0 + (d - d0) * 4 * bw, l);
    }
    for (int k = 0; k < nb; k++) {
        if (!counts[k]) continue;
        double h = counts[k] / ymax * (b.y1 - b.y0);
        fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#d62728\" "
                   "stroke=\"#fff\"><title>%d</title></rect>\n", b.x0 + k * bw, b.y1 - h, bw, h,
                counts[k]);
    }
    fputs("</g>\n", f);
}

static void mmu_curve(FILE *f, const trace *t, box b) {
    fputs("<g id=\"mmu\">\n", f);
    frame(f, b, "Minimum mutator utilization", "window", "MMU (%)");
    double span = (double)(t->span_hi - t->span_lo);
    if (span < 1000) span = 1000;
    double lo = t->nstops && t->sorted[0] > 0 ? t->sorted[0] / 2.0 : 1e4;
    int d0 = (int)floor(log10(lo)), d1 = (int)floor(log10(span) + 1e-12);
    if (d1 <= d0) d1 = d0 + 1;
    double L0 = d0, L1 = fmax(log10(span), d0 + 1.0); /* the axis ends at the span */
#define X(ns) (b.x0 + (log10(ns) - L0) / (L1 - L0) * (b.x1 - b.x0))
#define Y(u) (b.y1 - (u) * (b.y1 - b.y0))
    for (int d = d0; d <= d1; d++) {
        char l[32];
        dur_label(l, sizeof l, pow(10, d));
        xtick(f, b, X(pow(10, d)), l);
    }
    for (int v = 0; v <= 100; v += 20) {
        char l[16];
        snprintf(l, sizeof l, "%d", v);
        ytick(f, b, Y(v / 100.0), l);
    }
    fputs("<polyline fill=\"none\" stroke=\"#9467bd\" stroke-width=\"2\" points=\"", f);
    const int n = 120;
    for (int i = 0; i <= n; i++) {
        double w = pow(10, L0 + (L1 - L0) * i / n);
        if (w > span) w = span;
        fprintf(f, "%.2f,%.2f ", X(w), Y(trace_mmu(t, (int64_t)w)));
    }
    fputs("\"/>\n", f);
    static const double marks[3] = {1e6, 1e7, 1e8};
    char legend[128] = "MMU at";
    for (int i = 0; i < 3; i++) {
        double u = trace_mmu(t, (int64_t)marks[i]);
        size_t l = strlen(legend);
        snprintf(legend + l, sizeof legend - l, "%s %gms: %.1f%%", i ? "," : "", marks[i] / 1e6,
                 u * 100);
        if (marks[i] < pow(10, L0) || marks[i] > pow(10, L1)) continue;
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"#9467bd\"/>\n", X(marks[i]),
                Y(u));
    }
    text(f, b.x0 + 8, b.y0 + 18, "start", 11, legend);
    fputs("</g>\n", f);
#undef X
#undef Y
}

bool trace_svg(const trace *t, const char *out) {
    FILE *f = fopen(out, "w");
    if (f == NULL) {
        perror(out);
        return false;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
    char title[256], a[32], c[32];
    int64_t mx = t->nstops ? t->sorted[t->nstops - 1] : 0;
    snprintf(a, sizeof a, "%.3f", trace_percentile(t, 99) / 1e6);
    snprintf(c, sizeof c, "%.3f", mx / 1e6);
    snprintf(title, sizeof title, "cgc trace: %zu cycles, %zu stops, p99 %s ms, max %s ms, "
             "%.1f%% of %.3f s stopped", t->ncycles, t->nstops, a, c,
             t->span_hi > t->span_lo ? 100.0 * t->total_ns / (t->span_hi - t->span_lo) : 0.0,
             (t->span_hi - t->span_lo) / 1e9);
    text(f, W / 2.0, 24, "middle", 17, title);
    timeline(f, t, (box){70, 70, W - 30, 340});
    histogram(f, t, (box){70, 450, W / 2.0 - 30, 710});
    mmu_curve(f, t, (box){W / 2.0 + 70, 450, W - 30, 710});
    fputs("</svg>\n", f);
    if (fclose(f) != 0) {
        perror(out);
        return false;
    }
    return true;
}
