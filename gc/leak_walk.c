/* gc/leak_walk.c — the stack walk behind full-stack allocation sites (CGC_LEAKS_STACKS=all).
 *
 * Why not libunwind alone: with every allocation's stack captured, unw_backtrace was most of
 * leak mode's cost (perf on perf/leak-cost's Python workload: ~1.0x the plain run's time for
 * ~20 frames a malloc; 0.05x per frame of depth). Its fast trace looks every frame up in a
 * 256 KiB per-thread hash table, and each lookup hangs on the return address just loaded:
 * one cache miss after another, in series.
 *
 * This walker does the same walk — x86-64, the frame forms libunwind's fast trace handles
 * (CFA = rsp or rbp + constant, return address at CFA - 8, rbp saved at CFA + constant or
 * untouched) — with two changes:
 *   - the rule of a return address comes from the module's .eh_frame (through
 *     .eh_frame_hdr's sorted table), parsed here once per address and kept in one table
 *     for the process (lock-free lookups, insertions under sites_lock);
 *   - each rule remembers the rule of the caller it was last seen with. A stack is mostly
 *     the one before it, so the walk usually checks "the return address read is that
 *     caller's" and goes on, with no hash probe — and the next rule's address is known
 *     before the return address arrives, so the loads overlap instead of queuing.
 * The hint is only a guess checked against the address actually read: a wrong or stale hint
 * costs a probe, never a wrong frame.
 *
 * Anything else — a frame without unwind information, a signal frame, a CFA or a register
 * rule given as a DWARF expression, a walk leaving the thread's stack, a thread leak mode
 * did not register, a full rule table — makes leak_walk return -1 and the caller uses
 * libunwind for the whole stack, so the result is libunwind's in every case (checked by
 * CGC_LEAKS_STACKS=verify, tests/leaks). Like libunwind, the rules assume code is not
 * unmapped and replaced at the same address (dlclose then dlopen) while the program runs.
 *
 * Never called in a signal handler (DESIGN §3.3); dl_iterate_phdr (a miss) takes the loader
 * lock, so, like unw_backtrace, this runs outside any no-stop region.
 */
#include "cgc/leak.h"
#include "cgc/gc.h"

#include <link.h>
#include <string.h>

#define RULES_CAP ((uint32_t)1 << 16) /* 24 B each, mapped lazily; half of it used at most */

enum { RULE_STEP = 1, RULE_LAST = 2, RULE_NONE = 3 };
#define RBP_SAME INT16_MIN /* rbp not saved by this frame: the caller's is the same */

typedef struct frame_rule {
    _Atomic uintptr_t ip;     /* the return address described; 0: free slot. Published last. */
    int32_t cfa_off;          /* CFA = (cfa_rbp ? rbp : rsp) + cfa_off */
    int16_t rbp_off;          /* the caller's rbp is at CFA + rbp_off, or RBP_SAME */
    uint8_t cfa_rbp;
    uint8_t kind;             /* RULE_STEP, RULE_LAST (outermost frame), RULE_NONE */
    _Atomic(struct frame_rule *) caller; /* hint: the caller's rule, last time */
} frame_rule;

static _Atomic(frame_rule *) rules; /* RULES_CAP entries, mapped at the first miss */
static _Atomic uint32_t nrules;      /* written under sites_lock */

static inline uint32_t rule_slot(uintptr_t ip) {
    return (uint32_t)((ip * 0x9e3779b97f4a7c15ull) >> 40) & (RULES_CAP - 1);
}

static frame_rule *rule_find(uintptr_t ip) {
    frame_rule *t = atomic_load_explicit(&rules, memory_order_acquire);
    if (t == NULL) return NULL;
    for (uint32_t i = rule_slot(ip);; i = (i + 1) & (RULES_CAP - 1)) {
        uintptr_t k = atomic_load_explicit(&t[i].ip, memory_order_acquire);
        if (k == ip) return &t[i];
        if (k == 0) return NULL;
    }
}

/* ---- .eh_frame ------------------------------------------------------------------------------ */
enum {
    PE_ABS = 0x00, PE_ULEB = 0x01, PE_U2 = 0x02, PE_U4 = 0x03, PE_U8 = 0x04, PE_SLEB = 0x09,
    PE_S2 = 0x0a, PE_S4 = 0x0b, PE_S8 = 0x0c, PE_PCREL = 0x10, PE_DATAREL = 0x30,
    PE_INDIRECT = 0x80, PE_OMIT = 0xff
};

typedef struct cursor {
    const uint8_t *p, *end;
    bool bad;
} cursor;

static uint64_t uleb(cursor *c) {
    uint64_t v = 0;
    for (unsigned sh = 0; c->p < c->end; sh += 7) {
        uint8_t b = *c->p++;
        if (sh < 64) v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) return v;
    }
    c->bad = true;
    return 0;
}

static int64_t sleb(cursor *c) {
    uint64_t v = 0;
    unsigned sh = 0;
    uint8_t b = 0x80;
    while (c->p < c->end && (b & 0x80)) {
        b = *c->p++;
        if (sh < 64) v |= (uint64_t)(b & 0x7f) << sh;
        sh += 7;
    }
    if (b & 0x80) c->bad = true;
    if (sh < 64 && (b & 0x40)) v |= ~(uint64_t)0 << sh;
    return (int64_t)v;
}

static uint64_t fixed(cursor *c, unsigned size) {
    if ((size_t)(c->end - c->p) < size) {
        c->bad = true;
        return 0;
    }
    uint64_t v = 0;
    memcpy(&v, c->p, size); /* little-endian */
    c->p += size;
    return v;
}

/* An encoded pointer (DW_EH_PE_*); datarel is relative to .eh_frame_hdr (its only use). */
static uintptr_t encoded(cursor *c, uint8_t enc, uintptr_t datarel) {
    const uint8_t *at = c->p;
    uint64_t v;
    switch (enc & 0x0f) {
    case PE_ABS: v = fixed(c, 8); break;
    case PE_ULEB: v = uleb(c); break;
    case PE_U2: v = fixed(c, 2); break;
    case PE_U4: v = fixed(c, 4); break;
    case PE_U8: v = fixed(c, 8); break;
    case PE_SLEB: v = (uint64_t)sleb(c); break;
    case PE_S2: v = (uint64_t)(int64_t)(int16_t)fixed(c, 2); break;
    case PE_S4: v = (uint64_t)(int64_t)(int32_t)fixed(c, 4); break;
    case PE_S8: v = fixed(c, 8); break;
    default: c->bad = true; return 0;
    }
    switch (enc & 0x70) {
    case 0: break;
    case PE_PCREL: v += (uintptr_t)at; break;
    case PE_DATAREL: v += datarel; break;
    default: c->bad = true;
    }
    if (enc & PE_INDIRECT) c->bad = true; /* never used for FDE addresses */
    return (uintptr_t)v;
}

/* The unwind state of one row of the CFA table, as far as this walker uses it. */
enum { DW_RBP = 6, DW_RSP = 7, DW_RA = 16 };
enum { HOW_UNSET, HOW_SAME, HOW_OFFSET, HOW_UNDEF, HOW_OTHER };
typedef struct row {
    int cfa_reg;     /* DW_RSP, DW_RBP, or -1 (anything else, an expression) */
    int64_t cfa_off;
    uint8_t rbp_how, ra_how;
    int64_t rbp_off, ra_off;
} row;

typedef struct cie_info {
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra_reg;
    uint8_t fde_enc;
    bool signal;
    bool has_aug; /* 'z': FDEs carry augmentation data */
    const uint8_t *insns, *end;
} cie_info;

static bool parse_cie(const uint8_t *p, const uint8_t *limit, cie_info *ci) {
    cursor c = {p, limit, false};
    uint64_t len = fixed(&c, 4);
    if (c.bad || len == 0 || len == 0xffffffffu || len > (uint64_t)(limit - c.p)) return false;
    c.end = c.p + len;
    if (fixed(&c, 4) != 0) return false; /* a CIE's id */
    uint8_t version = (uint8_t)fixed(&c, 1);
    if (version != 1 && version != 3) return false;
    const char *aug = (const char *)c.p;
    while (c.p < c.end && *c.p) c.p++;
    if (c.p >= c.end) return false;
    c.p++;
    ci->code_align = uleb(&c);
    ci->data_align = sleb(&c);
    ci->ra_reg = version == 1 ? fixed(&c, 1) : uleb(&c);
    ci->fde_enc = PE_ABS;
    ci->signal = false;
    ci->has_aug = aug[0] == 'z';
    if (aug[0] == 'z') {
        uint64_t alen = uleb(&c);
        if (c.bad || alen > (uint64_t)(c.end - c.p)) return false;
        cursor a = {c.p, c.p + alen, false};
        for (const char *s = aug + 1; *s; s++) {
            if (*s == 'R') ci->fde_enc = (uint8_t)fixed(&a, 1);
            else if (*s == 'S') ci->signal = true;
            else if (*s == 'L') fixed(&a, 1);
            else if (*s == 'P') {
                uint8_t penc = (uint8_t)fixed(&a, 1);
                encoded(&a, penc & 0x7f, 0); /* skipped: its value is not needed */
            } else if (*s != 'B') return false;
        }
        if (a.bad) return false;
        c.p += alen;
    } else if (aug[0] != 0) return false;
    if (c.bad) return false;
    ci->insns = c.p;
    ci->end = c.end;
    return true;
}

/* Run CFA instructions [p, end) from the row at *loc while the next row starts at or before
 * target. init: the row after the CIE's instructions (for DW_CFA_restore). */
static bool run_cfa(const cie_info *ci, const uint8_t *p, const uint8_t *end, uintptr_t *loc,
                    uintptr_t target, row *r, const row *init) {
    row stack[8];
    unsigned depth = 0;
    cursor c = {p, end, false};
    while (c.p < c.end && !c.bad) {
        uint8_t op = *c.p++;
        uint64_t reg = 0, delta = 0;
        int64_t off = 0;
        int how = -1;
        switch (op & 0xc0) {
        case 0x40: delta = (uint64_t)(op & 0x3f) * ci->code_align; goto advance;
        case 0x80: reg = op & 0x3f; off = (int64_t)uleb(&c) * ci->data_align; how = HOW_OFFSET; goto set;
        case 0xc0: reg = op & 0x3f; goto restore;
        }
        switch (op) {
        case 0x00: continue;                                                /* nop */
        case 0x01: {                                                        /* set_loc */
            uintptr_t to = encoded(&c, ci->fde_enc, 0);
            if (to > target) return !c.bad;
            *loc = to;
            continue;
        }
        case 0x02: delta = fixed(&c, 1) * ci->code_align; goto advance;
        case 0x03: delta = fixed(&c, 2) * ci->code_align; goto advance;
        case 0x04: delta = fixed(&c, 4) * ci->code_align; goto advance;
        case 0x05: reg = uleb(&c); off = (int64_t)uleb(&c) * ci->data_align; how = HOW_OFFSET; goto set;
        case 0x06: reg = uleb(&c); goto restore;
        case 0x07: reg = uleb(&c); how = HOW_UNDEF; goto set;
        case 0x08: reg = uleb(&c); how = HOW_SAME; goto set;
        case 0x09: reg = uleb(&c); uleb(&c); how = HOW_OTHER; goto set;     /* register */
        case 0x0a:                                                          /* remember_state */
            if (depth == 8) return false;
            stack[depth++] = *r;
            continue;
        case 0x0b:                                                          /* restore_state */
            if (depth == 0) return false;
            *r = stack[--depth]; /* the CFA rule too, as GCC's unwinder and libunwind do */
            continue;
        case 0x0c: r->cfa_reg = (int)uleb(&c); r->cfa_off = (int64_t)uleb(&c); goto cfa;
        case 0x0d: r->cfa_reg = (int)uleb(&c); goto cfa;
        case 0x0e: r->cfa_off = (int64_t)uleb(&c); continue;
        case 0x0f: c.p += uleb(&c); r->cfa_reg = -1; continue;             /* def_cfa_expression */
        case 0x10: reg = uleb(&c); c.p += uleb(&c); how = HOW_OTHER; goto set; /* expression */
        case 0x11: reg = uleb(&c); off = sleb(&c) * ci->data_align; how = HOW_OFFSET; goto set;
        case 0x12: r->cfa_reg = (int)uleb(&c); r->cfa_off = sleb(&c) * ci->data_align; goto cfa;
        case 0x13: r->cfa_off = sleb(&c) * ci->data_align; continue;
        case 0x14: reg = uleb(&c); uleb(&c); how = HOW_OTHER; goto set;     /* val_offset */
        case 0x15: reg = uleb(&c); sleb(&c); how = HOW_OTHER; goto set;     /* val_offset_sf */
        case 0x16: reg = uleb(&c); c.p += uleb(&c); how = HOW_OTHER; goto set; /* val_expression */
        case 0x2e: uleb(&c); continue;                                      /* GNU_args_size */
        case 0x2f: reg = uleb(&c); off = -(int64_t)uleb(&c) * ci->data_align; how = HOW_OFFSET; goto set;
        default: return false;
        }
    advance:
        if (*loc + delta > target) return !c.bad;
        *loc += delta;
        continue;
    cfa:
        if (r->cfa_reg != DW_RSP && r->cfa_reg != DW_RBP) r->cfa_reg = -1;
        continue;
    restore:
        if (init == NULL) return false; /* restore inside the CIE's own instructions */
        if (reg == DW_RBP) {
            r->rbp_how = init->rbp_how;
            r->rbp_off = init->rbp_off;
        } else if (reg == ci->ra_reg) {
            r->ra_how = init->ra_how;
            r->ra_off = init->ra_off;
        }
        continue;
    set:
        if (reg == DW_RBP) {
            r->rbp_how = (uint8_t)how;
            r->rbp_off = off;
        } else if (reg == ci->ra_reg) {
            r->ra_how = (uint8_t)how;
            r->ra_off = off;
        } else if (reg == DW_RSP) {
            r->cfa_reg = -1; /* rsp restored from memory: not a form this walker follows */
        }
        continue;
    }
    return !c.bad && c.p <= c.end;
}

/* The rule for return address ip from the FDE covering ip - 1 in the module's .eh_frame. */
static void rule_from_fde(const uint8_t *fde, const uint8_t *eh_end, uintptr_t pc, frame_rule *out) {
    cursor c = {fde, eh_end, false};
    uint64_t len = fixed(&c, 4);
    if (c.bad || len == 0 || len == 0xffffffffu || len > (uint64_t)(eh_end - c.p)) return;
    const uint8_t *fde_end = c.p + len;
    c.end = fde_end;
    const uint8_t *idp = c.p;
    uint32_t id = (uint32_t)fixed(&c, 4);
    if (id == 0 || (uintptr_t)id > (uintptr_t)idp) return;
    cie_info ci;
    if (!parse_cie(idp - id, eh_end, &ci) || ci.signal || ci.ra_reg != DW_RA) return;
    uintptr_t start = encoded(&c, ci.fde_enc, 0);
    uintptr_t range = encoded(&c, ci.fde_enc & 0x0f, 0);
    if (c.bad || pc < start || pc - start >= range) return;
    if (ci.has_aug) { /* the FDE's augmentation data (an LSDA pointer): skipped */
        cursor a = c;
        uint64_t alen = uleb(&a);
        if (a.bad || alen > (uint64_t)(fde_end - a.p)) return;
        c.p = a.p + alen;
    }
    row r = {.cfa_reg = -1, .rbp_how = HOW_SAME, .ra_how = HOW_UNSET};
    uintptr_t loc = start;
    if (!run_cfa(&ci, ci.insns, ci.end, &loc, UINTPTR_MAX, &r, NULL)) return;
    row init = r;
    loc = start;
    if (!run_cfa(&ci, c.p, fde_end, &loc, pc, &r, &init)) return;
    if (r.ra_how == HOW_UNDEF) {
        out->kind = RULE_LAST; /* the outermost frame (_start, clone): the walk ends here */
        return;
    }
    if (r.cfa_reg < 0 || r.cfa_off <= 0 || r.cfa_off > INT32_MAX || r.ra_how != HOW_OFFSET ||
        r.ra_off != -8)
        return;
    if (r.rbp_how == HOW_SAME) out->rbp_off = RBP_SAME;
    else if (r.rbp_how == HOW_OFFSET && r.rbp_off < 0 && r.rbp_off > INT16_MIN) out->rbp_off = (int16_t)r.rbp_off;
    else return;
    out->cfa_off = (int32_t)r.cfa_off;
    out->cfa_rbp = r.cfa_reg == DW_RBP;
    out->kind = RULE_STEP;
}

typedef struct find_arg {
    uintptr_t pc;
    frame_rule *out;
    bool found_module;
} find_arg;

static int find_cb(struct dl_phdr_info *info, size_t size, void *p) {
    (void)size;
    find_arg *a = p;
    const ElfW(Phdr) *eh = NULL;
    bool in = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && a->pc >= lo && a->pc - lo < ph->p_memsz) in = true;
        else if (ph->p_type == PT_GNU_EH_FRAME) eh = ph;
    }
    if (!in) return 0;
    a->found_module = true;
    if (eh == NULL) return 1;
    /* .eh_frame_hdr: version 1, then the encodings of eh_frame_ptr, fde_count and the table;
     * the table is (initial location, FDE address) pairs sorted by location. */
    const uint8_t *hdr = (const uint8_t *)(info->dlpi_addr + eh->p_vaddr);
    cursor c = {hdr, hdr + eh->p_memsz, false};
    if (fixed(&c, 1) != 1) return 1;
    uint8_t ptr_enc = (uint8_t)fixed(&c, 1), count_enc = (uint8_t)fixed(&c, 1),
            table_enc = (uint8_t)fixed(&c, 1);
    if (c.bad || ptr_enc == PE_OMIT || count_enc == PE_OMIT || table_enc != (PE_DATAREL | PE_S4))
        return 1;
    encoded(&c, ptr_enc, (uintptr_t)hdr); /* .eh_frame's address: the table suffices */
    uintptr_t count = encoded(&c, count_enc, (uintptr_t)hdr);
    if (c.bad || count == 0 || count > (uintptr_t)(c.end - c.p) / 8) return 1;
    const int32_t *table = (const int32_t *)c.p;
    uintptr_t lo = 0, hi = count;
    while (hi - lo > 1) { /* the last entry starting at or before pc */
        uintptr_t mid = (lo + hi) / 2;
        if ((uintptr_t)hdr + (intptr_t)table[2 * mid] <= a->pc) lo = mid;
        else hi = mid;
    }
    if ((uintptr_t)hdr + (intptr_t)table[2 * lo] > a->pc) return 1;
    const uint8_t *fde = hdr + (intptr_t)table[2 * lo + 1];
    /* .eh_frame's size is not recorded in the header: the parse is bounded by the FDE's and
     * the CIE's own lengths (and this generous limit). */
    rule_from_fde(fde, fde + ((size_t)1 << 24), a->pc, a->out);
    return 1;
}

/* Find, or work out and record, the rule of return address ip. NULL if the table is full or
 * cannot be mapped. */
static CGC_NOINLINE frame_rule *rule_get(uintptr_t ip) {
    frame_rule *r = rule_find(ip);
    if (r) return r;
    /* A full table: libunwind, without first paying for a lookup that cannot be kept. */
    if (atomic_load_explicit(&nrules, memory_order_relaxed) >= RULES_CAP / 2) return NULL;
    frame_rule tmp = {.kind = RULE_NONE};
    find_arg a = {.pc = ip - 1, .out = &tmp};
    dl_iterate_phdr(find_cb, &a); /* outside sites_lock: it takes the loader lock */
    leak_sites_lock(true);
    frame_rule *t = atomic_load_explicit(&rules, memory_order_relaxed);
    if (t == NULL) {
        t = plat_map(RULES_CAP * sizeof(frame_rule));
        atomic_store_explicit(&rules, t, memory_order_release);
    }
    r = t ? rule_find(ip) : NULL;
    /* Half full: no more rules (probes stay short); new addresses go to libunwind. */
    if (r == NULL && t && atomic_load_explicit(&nrules, memory_order_relaxed) < RULES_CAP / 2) {
        uint32_t i = rule_slot(ip);
        while (atomic_load_explicit(&t[i].ip, memory_order_relaxed)) i = (i + 1) & (RULES_CAP - 1);
        r = &t[i];
        r->cfa_off = tmp.cfa_off;
        r->rbp_off = tmp.rbp_off;
        r->cfa_rbp = tmp.cfa_rbp;
        r->kind = tmp.kind;
        atomic_store_explicit(&nrules, atomic_load_explicit(&nrules, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_store_explicit(&r->ip, ip, memory_order_release); /* publishes the fields */
    }
    leak_sites_lock(false);
    return r;
}

/* Walk the stack of the calling thread: out[0] is this function's return address, then
 * each caller's, up to max. Returns the count, or -1: use libunwind. Taking the frame
 * address gives this function a frame pointer (GCC and Clang both set one up when it is
 * taken), so rbp holds our CFA - 16 and the caller's rbp: where the walk starts. */
__attribute__((noinline, no_sanitize_address)) int leak_walk(uintptr_t *out, int max) {
    gc_thread *self = gc_self;
    if (self == NULL || self->stack_hi == 0) return -1;
    uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t rsp = (uintptr_t)(fp + 2), rbp = fp[0], rip = (uintptr_t)__builtin_return_address(0);
    uintptr_t hi = self->stack_hi;
    if (rsp < self->stack_lo || rsp >= hi) return -1; /* on a signal stack, say */
    frame_rule *r = NULL;
    int n = 0;
    while (n < max) {
        out[n++] = rip;
        frame_rule *h = r ? atomic_load_explicit(&r->caller, memory_order_relaxed) : NULL;
        if (h && atomic_load_explicit(&h->ip, memory_order_acquire) == rip) {
            r = h;
        } else {
            frame_rule *prev = r;
            r = rule_get(rip);
            if (r == NULL) return -1;
            if (prev) atomic_store_explicit(&prev->caller, r, memory_order_relaxed);
        }
        if (r->kind == RULE_LAST) break;
        if (r->kind != RULE_STEP) return -1;
        uintptr_t cfa = (r->cfa_rbp ? rbp : rsp) + (uintptr_t)(intptr_t)r->cfa_off;
        /* Every read stays inside this thread's stack (a rule applied to the wrong frame
         * would otherwise read anywhere); libunwind gets the odd case. */
        if (cfa <= rsp || cfa > hi || (r->rbp_off != RBP_SAME && cfa + (intptr_t)r->rbp_off < rsp))
            return -1;
        rip = ((const uintptr_t *)cfa)[-1];
        if (r->rbp_off != RBP_SAME) rbp = *(const uintptr_t *)(cfa + (intptr_t)r->rbp_off);
        rsp = cfa;
        if (rip < 0x4000) break; /* where libunwind's trace stops too */
    }
    return n;
}
