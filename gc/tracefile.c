/* gc/tracefile.c — the trace file (CGC_TRACE_FILE=path), DESIGN §6.
 *
 * THE FORMAT (the contract with tools/cgc-trace and with Perfetto / chrome://tracing): the
 * JSON Array Format of the Trace Event Format. One event per line, each line ending in ",":
 *
 *   [
 *   {"name":"process_name","ph":"M","pid":P,"tid":P,"args":{"name":"prog (pid P)"}},
 *   {"name":"cgc: trace start","cat":"cgc","ph":"i","s":"p","ts":0.000,..,"args":{"ncpu":2}},
 *   {"name":"thread_name","ph":"M","pid":P,"tid":T,"args":{"name":"comm (tid T)"}},
 *   {"name":"stop: time-to-stop","cat":"stop-wait","ph":"X","ts":U,"dur":U,...,"args":{"cycle":N}},
 *   {"name":"stop","cat":"stop","ph":"X","ts":U,"dur":U,..,"args":{"cycle":N,"time_to_stop_us":U}},
 *   {"name":"mark","cat":"mark","ph":"X",...}      (trace_span: any category; "assist", "worker",
 *                                                   "sweep" count as GC CPU in cgc-trace)
 *   {"name":"heap in use","ph":"C","ts":U,...,"args":{"bytes":B}}   (also "heap goal", "live heap")
 *   {"name":"GC cycle","cat":"cycle","ph":"X",...,"args":{"cycle":N}},
 *   {"name":"cgc: exit","cat":"cgc","ph":"i","s":"p","ts":U,...}
 *   ]
 *
 * Times U are microseconds with exactly three decimals (so nanosecond-exact) since this
 * process (or, after fork, its parent) loaded libcgc. A stop is one "stop" event: it lasts
 * time_to_stop_us + dur, which is exactly what the statistics count as its pause. The closing
 * "]" is written only at a clean exit; a killed process leaves "...},\n", which Chrome accepts
 * and cgc-trace repairs. Lines are only ever written whole, by one flusher at a time.
 *
 * RECORDING. Events are formatted on the caller's stack and appended to the current chunk (an
 * mmap'd 4 MiB buffer, never the traced heap) by a lock-free reservation: fetch_add on the
 * chunk's `reserved`. A writer first registers in the chunk's `writers` count and re-checks
 * that the chunk is still current (Dekker, seq_cst both sides), so the flusher, after swapping
 * the two chunks, knows when the old one is complete: writers == 0. A reservation that does
 * not fit is dropped and counted; the flusher reports the count as an event. Nothing here
 * blocks, so the collector may record while every other thread is stopped, even if a stopped
 * thread was half-way through recording.
 *
 * FLUSHING (trace_file_flush) takes trace_flush_lock — a leaf lock, never taken while the
 * world is stopped — swaps the chunks, waits for the old chunk's writers (they are never
 * blocked: a writer stopped by the collector runs again once the world restarts, and flushes
 * happen outside stops), and write()s it. The collector flushes after each cycle; allocation
 * paths flush a chunk that is half full (trace_counters_sample, try-lock only); the
 * destructor flushes and closes the array at exit.
 *
 * FILES AND PROCESSES. The first process to open `path` owns it (flock, held for its life);
 * a process that finds it owned — a program exec'd by the traced one with the same
 * environment — writes `path.<pid>` instead. A forked child never writes the parent's file:
 * its atfork handler drops the inherited descriptor and the parent's unflushed events, and the
 * child opens `path.<pid>` when it first has something to flush (a child that records
 * nothing creates no file).
 */
#include "cgc/trace.h"

#include "cgc/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef TRACE_CHUNK_CAP
#define TRACE_CHUNK_CAP (4 << 20) /* stress/ builds a small one to exercise dropping */
#endif
#define CHUNK_CAP ((uint64_t)TRACE_CHUNK_CAP)
#define REC_MAX 768 /* longest record, thread-name line included */

typedef struct trace_chunk {
    _Atomic uint64_t reserved; /* bytes reserved; past CHUNK_CAP the events were dropped */
    _Atomic uint64_t end;      /* set by the one reservation that crossed CHUNK_CAP */
    _Atomic uint32_t writers;  /* writers between registering and finishing their copy */
    char *data;                /* CHUNK_CAP bytes, mmap'd */
} trace_chunk;

enum { TRACE_OFF = 0, TRACE_ON = 1, TRACE_CLOSED = 2 };
static _Atomic int trace_state;
static _Atomic int trace_init_done;
static trace_chunk chunks[2];
static trace_chunk *_Atomic trace_cur;
static _Atomic uint64_t trace_dropped;
static pthread_mutex_t trace_flush_lock = PTHREAD_MUTEX_INITIALIZER;
static int trace_fd = -1;           /* [trace_flush_lock] -1: not open yet (a forked child) */
static bool trace_header_pending;   /* [trace_flush_lock] the file still needs its header */
static char trace_path[4096];
static uint64_t trace_t_load;       /* plat_now_ns() when the library was loaded */
static uint64_t trace_t0;           /* plat_now_ns() at the origin of "ts" */
static uint64_t trace_t_start;      /* this process's trace start (fork time in a child) */
static _Atomic long trace_pid;
static long trace_parent_pid;       /* after fork: the parent's pid, for the process name */
static _Atomic uint64_t trace_last_sample;
/* This thread's name line was recorded (keyed on the tid: a fork child's differs). */
static CGC_TLS long trace_named_tid;

/* ---- formatting (no stdio: nothing here may allocate or take a lock) ---------------------- */
typedef struct rec {
    char *p, *end;
} rec;

static void put(rec *r, const char *s) {
    while (*s && r->p < r->end) *r->p++ = *s++;
}

/* A JSON string body, at most 100 bytes: quotes and backslashes escaped; control characters
 * and non-ASCII bytes become '?' (a thread name cut at 15 bytes may end mid-character, and
 * the file must stay valid UTF-8). */
static void put_json_str(rec *r, const char *s) {
    for (int n = 0; s && *s && n < 100 && r->p + 6 < r->end; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            *r->p++ = '\\';
            *r->p++ = (char)c;
        } else if (c < 0x20 || c >= 0x80) {
            *r->p++ = '?';
        } else {
            *r->p++ = (char)c;
        }
    }
}

static void put_u64(rec *r, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n > 0 && r->p < r->end) *r->p++ = tmp[--n];
}

/* Nanoseconds as microseconds with three decimals: exact. */
static void put_us(rec *r, int64_t ns) {
    if (ns < 0) {
        put(r, "-");
        ns = -ns;
    }
    put_u64(r, (uint64_t)ns / 1000);
    char frac[5] = {'.', (char)('0' + ns / 100 % 10), (char)('0' + ns / 10 % 10),
                    (char)('0' + ns % 10), 0};
    put(r, frac);
}

static long trace_gettid(void) { return (long)syscall(SYS_gettid); }

/* "pid":P,"tid":T */
static void put_ids(rec *r, long tid) {
    put(r, "\"pid\":");
    put_u64(r, (uint64_t)atomic_load_explicit(&trace_pid, memory_order_relaxed));
    put(r, ",\"tid\":");
    put_u64(r, (uint64_t)tid);
}

/* The start of an event line on the calling thread, preceded by the thread's name line the
 * first time this thread records. */
static long begin(rec *r, char *buf) {
    r->p = buf;
    r->end = buf + REC_MAX - 8; /* room for the closing "},\n" however long the body got */
    long tid = trace_gettid();
    if (trace_named_tid != tid) {
        trace_named_tid = tid;
        char comm[17] = {0};
        prctl(PR_GET_NAME, comm, 0, 0, 0);
        put(r, "{\"name\":\"thread_name\",\"ph\":\"M\",");
        put_ids(r, tid);
        put(r, ",\"args\":{\"name\":\"");
        put_json_str(r, comm);
        put(r, " (tid ");
        put_u64(r, (uint64_t)tid);
        put(r, ")\"}},\n");
    }
    return tid;
}

static void finish(rec *r) {
    r->end += 8;
    put(r, "},\n");
}

/* Append one record to the current chunk (lock-free; see the top of the file). */
static void append(const char *buf, size_t len) {
    for (;;) {
        trace_chunk *c = atomic_load_explicit(&trace_cur, memory_order_seq_cst);
        atomic_fetch_add_explicit(&c->writers, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&trace_cur, memory_order_seq_cst) != c) {
            atomic_fetch_sub_explicit(&c->writers, 1, memory_order_release);
            continue; /* the flusher swapped chunks meanwhile */
        }
        uint64_t off = atomic_fetch_add_explicit(&c->reserved, len, memory_order_relaxed);
        if (off + len <= CHUNK_CAP) {
            memcpy(c->data + off, buf, len);
        } else {
            if (off <= CHUNK_CAP) atomic_store_explicit(&c->end, off, memory_order_relaxed);
            atomic_fetch_add_explicit(&trace_dropped, 1, memory_order_relaxed);
        }
        atomic_fetch_sub_explicit(&c->writers, 1, memory_order_release);
        return;
    }
}

/* A complete event: {"name":..,"cat":..,"ph":"X","ts":..,"dur":..,ids,"args":{"cycle":N */
static void begin_complete(rec *r, char *buf, const char *name, const char *suffix,
                           const char *cat, uint64_t t0, uint64_t t1, uint64_t cycle) {
    long tid = begin(r, buf);
    put(r, "{\"name\":\"");
    put_json_str(r, name);
    put_json_str(r, suffix);
    put(r, "\",\"cat\":\"");
    put_json_str(r, cat);
    put(r, "\",\"ph\":\"X\",\"ts\":");
    put_us(r, (int64_t)(t0 - trace_t0));
    put(r, ",\"dur\":");
    put_us(r, t1 >= t0 ? (int64_t)(t1 - t0) : 0);
    put(r, ",");
    put_ids(r, tid);
    put(r, ",\"args\":{\"cycle\":");
    put_u64(r, cycle);
}

/* ---- the recording API ------------------------------------------------------------------- */
bool trace_file_enabled(void) {
    return atomic_load_explicit(&trace_state, memory_order_relaxed) == TRACE_ON;
}

void trace_stop(uint64_t cycle, const char *name, uint64_t t_request_ns, uint64_t t_stopped_ns,
                uint64_t t_release_ns) {
    if (!trace_file_enabled()) return;
    char buf[REC_MAX];
    rec r;
    begin_complete(&r, buf, name, ": time-to-stop", "stop-wait", t_request_ns, t_stopped_ns, cycle);
    put(&r, "}");
    finish(&r);
    append(buf, (size_t)(r.p - buf));
    begin_complete(&r, buf, name, "", "stop", t_stopped_ns, t_release_ns, cycle);
    put(&r, ",\"time_to_stop_us\":");
    put_us(&r, (int64_t)(t_stopped_ns - t_request_ns));
    put(&r, "}");
    finish(&r);
    append(buf, (size_t)(r.p - buf));
}

void trace_span(uint64_t cycle, const char *name, const char *cat, uint64_t t0_ns, uint64_t t1_ns) {
    if (!trace_file_enabled()) return;
    char buf[REC_MAX];
    rec r;
    begin_complete(&r, buf, name, "", cat, t0_ns, t1_ns, cycle);
    put(&r, "}");
    finish(&r);
    append(buf, (size_t)(r.p - buf));
}

void trace_cycle(uint64_t cycle, uint64_t t0_ns, uint64_t t1_ns) {
    if (!trace_file_enabled()) return;
    char buf[REC_MAX];
    rec r;
    begin_complete(&r, buf, "GC cycle", "", "cycle", t0_ns, t1_ns, cycle);
    put(&r, "}");
    finish(&r);
    append(buf, (size_t)(r.p - buf));
}

void trace_counters(uint64_t t_ns, uint64_t heap_inuse, uint64_t heap_goal, uint64_t heap_live) {
    if (!trace_file_enabled()) return;
    static const char *const names[3] = {"heap in use", "heap goal", "live heap"};
    uint64_t v[3] = {heap_inuse, heap_goal, heap_live};
    char buf[REC_MAX];
    rec r;
    long tid = begin(&r, buf);
    for (int i = 0; i < 3; i++) {
        if (i > 0) r.end -= 8; /* finish() gave the margin back */
        put(&r, "{\"name\":\"");
        put(&r, names[i]);
        put(&r, "\",\"ph\":\"C\",\"ts\":");
        put_us(&r, (int64_t)(t_ns - trace_t0));
        put(&r, ",");
        put_ids(&r, tid);
        put(&r, ",\"args\":{\"bytes\":");
        put_u64(&r, v[i]);
        put(&r, "}");
        finish(&r);
    }
    append(buf, (size_t)(r.p - buf));
}

static void flush(bool final, bool try_only);

void trace_counters_sample(uint64_t heap_inuse, uint64_t heap_goal, uint64_t heap_live) {
    if (!trace_file_enabled()) return;
    uint64_t now = plat_coarse_now_ns();
    uint64_t last = atomic_load_explicit(&trace_last_sample, memory_order_relaxed);
    if (now - last < 1000000 ||
        !atomic_compare_exchange_strong_explicit(&trace_last_sample, &last, now,
                                                 memory_order_relaxed, memory_order_relaxed))
        return;
    trace_counters(plat_now_ns(), heap_inuse, heap_goal, heap_live);
    /* A program that allocates without collecting for long still gets its file written.
     * Not inside a no-stop region: the flush may wait for a writer the collector stopped. */
    trace_chunk *c = atomic_load_explicit(&trace_cur, memory_order_relaxed);
    if (atomic_load_explicit(&c->reserved, memory_order_relaxed) > CHUNK_CAP / 2 &&
        alloc_tls_nostop == 0)
        flush(false, true);
}

/* ---- the file ------------------------------------------------------------------------------ */
static void write_all(const char *p, size_t n) {
    while (n > 0 && trace_fd >= 0) {
        ssize_t w = write(trace_fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return; /* a full disk loses the trace, never the program */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Open `path` (owner: we hold its flock) or, if another live process owns it, path.<pid>.
 * At exit (!allow_suffix: a program that never collected) only a path that does not exist
 * yet is created: a shell's trace must not replace the one its traced child left there. */
static int open_owned(bool allow_suffix, bool *suffixed) {
    *suffixed = false;
    int fd = open(trace_path, O_WRONLY | O_CREAT | O_CLOEXEC | (allow_suffix ? 0 : O_EXCL), 0644);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
        if (ftruncate(fd, 0) == 0) return fd;
    }
    if (fd >= 0) close(fd);
    if (!allow_suffix) return -1;
    char path[sizeof trace_path + 24];
    rec r = {path, path + sizeof path - 1};
    put(&r, trace_path);
    put(&r, ".");
    put_u64(&r, (uint64_t)atomic_load_explicit(&trace_pid, memory_order_relaxed));
    *r.p = 0;
    *suffixed = true;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) (void)flock(fd, LOCK_EX | LOCK_NB);
    return fd;
}

/* The process name line and the start marker. [trace_flush_lock] */
static void write_header(void) {
    char buf[1024], comm[64] = {0};
    int cf = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (cf >= 0) {
        ssize_t n = read(cf, comm, sizeof comm - 1);
        if (n > 0 && comm[n - 1] == '\n') comm[n - 1] = 0;
        close(cf);
    }
    long pid = atomic_load_explicit(&trace_pid, memory_order_relaxed);
    long tid = trace_gettid();
    rec r = {buf, buf + sizeof buf};
    put(&r, "[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":");
    put_u64(&r, (uint64_t)pid);
    put(&r, ",\"tid\":");
    put_u64(&r, (uint64_t)pid);
    put(&r, ",\"args\":{\"name\":\"");
    put_json_str(&r, comm);
    put(&r, " (pid ");
    put_u64(&r, (uint64_t)pid);
    if (trace_parent_pid) {
        put(&r, ", forked from ");
        put_u64(&r, (uint64_t)trace_parent_pid);
    }
    put(&r, ")\"}},\n");
    put(&r, "{\"name\":\"cgc: trace start\",\"cat\":\"cgc\",\"ph\":\"i\",\"s\":\"p\",\"ts\":");
    put_us(&r, (int64_t)(trace_t_start - trace_t0));
    put(&r, ",");
    put_ids(&r, tid);
    put(&r, ",\"args\":{\"ncpu\":");
    put_u64(&r, plat_ncpu());
    put(&r, "}},\n");
    write_all(buf, (size_t)(r.p - buf));
}

static void warn_open(void) {
    char buf[256];
    size_t n = alloc_fmt(buf, sizeof buf, "cgc: warning: cannot open CGC_TRACE_FILE '%.150s'; "
                         "no trace file\n", trace_path);
    plat_write_stderr(buf, n);
}

static void flush(bool final, bool try_only) {
    if (try_only) {
        if (pthread_mutex_trylock(&trace_flush_lock) != 0) return; /* someone is flushing */
    } else {
        pthread_mutex_lock(&trace_flush_lock);
    }
    if (atomic_load_explicit(&trace_state, memory_order_relaxed) != TRACE_ON) {
        pthread_mutex_unlock(&trace_flush_lock);
        return;
    }
    trace_chunk *old = atomic_load_explicit(&trace_cur, memory_order_relaxed);
    atomic_store_explicit(&trace_cur, old == &chunks[0] ? &chunks[1] : &chunks[0],
                          memory_order_seq_cst);
    while (atomic_load_explicit(&old->writers, memory_order_seq_cst) != 0) sched_yield();
    uint64_t r = atomic_load_explicit(&old->reserved, memory_order_acquire);
    uint64_t n = r <= CHUNK_CAP ? r : atomic_load_explicit(&old->end, memory_order_relaxed);
    uint64_t dropped = atomic_exchange_explicit(&trace_dropped, 0, memory_order_relaxed);
    if (trace_fd < 0 && (n > 0 || dropped > 0)) { /* a forked child's first events */
        bool suffixed;
        trace_fd = open_owned(true, &suffixed);
        if (trace_fd < 0) {
            warn_open();
            atomic_store_explicit(&trace_state, TRACE_CLOSED, memory_order_relaxed);
        }
    }
    if (trace_fd >= 0 && trace_header_pending) {
        write_header();
        trace_header_pending = false;
    }
    write_all(old->data, (size_t)n);
    atomic_store_explicit(&old->end, 0, memory_order_relaxed);
    atomic_store_explicit(&old->reserved, 0, memory_order_release);
    char buf[REC_MAX];
    rec rr;
    if (dropped) {
        long tid = begin(&rr, buf);
        put(&rr, "{\"name\":\"cgc: trace events dropped (buffer full)\",\"cat\":\"cgc\","
                 "\"ph\":\"i\",\"s\":\"g\",\"ts\":");
        put_us(&rr, (int64_t)(plat_now_ns() - trace_t0));
        put(&rr, ",");
        put_ids(&rr, tid);
        put(&rr, ",\"args\":{\"dropped\":");
        put_u64(&rr, dropped);
        put(&rr, "}");
        finish(&rr);
        write_all(buf, (size_t)(rr.p - buf));
    }
    if (final && trace_fd >= 0) {
        long tid = begin(&rr, buf);
        put(&rr, "{\"name\":\"cgc: exit\",\"cat\":\"cgc\",\"ph\":\"i\",\"s\":\"p\",\"ts\":");
        put_us(&rr, (int64_t)(plat_now_ns() - trace_t0));
        put(&rr, ",");
        put_ids(&rr, tid);
        put(&rr, "}\n]\n");
        write_all(buf, (size_t)(rr.p - buf));
        close(trace_fd);
        trace_fd = -1;
        atomic_store_explicit(&trace_state, TRACE_CLOSED, memory_order_relaxed);
    }
    pthread_mutex_unlock(&trace_flush_lock);
}

void trace_file_flush(void) { flush(false, false); }

/* A forked child: its events go to path.<pid>, opened on first flush; the parent's buffered
 * events stay the parent's. The only thread here is the one that forked. */
static void trace_fork_child(void) {
    if (atomic_load_explicit(&trace_state, memory_order_relaxed) != TRACE_ON) return;
    pthread_mutex_init(&trace_flush_lock, NULL);
    if (trace_fd >= 0) close(trace_fd); /* the parent's flock lives on in its own descriptor */
    trace_fd = -1;
    trace_header_pending = true;
    trace_parent_pid = atomic_load_explicit(&trace_pid, memory_order_relaxed);
    atomic_store_explicit(&trace_pid, (long)getpid(), memory_order_relaxed);
    trace_t_start = plat_now_ns();
    for (int i = 0; i < 2; i++) {
        atomic_store_explicit(&chunks[i].reserved, 0, memory_order_relaxed);
        atomic_store_explicit(&chunks[i].end, 0, memory_order_relaxed);
        atomic_store_explicit(&chunks[i].writers, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&trace_dropped, 0, memory_order_relaxed);
}

static void open_trace(bool at_exit) {
    const char *path = plat_getenv("CGC_TRACE_FILE");
    if (path == NULL || *path == 0) return;
    if (strlen(path) >= sizeof trace_path) {
        static const char msg[] = "cgc: warning: CGC_TRACE_FILE path too long; no trace file\n";
        plat_write_stderr(msg, sizeof msg - 1);
        return;
    }
    memcpy(trace_path, path, strlen(path) + 1);
    atomic_store_explicit(&trace_pid, (long)getpid(), memory_order_relaxed);
    trace_t0 = trace_t_start = trace_t_load ? trace_t_load : plat_now_ns();
    bool suffixed;
    int fd = open_owned(!at_exit, &suffixed);
    if (fd < 0) {
        if (!at_exit) warn_open();
        return;
    }
    for (int i = 0; i < 2; i++) {
        chunks[i].data = plat_map(CHUNK_CAP);
        if (chunks[i].data == NULL) {
            close(fd);
            static const char msg[] =
                "cgc: warning: no memory for the trace buffer; no trace file\n";
            plat_write_stderr(msg, sizeof msg - 1);
            return;
        }
    }
    trace_fd = fd;
    trace_header_pending = true;
    atomic_store_explicit(&trace_cur, &chunks[0], memory_order_relaxed);
    pthread_atfork(NULL, NULL, trace_fork_child);
    atomic_store_explicit(&trace_state, TRACE_ON, memory_order_release);
    pthread_mutex_lock(&trace_flush_lock);
    write_header(); /* at once: the file is valid (for cgc-trace) from the start */
    trace_header_pending = false;
    pthread_mutex_unlock(&trace_flush_lock);
}

/* The origin of "ts": when the library was loaded, so a trace covers the whole run even
 * though the collector (and the file) start at the first collected allocation. */
__attribute__((constructor)) static void trace_file_load(void) { trace_t_load = plat_now_ns(); }

void trace_file_init(void) {
    int expected = 0;
    if (atomic_compare_exchange_strong_explicit(&trace_init_done, &expected, 1,
                                                memory_order_acq_rel, memory_order_acquire))
        open_trace(false);
}

/* At exit: flush and close the array. A process that never initialised the collector still
 * gets a (cycle-free) trace if it owns the path, so `cgc-trace` has something to say. */
__attribute__((destructor)) static void trace_file_exit(void) {
    int expected = 0;
    if (atomic_compare_exchange_strong_explicit(&trace_init_done, &expected, 1,
                                                memory_order_acq_rel, memory_order_acquire))
        open_trace(true);
    if (atomic_load_explicit(&trace_state, memory_order_acquire) == TRACE_ON) flush(true, false);
}
