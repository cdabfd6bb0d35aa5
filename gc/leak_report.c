/* gc/leak_report.c — writing what a leak check found, for people and for tools.
 *
 * Human form (stderr, or CGC_LEAKS_FILE): a summary line, then one entry per allocation site,
 * largest total first, with the site's symbolised stack and the sizes and addresses of its
 * blocks. JSON form (CGC_LEAKS_JSON): one object per check, on one line (JSON Lines), with
 * the same content. "%p" in either path is replaced by the process id (children of a
 * preloaded program are checked too). A process truncates a file on its first report and
 * appends afterwards.
 *
 * Runs after the world has restarted, on the thread that ran the check. It never calls
 * malloc: sorting is done in place, text goes through a fixed buffer to write(2).
 */
#include "cgc/leak.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SHOW_BLOCKS_TEXT 16
#define SHOW_BLOCKS_JSON 1000

typedef struct out {
    int fd;
    size_t n;
    char buf[8192];
} out;

static void out_flush(out *o) {
    size_t off = 0;
    while (off < o->n) {
        ssize_t w = write(o->fd, o->buf + off, o->n - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    o->n = 0;
}

static void out_put(out *o, const char *s, size_t len) {
    while (len > 0) {
        if (o->n == sizeof o->buf) out_flush(o);
        size_t k = sizeof o->buf - o->n;
        if (k > len) k = len;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        s += k;
        len -= k;
    }
}

static void out_printf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(out *o, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) out_put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void out_json_str(out *o, const char *s) {
    out_put(o, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            out_put(o, e, 2);
        } else if (c < 0x20) {
            out_printf(o, "\\u%04x", c);
        } else {
            out_put(o, (const char *)&c, 1);
        }
    }
    out_put(o, "\"", 1);
}

/* Open path ("%p": the pid); truncate on this process's first report. -1 on failure. */
static int open_dest(const char *path, int *opened_pid) {
    char name[512];
    size_t n = 0;
    for (const char *p = path; *p && n + 24 < sizeof name; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            n += alloc_fmt(name + n, sizeof name - n, "%d", (int)getpid());
            p++;
        } else {
            name[n++] = *p;
        }
    }
    name[n] = 0;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_APPEND;
    if (*opened_pid != (int)getpid()) flags |= O_TRUNC;
    int fd = open(name, flags, 0644);
    if (fd >= 0) *opened_pid = (int)getpid();
    else {
        char msg[600];
        size_t k = alloc_fmt(msg, sizeof msg, "cgc: leaks: cannot open %s; writing to stderr\n", name);
        plat_write_stderr(msg, k);
    }
    return fd;
}

/* ---- grouping (in place, no allocation) ---------------------------------------------------- */
typedef struct group {
    uint32_t site;
    size_t first, count;
    uint64_t bytes;
} group;

static bool block_before(const leak_block *a, const leak_block *b) {
    return a->site != b->site ? a->site < b->site : a->addr < b->addr;
}

static void sift(leak_block *b, size_t i, size_t n) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && block_before(&b[c], &b[c + 1])) c++;
        if (!block_before(&b[i], &b[c])) return;
        leak_block t = b[i];
        b[i] = b[c];
        b[c] = t;
        i = c;
    }
}

static void sort_blocks(leak_block *b, size_t n) { /* heap sort: qsort may malloc */
    for (size_t i = n / 2; i-- > 0;) sift(b, i, n);
    for (size_t i = n; i-- > 1;) {
        leak_block t = b[0];
        b[0] = b[i];
        b[i] = t;
        sift(b, 0, i);
    }
}

static void sort_groups(group *g, size_t n) { /* largest first; shell sort */
    static const size_t gaps[] = {701, 301, 132, 57, 23, 10, 4, 1};
    for (size_t k = 0; k < sizeof gaps / sizeof *gaps; k++) {
        size_t gap = gaps[k];
        for (size_t i = gap; i < n; i++) {
            group x = g[i];
            size_t j = i;
            for (; j >= gap && (g[j - gap].bytes < x.bytes ||
                                (g[j - gap].bytes == x.bytes && g[j - gap].site > x.site));
                 j -= gap)
                g[j] = g[j - gap];
            g[j] = x;
        }
    }
}

static void stacks_desc(char *buf, size_t cap) {
    if (leak_sample_every <= 1) alloc_fmt(buf, cap, "all");
    else alloc_fmt(buf, cap, "sample:%u", leak_sample_every);
}

/* The command line: raw (NUL-separated arguments, for JSON's argv) and with spaces. */
static char cmdline_raw[2048], cmdline[2048];
static size_t cmdline_len;

static void command_line(void) {
    cmdline[0] = 0;
    cmdline_len = 0;
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, cmdline_raw, sizeof cmdline_raw - 1);
    close(fd);
    if (n <= 0) return;
    while (n > 0 && cmdline_raw[n - 1] == 0) n--;
    cmdline_raw[n] = 0;
    cmdline_len = (size_t)n;
    for (ssize_t i = 0; i <= n; i++) cmdline[i] = cmdline_raw[i] ? cmdline_raw[i] : ' ';
    cmdline[n] = 0;
}

static void write_text(out *o, leak_block *b, const group *g, size_t ng, const leak_summary *s) {
    char stacks[32];
    stacks_desc(stacks, sizeof stacks);
    const char *verb = s->collect ? "lost and freed" : "lost";
    out_printf(o, "cgc: leaks: pid %d (%.80s), check %llu (%s): %llu bytes in %llu blocks %s, from %zu "
                  "sites; %llu bytes in %llu blocks reachable; stacks: %s; world stopped %.3f ms\n",
               (int)getpid(), cmdline, (unsigned long long)s->cycle, s->reason,
               (unsigned long long)s->lost_bytes, (unsigned long long)s->lost_blocks, verb, ng,
               (unsigned long long)s->live_bytes, (unsigned long long)s->live_blocks, stacks,
               (double)s->stopped_ns / 1e6);
    char sym[512];
    for (size_t i = 0; i < ng; i++) {
        unsigned nf;
        const uintptr_t *f = leak_site_frames(g[i].site, &nf);
        out_printf(o, "cgc: leak %zu of %zu: %llu bytes in %zu block%s, allocated at%s:\n", i + 1,
                   ng, (unsigned long long)g[i].bytes, g[i].count, g[i].count == 1 ? "" : "s",
                   nf == 0 ? " (unknown site)" : leak_site_full(g[i].site) ? "" : " (caller only: stack not sampled)");
        for (unsigned k = 0; k < nf; k++) {
            leak_symbolize(f[k], sym, sizeof sym);
            out_printf(o, "    #%u 0x%lx %s\n", k, (unsigned long)f[k], sym);
        }
        out_printf(o, "    blocks:");
        for (size_t k = 0; k < g[i].count && k < SHOW_BLOCKS_TEXT; k++) {
            const leak_block *x = &b[g[i].first + k];
            out_printf(o, " 0x%lx (%llu)", (unsigned long)x->addr, (unsigned long long)x->size);
        }
        if (g[i].count > SHOW_BLOCKS_TEXT) out_printf(o, " ... %zu more", g[i].count - SHOW_BLOCKS_TEXT);
        out_put(o, "\n", 1);
    }
    out_flush(o);
}

static void write_json(out *o, leak_block *b, const group *g, size_t ng, const leak_summary *s) {
    char stacks[32];
    stacks_desc(stacks, sizeof stacks);
    out_printf(o, "{\"pid\":%d,\"command\":", (int)getpid());
    out_json_str(o, cmdline);
    out_printf(o, ",\"argv\":[");
    for (size_t i = 0; i < cmdline_len; i += strlen(cmdline_raw + i) + 1) {
        if (i) out_put(o, ",", 1);
        out_json_str(o, cmdline_raw + i);
    }
    out_put(o, "]", 1);
    out_printf(o, ",\"check\":%llu,\"reason\":", (unsigned long long)s->cycle);
    out_json_str(o, s->reason);
    out_printf(o, ",\"stacks\":\"%s\",\"freed\":%s,\"lost_bytes\":%llu,\"lost_blocks\":%llu,"
                  "\"reachable_bytes\":%llu,\"reachable_blocks\":%llu,\"stopped_ms\":%.3f",
               stacks, s->collect ? "true" : "false", (unsigned long long)s->lost_bytes,
               (unsigned long long)s->lost_blocks, (unsigned long long)s->live_bytes,
               (unsigned long long)s->live_blocks, (double)s->stopped_ns / 1e6);
    if (leak_stacks_verify) { /* the stack walker's check (tests/leaks) */
        uint64_t v[3];
        leak_sites_verify_counts(v);
        out_printf(o, ",\"stack_check\":{\"compared\":%llu,\"differed\":%llu,\"libunwind\":%llu}",
                   (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2]);
    }
    out_printf(o, ",\"sites\":[");
    char sym[512];
    for (size_t i = 0; i < ng; i++) {
        unsigned nf;
        const uintptr_t *f = leak_site_frames(g[i].site, &nf);
        out_printf(o, "%s{\"bytes\":%llu,\"blocks\":%zu,\"stack\":\"%s\",\"frames\":[", i ? "," : "",
                   (unsigned long long)g[i].bytes, g[i].count,
                   nf == 0 ? "unknown" : leak_site_full(g[i].site) ? "full" : "caller");
        for (unsigned k = 0; k < nf; k++) {
            leak_symbolize(f[k], sym, sizeof sym);
            out_printf(o, "%s{\"ip\":\"0x%lx\",\"symbol\":", k ? "," : "", (unsigned long)f[k]);
            out_json_str(o, sym);
            const char *mod;
            uintptr_t off;
            if (leak_frame_module(f[k], &mod, &off)) {
                out_printf(o, ",\"module\":");
                out_json_str(o, mod);
                out_printf(o, ",\"offset\":\"0x%lx\"", (unsigned long)off);
            }
            out_put(o, "}", 1);
        }
        out_printf(o, "],\"block_list\":[");
        for (size_t k = 0; k < g[i].count && k < SHOW_BLOCKS_JSON; k++) {
            const leak_block *x = &b[g[i].first + k];
            out_printf(o, "%s{\"address\":\"0x%lx\",\"size\":%llu}", k ? "," : "",
                       (unsigned long)x->addr, (unsigned long long)x->size);
        }
        out_put(o, "]}", 2);
    }
    out_put(o, "]}\n", 3);
    out_flush(o);
}

void leak_report(leak_block *b, size_t n, const leak_summary *s) {
    static int text_pid, json_pid;
    sort_blocks(b, n);
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || b[i].site != b[i - 1].site) ng++;
    size_t gbytes = (ng ? ng : 1) * sizeof(group);
    group *g = plat_map(gbytes);
    if (g == NULL) return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || b[i].site != b[i - 1].site) g[k++] = (group){b[i].site, i, 0, 0};
        g[k - 1].count++;
        g[k - 1].bytes += b[i].size;
    }
    sort_groups(g, ng);
    static out o; /* 8 KiB: not on the stack of a thread that may be deep in a program */
    command_line();
    /* Text: nothing when nothing was lost (like LeakSanitizer); JSON: always a record. */
    if ((!s->collect || leak_file_path) && n > 0) {
        o.fd = leak_file_path ? open_dest(leak_file_path, &text_pid) : 2;
        if (o.fd < 0) o.fd = 2;
        o.n = 0;
        write_text(&o, b, g, ng, s);
        if (o.fd != 2) close(o.fd);
    }
    if (leak_json_path) {
        o.fd = open_dest(leak_json_path, &json_pid);
        if (o.fd >= 0) {
            o.n = 0;
            write_json(&o, b, g, ng, s);
            close(o.fd);
        }
    }
    plat_unmap(g, gbytes);
}
