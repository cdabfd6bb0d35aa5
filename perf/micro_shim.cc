// micro_shim.cc — registers the C micro benchmark bodies (micro.c) with google-benchmark.
//
// The bodies are C on purpose: the allocator under test is chosen with LD_PRELOAD, and we
// want exactly the malloc/free calls written in micro.c, not whatever a C++ compiler makes
// of new/delete.  Items/s counters let runs with different batch sizes be compared.
#include <benchmark/benchmark.h>

#include "micro.h"

namespace {

void BM_pairs(benchmark::State &state)
{
    const size_t size = static_cast<size_t>(state.range(0));
    for (auto _ : state) micro_pairs(size, 1);
    state.SetItemsProcessed(state.iterations());
}
// 8 B .. 1 MiB by powers of 4: every size-class regime (tiny, small, medium, large/mmap).
BENCHMARK(BM_pairs)->RangeMultiplier(4)->Range(8, 1 << 20);

void BM_batch(benchmark::State &state)
{
    const size_t size = static_cast<size_t>(state.range(0));
    const size_t n = static_cast<size_t>(state.range(1));
    for (auto _ : state) micro_batch(size, n, 1);
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
// Allocate-N-then-free-N defeats a one-block free-list cache: the allocator has to carve
// fresh blocks and take back a full set of them.
BENCHMARK(BM_batch)
    ->ArgsProduct({{16, 64, 256, 1024, 4096}, {1000}})
    ->Args({64, 100000});

constexpr long kProdConsItems = 1 << 15;

void BM_prodcons(benchmark::State &state)
{
    const size_t size = static_cast<size_t>(state.range(0));
    for (auto _ : state) micro_prodcons(size, kProdConsItems);
    state.SetItemsProcessed(state.iterations() * kProdConsItems);
}
// Every block is freed by a thread that did not allocate it (remote frees).
BENCHMARK(BM_prodcons)->Arg(16)->Arg(256)->Arg(4096)->UseRealTime();

constexpr size_t kGrowLimit = 4 << 20;

void BM_realloc_grow(benchmark::State &state)
{
    const size_t step = static_cast<size_t>(state.range(0));
    for (auto _ : state) micro_realloc_grow(step, kGrowLimit, 1);
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kGrowLimit / step));
}
// A buffer (string builder, vector) grown to 4 MiB: in-place growth and, past the
// large-object threshold, remapping matter more than the per-call cost.
BENCHMARK(BM_realloc_grow)->Arg(64)->Arg(1024)->Arg(16384);

} // namespace

BENCHMARK_MAIN();
