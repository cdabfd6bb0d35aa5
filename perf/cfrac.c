/* cfrac.c — a cfrac-like single-threaded workload: continued-fraction factoring steps
 * with immutable, heap-allocated big numbers.
 *
 * Models the classic cfrac benchmark (and, more generally, programs built on a small
 * immutable-value library: bignums, strings, expression trees): every arithmetic result
 * is a fresh malloc'd object of 8..100 bytes that usually dies a few operations later,
 * while a slowly growing set of long-lived records (the smooth relations, with their
 * exponent vectors) is interleaved with them.  Throughput is dominated by small
 * malloc/free pairs of mixed sizes in one thread.
 *
 * For several numbers N it expands sqrt(N) as a continued fraction
 *     m' = d*a - m,   d' = (N - m'^2) / d,   a' = (a0 + m') / d'
 * keeps the convergent numerators P mod N, checks the invariant P^2 = +-d' (mod N) at
 * every step (so an allocator that corrupts memory is caught), and trial-divides d' over
 * a small factor base, keeping the smooth ones.  Big numbers use 32-bit limbs; division
 * is Knuth's algorithm D.
 *
 * usage: cfrac [scale=1]     (scale multiplies the number of steps)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE_STEPS 900000L
#define NUMBERS 6          /* steps are spread over this many N */
#define FACTOR_BASE 48
#define SMOOTH_BITS 24  /* keep a relation when this much of Q factors */

typedef struct big {
    uint32_t n;    /* limbs in use; 0 means zero; d[n-1] != 0 */
    uint32_t d[];
} big;

static void die(const char *msg)
{
    fprintf(stderr, "cfrac: %s\n", msg);
    exit(2);
}

static big *big_alloc(uint32_t n)
{
    big *b = malloc(sizeof(big) + sizeof(uint32_t) * (n ? n : 1));
    if (!b) die("out of memory");
    b->n = n;
    return b;
}

static big *big_norm(big *b)
{
    while (b->n && b->d[b->n - 1] == 0) b->n--;
    return b;
}

static big *big_from_u64(uint64_t v)
{
    big *b = big_alloc(2);
    b->d[0] = (uint32_t)v;
    b->d[1] = (uint32_t)(v >> 32);
    return big_norm(b);
}

static big *big_copy(const big *a)
{
    big *b = big_alloc(a->n);
    memcpy(b->d, a->d, sizeof(uint32_t) * a->n);
    return b;
}

static int big_cmp(const big *a, const big *b)
{
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (uint32_t i = a->n; i-- > 0;)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static big *big_add(const big *a, const big *b)
{
    if (a->n < b->n) { const big *t = a; a = b; b = t; }
    big *r = big_alloc(a->n + 1);
    uint64_t c = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        c += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
        r->d[i] = (uint32_t)c;
        c >>= 32;
    }
    r->d[a->n] = (uint32_t)c;
    return big_norm(r);
}

static big *big_sub(const big *a, const big *b) /* requires a >= b */
{
    big *r = big_alloc(a->n);
    int64_t borrow = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        int64_t t = (int64_t)a->d[i] - (i < b->n ? b->d[i] : 0) - borrow;
        borrow = t < 0;
        r->d[i] = (uint32_t)(t + (borrow ? (int64_t)1 << 32 : 0));
    }
    if (borrow) die("big_sub underflow");
    return big_norm(r);
}

static big *big_mul(const big *a, const big *b)
{
    if (!a->n || !b->n) return big_alloc(0);
    big *r = big_alloc(a->n + b->n);
    memset(r->d, 0, sizeof(uint32_t) * r->n);
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t c = 0;
        for (uint32_t j = 0; j < b->n; j++) {
            c += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
            r->d[i + j] = (uint32_t)c;
            c >>= 32;
        }
        r->d[i + b->n] = (uint32_t)c;
    }
    return big_norm(r);
}

/* Quotient by a single limb; *rem gets the remainder. */
static big *big_divmod_small(const big *a, uint32_t m, uint32_t *rem)
{
    big *q = big_alloc(a->n);
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;) {
        uint64_t cur = (r << 32) | a->d[i];
        q->d[i] = (uint32_t)(cur / m);
        r = cur % m;
    }
    if (rem) *rem = (uint32_t)r;
    return big_norm(q);
}

static uint32_t big_mod_small(const big *a, uint32_t m)
{
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;) r = ((r << 32) | a->d[i]) % m;
    return (uint32_t)r;
}

/* q = u / v, *rem = u % v (either output may be NULL).  Knuth vol. 2, 4.3.1, algorithm D,
 * following the presentation of Hacker's Delight (divmnu).  The normalized copies of u
 * and v are heap temporaries, as in cfrac's own library. */
static big *big_divmod(const big *u, const big *v, big **rem)
{
    if (!v->n) die("division by zero");
    if (big_cmp(u, v) < 0) {
        if (rem) *rem = big_copy(u);
        return big_alloc(0);
    }
    if (v->n == 1) {
        uint32_t r;
        big *q = big_divmod_small(u, v->d[0], &r);
        if (rem) *rem = big_from_u64(r);
        return q;
    }
    uint32_t m = u->n, n = v->n;
    int s = __builtin_clz(v->d[n - 1]);
    big *vn = big_alloc(n), *un = big_alloc(m + 1);
    for (uint32_t i = n - 1; i > 0; i--)
        vn->d[i] = (v->d[i] << s) | (s ? v->d[i - 1] >> (32 - s) : 0);
    vn->d[0] = v->d[0] << s;
    un->d[m] = s ? u->d[m - 1] >> (32 - s) : 0;
    for (uint32_t i = m - 1; i > 0; i--)
        un->d[i] = (u->d[i] << s) | (s ? u->d[i - 1] >> (32 - s) : 0);
    un->d[0] = u->d[0] << s;

    big *q = big_alloc(m - n + 1);
    const uint64_t B = (uint64_t)1 << 32;
    for (uint32_t j = m - n + 1; j-- > 0;) {
        uint64_t num = ((uint64_t)un->d[j + n] << 32) | un->d[j + n - 1];
        uint64_t qhat = num / vn->d[n - 1], rhat = num % vn->d[n - 1];
        while (qhat >= B || qhat * vn->d[n - 2] > ((rhat << 32) | un->d[j + n - 2])) {
            qhat--;
            rhat += vn->d[n - 1];
            if (rhat >= B) break;
        }
        int64_t t, k = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t p = qhat * vn->d[i];
            t = (int64_t)un->d[i + j] - k - (int64_t)(p & 0xffffffffu);
            un->d[i + j] = (uint32_t)t;
            k = (int64_t)(p >> 32) - (t >> 32);
        }
        t = (int64_t)un->d[j + n] - k;
        un->d[j + n] = (uint32_t)t;
        q->d[j] = (uint32_t)qhat;
        if (t < 0) { /* qhat was one too large (rare): add v back */
            q->d[j]--;
            uint64_t c = 0;
            for (uint32_t i = 0; i < n; i++) {
                c += (uint64_t)un->d[i + j] + vn->d[i];
                un->d[i + j] = (uint32_t)c;
                c >>= 32;
            }
            un->d[j + n] += (uint32_t)c;
        }
    }
    if (rem) {
        big *r = big_alloc(n);
        for (uint32_t i = 0; i < n; i++)
            r->d[i] = (un->d[i] >> s) | (s ? un->d[i + 1] << (32 - s) : 0);
        *rem = big_norm(r);
    }
    free(vn);
    free(un);
    return big_norm(q);
}

static big *big_mod(const big *a, const big *m)
{
    big *r;
    free(big_divmod(a, m, &r));
    return r;
}

/* floor(sqrt(a)) by Newton's iteration from above; every iterate is a new object. */
static big *big_isqrt(const big *a)
{
    if (!a->n) return big_alloc(0);
    /* Start at 2^(ceil(bits/2)) >= sqrt(a). */
    uint32_t bits = 32 * (a->n - 1) + (32 - (uint32_t)__builtin_clz(a->d[a->n - 1]));
    uint32_t e = (bits + 1) / 2;
    big *x = big_alloc(e / 32 + 1);
    memset(x->d, 0, sizeof(uint32_t) * x->n);
    x->d[e / 32] = 1u << (e % 32);
    big_norm(x);
    for (;;) {
        big *q = big_divmod(a, x, NULL);
        big *s = big_add(x, q);
        uint32_t dummy;
        big *y = big_divmod_small(s, 2, &dummy);
        free(q);
        free(s);
        if (big_cmp(y, x) >= 0) {
            free(y);
            return x;
        }
        free(x);
        x = y;
    }
}

static uint64_t big_hash(const big *a)
{
    uint64_t h = 0xcbf29ce484222325ull ^ a->n;
    for (uint32_t i = 0; i < a->n; i++) h = (h ^ a->d[i]) * 0x100000001b3ull;
    return h;
}

/* A smooth relation P^2 = +-Q (mod N) with Q fully factored over the factor base: lives
 * until the end of its number, like cfrac's relation matrix rows. */
typedef struct relation {
    struct relation *next;
    big *p;
    big *cofactor;  /* the part of Q left after trial division */
    uint8_t expo[]; /* FACTOR_BASE exponents */
} relation;

static uint32_t primes[FACTOR_BASE];
static struct { uint32_t prod; int first, last; } groups[FACTOR_BASE];
static int ngroups;

static void make_primes(void)
{
    uint32_t n = 0;
    for (uint32_t c = 2; n < FACTOR_BASE; c++) {
        int prime = 1;
        for (uint32_t d = 2; d * d <= c; d++)
            if (c % d == 0) { prime = 0; break; }
        if (prime) primes[n++] = c;
    }
    for (int i = 0; i < FACTOR_BASE;) { /* consecutive primes whose product fits 32 bits */
        uint64_t prod = 1;
        groups[ngroups].first = i;
        while (i < FACTOR_BASE && prod * primes[i] <= UINT32_MAX) prod *= primes[i++];
        groups[ngroups].prod = (uint32_t)prod;
        groups[ngroups++].last = i;
    }
}

/* A deterministic odd N with `limbs` limbs that is not a perfect square (cheap check: the
 * continued fraction stops when d becomes 1 anyway). */
static big *make_n(uint32_t limbs, uint64_t *seed)
{
    big *b = big_alloc(limbs);
    for (uint32_t i = 0; i < limbs; i++) {
        uint64_t z = (*seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        b->d[i] = (uint32_t)(z ^ (z >> 31));
    }
    b->d[0] |= 1;
    b->d[limbs - 1] |= 0x80000000u;
    return b;
}

/* Runs `steps` continued-fraction steps on N; returns a hash of everything seen. */
static uint64_t run_number(const big *N, long steps, long *smooth_out)
{
    uint64_t h = big_hash(N);
    big *a0 = big_isqrt(N);
    big *m = big_alloc(0), *d = big_from_u64(1), *a = big_copy(a0);
    big *p_prev = big_from_u64(1), *p = big_mod(a0, N); /* P_{-1}, P_0 */
    relation *rels = NULL;
    long smooth = 0;

    for (long k = 1; k <= steps; k++) {
        /* m' = d*a - m; d' = (N - m'^2) / d; a' = (a0 + m') / d' */
        big *da = big_mul(d, a);
        big *m2 = big_sub(da, m);
        big *mm = big_mul(m2, m2);
        big *num = big_sub(N, mm);
        big *d2 = big_divmod(num, d, NULL);
        big *s = big_add(a0, m2);
        big *a2 = big_divmod(s, d2, NULL);
        free(da); free(mm); free(num); free(s);
        free(m); free(d); free(a);
        m = m2; d = d2; a = a2;
        h = (h ^ big_hash(a)) * 0x100000001b3ull;

        /* Invariant: P_{k-1}^2 = (-1)^k d_k (mod N). */
        big *pp = big_mul(p, p);
        big *r = big_mod(pp, N);
        big *want = (k & 1) ? big_sub(N, d) : big_copy(d);
        if (big_cmp(r, want) != 0) die("invariant P^2 = +-Q (mod N) violated");
        free(pp); free(r); free(want);

        /* Trial division of Q = d over the factor base, one multi-limb remainder per
         * group of primes (keeps the arithmetic from drowning the allocator).  Like
         * cfrac's large-prime variation, a Q whose smooth part has at least SMOOTH_BITS
         * bits is kept as a (partial) relation. */
        uint8_t expo[FACTOR_BASE] = {0};
        big *q = big_copy(d);
        uint32_t smooth_bits = 0;
        for (int g = 0; g < ngroups; g++) {
            uint32_t rg = big_mod_small(q, groups[g].prod);
            for (int i = groups[g].first; i < groups[g].last; i++) {
                if (rg % primes[i]) continue;
                uint32_t rem = 0;
                while (rem == 0) {
                    big *t = big_divmod_small(q, primes[i], &rem);
                    if (rem) {
                        free(t);
                        break;
                    }
                    free(q);
                    q = t;
                    expo[i]++;
                    smooth_bits += 32 - (uint32_t)__builtin_clz(primes[i]);
                }
            }
        }
        if (smooth_bits >= SMOOTH_BITS) {
            relation *rel = malloc(sizeof(relation) + FACTOR_BASE);
            if (!rel) die("out of memory");
            rel->p = big_copy(p);
            rel->cofactor = q;
            q = NULL;
            memcpy(rel->expo, expo, FACTOR_BASE);
            rel->next = rels;
            rels = rel;
            smooth++;
        }
        free(q);

        /* P_k = (a_k * P_{k-1} + P_{k-2}) mod N */
        big *ap = big_mul(a, p);
        big *sum = big_add(ap, p_prev);
        big *pn = big_mod(sum, N);
        free(ap); free(sum); free(p_prev);
        p_prev = p;
        p = pn;

        if (d->n == 1 && d->d[0] == 1) break; /* end of the period */
    }

    while (rels) {
        relation *next = rels->next;
        h = (h ^ big_hash(rels->p)) * 0x100000001b3ull;
        for (int i = 0; i < FACTOR_BASE; i++) h = (h ^ rels->expo[i]) * 0x100000001b3ull;
        h = (h ^ big_hash(rels->cofactor)) * 0x100000001b3ull;
        free(rels->p);
        free(rels->cofactor);
        free(rels);
        rels = next;
    }
    free(a0); free(m); free(d); free(a); free(p_prev); free(p);
    *smooth_out += smooth;
    return h;
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    if (scale <= 0) {
        fprintf(stderr, "usage: cfrac [scale>0]\n");
        return 1;
    }
    long steps = (long)(BASE_STEPS * scale / NUMBERS);
    if (steps < 1) steps = 1;
    make_primes();

    uint64_t seed = 0xcf7ac;
    uint64_t h = 0;
    long smooth = 0;
    for (int i = 0; i < NUMBERS; i++) {
        /* 128..288-bit N: object sizes shift from number to number. */
        big *N = make_n(4 + (uint32_t)i, &seed);
        h = h * 31 + run_number(N, steps, &smooth);
        free(N);
    }
    printf("cfrac numbers=%d steps=%ld smooth=%ld checksum=%016llx\n", NUMBERS,
           steps * NUMBERS, smooth, (unsigned long long)h);
    return 0;
}
