/* gc/leak_sites.c — allocation sites for leak mode: where each block was allocated.
 *
 * A site is a call stack (up to LEAK_MAX_FRAMES return addresses, cgc's own frames
 * dropped), captured when the block is allocated — by gc/leak_walk.c's walker, or libunwind's
 * unw_backtrace where it cannot; on the allocating thread, never in a signal handler
 * (DESIGN §3.3) — and interned in a
 * deduplicated table, so a block carries only a 30-bit site id in its side-table word.
 * Symbols are looked up only when a report is written (dladdr; "module+offset" when the
 * module does not export the function).
 *
 * CGC_LEAKS_STACKS=sample:N captures a full stack for one allocation in N (chosen at random
 * per thread, so alternating call sites are all sampled); the others get a one-frame site,
 * their immediate caller, which costs no unwinding. A report marks those sites as such.
 *
 * The table: site records live in bump-allocated mapped chunks and are found through a
 * two-level directory (id -> record); an open-addressing hash (hash -> record) finds an
 * existing site without a lock. Insertion takes sites_lock (a no-stop lock: a thread is never stopped
 * holding it), re-probes, appends, and publishes the slot with a release store; a full table
 * is replaced by one twice the size (old tables are never unmapped, so a reader holding one
 * stays safe and at worst misses and retries under the lock). Records hold code addresses,
 * never heap pointers, and sit in cgc's own mappings, which leak marking never scans.
 *
 * Recursion: libunwind (or the loader, in dl_iterate_phdr) may call malloc (rarely: their
 * caches use mmap); a per-thread guard makes such nested allocations record site 0 instead
 * of unwinding again.
 */
#include "cgc/gc.h"
#include "cgc/leak.h"

#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <libunwind.h>
#include <link.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEAK_MAX_FRAMES 16 /* valgrind shows 12 by default, LeakSanitizer 30 */
#define DIR_SHIFT 12
#define DIR_CHUNK ((uint32_t)1 << DIR_SHIFT)
#define DIR_TOP 4096 /* 16M sites */
#define REC_CHUNK ((size_t)1 << 20)

typedef struct site_rec {
    uint64_t hash;
    uint32_t id;
    uint16_t n;
    uint8_t full;
    uintptr_t f[];
} site_rec;

/* Slots hold the records themselves, not ids: a lookup reads the slot and the record, not
 * also the directory chunk between them (a cache miss per allocation with thousands of
 * sites). */
typedef struct site_table {
    uint32_t cap; /* power of two */
    _Atomic(site_rec *) slot[];
} site_table;

uint32_t leak_sample_every = 1;
static pthread_mutex_t sites_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(site_rec **) dir[DIR_TOP];
static _Atomic uint32_t nsites;      /* ids 1..nsites are in use */
static _Atomic(site_table *) table;
static char *rec_cur, *rec_end;      /* [sites_lock] */
static uintptr_t self_lo, self_hi;   /* libcgc's text: frames there are ours */
static CGC_TLS int in_capture;
static CGC_TLS uint64_t sample_rng;

static int self_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    uintptr_t me = (uintptr_t)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (me >= lo && me < hi) {
            self_lo = lo;
            self_hi = hi;
            return 1;
        }
    }
    return 0;
}

void leak_sites_roots_exclude(void) { GC_ROOTS_EXCLUDE_VAR(dir); }

void leak_sites_init(void) {
    dl_iterate_phdr(self_cb, (void *)(uintptr_t)&leak_site_capture);
    /* A cache of unwind information per thread: no lock shared by every allocating thread
     * (libunwind's default cache is global and locked). */
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
}

bool leak_own_code(uintptr_t ip) {
    if (self_hi == 0) leak_sites_init();
    return ip >= self_lo && ip < self_hi;
}

/* The hash of a stack, in four independent lanes so the multiplies overlap: one serial
 * chain of 16 mixes was 8% of a full-stack run's time (perf, perf/leak-cost's workload).
 * Each lane step, (lane ^ frame) * odd, is a bijection of the lane, so stacks differing in
 * one frame never collide; murmur3's finaliser spreads the lanes' high bits down. */
static inline uint64_t stack_hash(const uintptr_t *f, unsigned n, int full) {
    const uint64_t k = 0xff51afd7ed558ccdull;
    uint64_t a = n, b = (uint64_t)full + 0x9e3779b97f4a7c15ull, c = 0xc2b2ae3d27d4eb4full,
             d = 0x165667b19e3779f9ull;
    unsigned i = 0;
    for (; i + 4 <= n; i += 4) {
        a = (a ^ f[i]) * k;
        b = (b ^ f[i + 1]) * k;
        c = (c ^ f[i + 2]) * k;
        d = (d ^ f[i + 3]) * k;
    }
    for (; i < n; i++) a = (a ^ f[i]) * k;
    uint64_t h = a ^ ((b << 16) | (b >> 48)) ^ ((c << 32) | (c >> 32)) ^ ((d << 48) | (d >> 16));
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static site_rec *rec_of(uint32_t id) {
    site_rec **chunk = atomic_load_explicit(&dir[id >> DIR_SHIFT], memory_order_acquire);
    return chunk ? chunk[id & (DIR_CHUNK - 1)] : NULL;
}

static uint32_t probe(site_table *t, uint64_t h, const uintptr_t *f, unsigned n, int full,
                      uint32_t *free_slot) {
    for (uint32_t i = (uint32_t)h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        site_rec *r = atomic_load_explicit(&t->slot[i], memory_order_acquire);
        if (r == NULL) {
            if (free_slot) *free_slot = i;
            return 0;
        }
        if (r->hash == h && r->n == n && r->full == full && memcmp(r->f, f, n * sizeof *f) == 0)
            return r->id;
    }
}

static site_table *table_new(uint32_t cap) {
    site_table *t = plat_map(sizeof(site_table) + cap * sizeof(site_rec *));
    if (t) t->cap = cap;
    return t;
}

/* [sites_lock] Double the table when it is half full. */
static site_table *maybe_grow(site_table *t, uint32_t count) {
    if (count * 2 < t->cap) return t;
    site_table *nt = table_new(t->cap * 2);
    if (nt == NULL) return t;
    for (uint32_t i = 0; i < t->cap; i++) {
        site_rec *r = atomic_load_explicit(&t->slot[i], memory_order_relaxed);
        if (r == NULL) continue;
        uint32_t j = (uint32_t)r->hash & (nt->cap - 1);
        while (atomic_load_explicit(&nt->slot[j], memory_order_relaxed)) j = (j + 1) & (nt->cap - 1);
        atomic_store_explicit(&nt->slot[j], r, memory_order_relaxed);
    }
    atomic_store_explicit(&table, nt, memory_order_release);
    return nt;
}

static uint32_t intern(const uintptr_t *f, unsigned n, int full) {
    uint64_t h = stack_hash(f, n, full);
    site_table *t = atomic_load_explicit(&table, memory_order_acquire);
    if (t) {
        uint32_t id = probe(t, h, f, n, full, NULL);
        if (id) return id;
    }
    alloc_lock(&sites_lock);
    t = atomic_load_explicit(&table, memory_order_relaxed);
    if (t == NULL) {
        t = table_new(4096);
        if (t == NULL) goto fail;
        atomic_store_explicit(&table, t, memory_order_release);
    }
    uint32_t slot = 0, id = probe(t, h, f, n, full, &slot);
    if (id) {
        alloc_unlock(&sites_lock);
        return id;
    }
    id = atomic_load_explicit(&nsites, memory_order_relaxed) + 1;
    if (id >= (uint32_t)DIR_TOP * DIR_CHUNK || id > LEAK_SITE_MASK) goto fail;
    size_t need = (sizeof(site_rec) + n * sizeof(uintptr_t) + 15) & ~(size_t)15;
    if ((size_t)(rec_end - rec_cur) < need) {
        char *c = plat_map(REC_CHUNK);
        if (c == NULL) goto fail;
        rec_cur = c;
        rec_end = c + REC_CHUNK;
    }
    site_rec **chunk = atomic_load_explicit(&dir[id >> DIR_SHIFT], memory_order_relaxed);
    if (chunk == NULL) {
        chunk = plat_map(DIR_CHUNK * sizeof(site_rec *));
        if (chunk == NULL) goto fail;
        atomic_store_explicit(&dir[id >> DIR_SHIFT], chunk, memory_order_release);
    }
    site_rec *r = (site_rec *)rec_cur;
    rec_cur += need;
    r->hash = h;
    r->id = id;
    r->n = (uint16_t)n;
    r->full = (uint8_t)full;
    memcpy(r->f, f, n * sizeof *f);
    chunk[id & (DIR_CHUNK - 1)] = r;
    atomic_store_explicit(&nsites, id, memory_order_release);
    atomic_store_explicit(&t->slot[slot], r, memory_order_release);
    maybe_grow(t, id);
    alloc_unlock(&sites_lock);
    return id;
fail:
    alloc_unlock(&sites_lock);
    return 0;
}

static bool take_sample(void) {
    if (leak_sample_every <= 1) return true;
    uint64_t x = sample_rng;
    if (x == 0) x = plat_random_u64() | 1;
    x ^= x << 13; /* xorshift64 */
    x ^= x >> 7;
    x ^= x << 17;
    sample_rng = x;
    return x % leak_sample_every == 0;
}

/* How many of cgc's own frames sit on top of a captured stack: leak_site_capture and the
 * leak_* entry point (malloc and friends tail-call it). The walk asks for exactly this many
 * plus LEAK_MAX_FRAMES: each frame walked costs, and the old fixed slack of 6 walked frames
 * that were then dropped. A path with more of our frames (an entry point the compiler did
 * not tail-call) raises it, once, and walks again, so no site is cut short. Relaxed: a stale
 * value only costs that re-walk. */
#define OWN_FRAMES_MAX 8
static _Atomic unsigned own_frames = 2;

int leak_stacks_verify;
static _Atomic uint64_t verify_compared, verify_differed, verify_fallback;
static _Atomic int verify_shown;

/* The kept frames of a walk: ours (on top, and the thread-start wrapper at the bottom) say
 * nothing. *top: how many of ours were on top. */
static unsigned keep_frames(const uintptr_t *raw, int got, uintptr_t *f, int *top) {
    int t = 0;
    while (t < got && raw[t] >= self_lo && raw[t] < self_hi) t++;
    *top = t;
    unsigned n = 0;
    for (int i = t; i < got && n < LEAK_MAX_FRAMES; i++)
        if (raw[i] < self_lo || raw[i] >= self_hi) f[n++] = raw[i];
    return n;
}

static CGC_NOINLINE void verify_show(const uintptr_t *a, unsigned na, const uintptr_t *b, unsigned nb) {
    int expect = 0;
    if (!atomic_compare_exchange_strong_explicit(&verify_shown, &expect, 1, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    char buf[1200];
    size_t len = alloc_fmt(buf, sizeof buf, "cgc: leaks: stack check: first difference (walker %u frames, libunwind %u):\n", na, nb);
    for (unsigned i = 0; i < na || i < nb; i++)
        len += alloc_fmt(buf + len, sizeof buf - len, "    #%u 0x%lx 0x%lx\n", i,
                         (unsigned long)(i < na ? a[i] : 0), (unsigned long)(i < nb ? b[i] : 0));
    plat_write_stderr(buf, len);
}

uint32_t leak_site_capture(void *ra) {
    if (in_capture) return 0;
    uintptr_t f[LEAK_MAX_FRAMES];
    if (!take_sample() || self_hi == 0) {
        f[0] = (uintptr_t)ra;
        return intern(f, 1, 0);
    }
    uintptr_t raw[LEAK_MAX_FRAMES + OWN_FRAMES_MAX];
    int got, top;
    unsigned n;
    in_capture = 1;
    for (;;) {
        unsigned own = atomic_load_explicit(&own_frames, memory_order_relaxed);
        int want = LEAK_MAX_FRAMES + (int)own;
        bool fast = (got = leak_walk(raw, want)) >= 0;
        if (!fast) got = unw_backtrace((void **)raw, want);
        n = keep_frames(raw, got, f, &top);
        if (got == want && top > (int)own && top <= OWN_FRAMES_MAX) {
            atomic_store_explicit(&own_frames, (unsigned)top, memory_order_relaxed);
            continue;
        }
        if (leak_stacks_verify) {
            if (!fast) {
                atomic_fetch_add_explicit(&verify_fallback, 1, memory_order_relaxed);
            } else {
                uintptr_t raw2[LEAK_MAX_FRAMES + OWN_FRAMES_MAX], f2[LEAK_MAX_FRAMES];
                int top2, got2 = unw_backtrace((void **)raw2, want);
                unsigned n2 = keep_frames(raw2, got2, f2, &top2);
                atomic_fetch_add_explicit(&verify_compared, 1, memory_order_relaxed);
                if (n2 != n || memcmp(f, f2, n * sizeof *f) != 0) {
                    atomic_fetch_add_explicit(&verify_differed, 1, memory_order_relaxed);
                    verify_show(f, n, f2, n2);
                }
            }
        }
        break;
    }
    in_capture = 0;
    if (n == 0) {
        f[0] = (uintptr_t)ra;
        return intern(f, 1, 0);
    }
    return intern(f, n, 1);
}

void leak_sites_verify_counts(uint64_t out[3]) {
    out[0] = atomic_load_explicit(&verify_compared, memory_order_relaxed);
    out[1] = atomic_load_explicit(&verify_differed, memory_order_relaxed);
    out[2] = atomic_load_explicit(&verify_fallback, memory_order_relaxed);
}

void leak_sites_lock(bool take) {
    if (take) alloc_lock(&sites_lock);
    else alloc_unlock(&sites_lock);
}

const uintptr_t *leak_site_frames(uint32_t id, unsigned *n) {
    site_rec *r = id ? rec_of(id) : NULL;
    if (r == NULL) {
        *n = 0;
        return NULL;
    }
    *n = r->n;
    return r->f;
}

bool leak_site_full(uint32_t id) {
    site_rec *r = id ? rec_of(id) : NULL;
    return r && r->full;
}

uint32_t leak_sites_count(void) { return atomic_load_explicit(&nsites, memory_order_acquire); }

/* ---- the full symbol table (.symtab), for functions a module does not export ----------------
 * Only when dladdr has no exact answer, at report time. Files are mapped read-only (never
 * read with stdio, never malloc'd) and stay mapped in a small cache; a stripped file has no
 * .symtab and the answer stays module+offset. */
typedef struct elf_file {
    char path[256];
    const unsigned char *map;
    size_t size;
} elf_file;
static elf_file elf_cache[16];
static unsigned elf_next;

static const elf_file *elf_open(const char *path) {
    for (unsigned i = 0; i < 16; i++)
        if (elf_cache[i].map && strcmp(elf_cache[i].path, path) == 0) return &elf_cache[i];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    void *m = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(ElfW(Ehdr)))
        m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return NULL;
    elf_file *e = &elf_cache[elf_next++ % 16];
    if (e->map) munmap((void *)e->map, e->size);
    alloc_fmt(e->path, sizeof e->path, "%s", path);
    e->map = m;
    e->size = (size_t)st.st_size;
    return e;
}

/* The FUNC symbol of .symtab containing vaddr: its name and start, or NULL. */
static const char *symtab_find(const elf_file *e, uintptr_t vaddr, uintptr_t *start) {
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)e->map;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shoff == 0 || eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > e->size)
        return NULL;
    const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(e->map + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const ElfW(Shdr) *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > e->size || strs->sh_offset + strs->sh_size > e->size)
            return NULL;
        const ElfW(Sym) *sym = (const ElfW(Sym) *)(e->map + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof(ElfW(Sym));
        for (size_t k = 0; k < n; k++) {
            if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC || sym[k].st_size == 0) continue;
            if (vaddr < sym[k].st_value || vaddr >= sym[k].st_value + sym[k].st_size) continue;
            if (sym[k].st_name >= strs->sh_size) return NULL;
            *start = sym[k].st_value;
            return (const char *)(e->map + strs->sh_offset + sym[k].st_name);
        }
    }
    return NULL;
}

size_t leak_symbolize(uintptr_t ip, char *buf, size_t cap) {
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    /* ip is a return address: look up ip - 1, the call instruction's last byte. */
    if (dladdr1((void *)(ip - 1), &info, (void **)&sym, RTLD_DL_SYMENT) == 0 || !info.dli_fname)
        return alloc_fmt(buf, cap, "0x%lx", (unsigned long)ip);
    const char *mod = info.dli_fname[0] ? info.dli_fname : "(main program)";
    if (info.dli_sname && sym && info.dli_saddr && ip - 1 >= (uintptr_t)info.dli_saddr &&
        ip - 1 < (uintptr_t)info.dli_saddr + sym->st_size)
        return alloc_fmt(buf, cap, "%s+0x%lx (%s)", info.dli_sname,
                         (unsigned long)(ip - (uintptr_t)info.dli_saddr), mod);
    struct link_map *lm = NULL;
    if (dladdr1((void *)(ip - 1), &info, (void **)&lm, RTLD_DL_LINKMAP) != 0 && lm) {
        const elf_file *e = elf_open(lm->l_name && lm->l_name[0] ? lm->l_name : "/proc/self/exe");
        uintptr_t start;
        const char *name = e ? symtab_find(e, ip - 1 - lm->l_addr, &start) : NULL;
        if (name)
            return alloc_fmt(buf, cap, "%s+0x%lx (%s)", name,
                             (unsigned long)(ip - lm->l_addr - start), mod);
    }
    return alloc_fmt(buf, cap, "%s+0x%lx", mod, (unsigned long)(ip - (uintptr_t)info.dli_fbase));
}

bool leak_frame_module(uintptr_t ip, const char **module, uintptr_t *offset) {
    Dl_info info;
    if (dladdr((void *)(ip - 1), &info) == 0 || info.dli_fname == NULL) return false;
    *module = info.dli_fname;
    *offset = ip - (uintptr_t)info.dli_fbase;
    return true;
}

void leak_sites_fork(int what) {
    if (what == 0) alloc_lock(&sites_lock);
    else if (what == 1) alloc_unlock(&sites_lock);
    else {
        pthread_mutex_init(&sites_lock, NULL);
        alloc_nostop_leave();
    }
}
