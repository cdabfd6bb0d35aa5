// new/delete of many sizes, STL containers, exceptions, and objects handed between
// threads so most deletes happen on a thread other than the allocating one. Prints a
// checksum that does not depend on scheduling (each object is consumed exactly once
// and the per-object values are summed).
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

struct Payload {
    uint64_t id;
    std::string text;
    std::vector<uint32_t> data;
    std::unique_ptr<char[]> raw;
    size_t raw_len;
    explicit Payload(uint64_t i)
        : id(i), text("payload-" + std::to_string(i) + std::string(i % 300, 'x')),
          data(i % 1000), raw(new char[(i * 37) % 70000 + 1]), raw_len((i * 37) % 70000 + 1) {
        for (size_t k = 0; k < data.size(); k++) data[k] = static_cast<uint32_t>(i * 31 + k);
        for (size_t k = 0; k < raw_len; k++) raw[k] = static_cast<char>(i + k);
    }
    uint64_t check() const { // throws if the content was corrupted
        for (size_t k = 0; k < data.size(); k++)
            if (data[k] != static_cast<uint32_t>(id * 31 + k)) throw std::runtime_error("data corrupted");
        for (size_t k = 0; k < raw_len; k++)
            if (raw[k] != static_cast<char>(id + k)) throw std::runtime_error("raw corrupted");
        return id * 1000003u + text.size() + data.size() + raw_len;
    }
};

struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::unique_ptr<Payload>> q;
    void push(std::unique_ptr<Payload> p) {
        { std::lock_guard<std::mutex> g(mu); q.push_back(std::move(p)); }
        cv.notify_one();
    }
    std::unique_ptr<Payload> pop() {
        std::unique_lock<std::mutex> g(mu);
        cv.wait(g, [&] { return !q.empty(); });
        auto p = std::move(q.front());
        q.pop_front();
        return p;
    }
};

constexpr int kThreads = 6;
constexpr uint64_t kPerThread = 6000;
constexpr uint64_t kLag = 64; // objects in flight per queue: bounds memory use

// Thread t produces objects for thread (t+1)%n and consumes those of (t-1)%n.
void worker(int t, std::vector<Queue> &qs, uint64_t &sum) {
    uint64_t s = 0;
    Queue &out = qs[(t + 1) % kThreads], &in = qs[t];
    for (uint64_t i = 0; i < kPerThread; i++) {
        out.push(std::make_unique<Payload>(t * kPerThread + i));
        if (i >= kLag) s += in.pop()->check();
    }
    for (uint64_t i = 0; i < kLag; i++) s += in.pop()->check();
    sum = s;
}

uint64_t single_threaded() {
    uint64_t s = 0;
    std::map<std::string, std::vector<std::string>> m;
    std::unordered_map<uint64_t, std::string> um;
    for (int i = 0; i < 50000; i++) {
        m["k" + std::to_string(i % 1013)].push_back(std::string(i % 97, static_cast<char>('a' + i % 26)));
        um[static_cast<uint64_t>(i) * 2654435761u] = std::to_string(i);
        if (i % 3 == 0) um.erase(static_cast<uint64_t>(i / 2) * 2654435761u);
    }
    for (auto &kv : m)
        for (auto &v : kv.second) s += v.size() + kv.first.size();
    for (int i = 0; i < 50000; i++) {
        auto it = um.find(static_cast<uint64_t>(i) * 2654435761u);
        if (it != um.end()) s += it->second.size();
    }
    // Raw new[]/delete[] across size classes, freed in a different order.
    std::vector<int *> arrs;
    for (int i = 0; i < 20000; i++) {
        size_t n = (static_cast<size_t>(i) * 7919) % (i % 50 == 0 ? 300000 : 2000) + 1;
        int *a = new int[n];
        a[0] = i; a[n - 1] = i;
        arrs.push_back(a);
        if (i % 5 == 4) {
            int *b = arrs[arrs.size() / 2];
            arrs.erase(arrs.begin() + static_cast<long>(arrs.size() / 2));
            s += static_cast<uint64_t>(b[0]);
            delete[] b;
        }
    }
    for (int *a : arrs) { s += static_cast<uint64_t>(a[0]); delete[] a; }
    // Exceptions allocate their objects with malloc (__cxa_allocate_exception).
    for (int i = 0; i < 2000; i++) {
        try { throw std::runtime_error(std::string(i % 200, 'e')); }
        catch (const std::exception &e) { s += std::string(e.what()).size(); }
    }
    return s;
}

} // namespace

int main() {
    std::printf("single %llu\n", static_cast<unsigned long long>(single_threaded()));
    std::vector<Queue> qs(kThreads);
    std::vector<uint64_t> sums(kThreads);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++) ts.emplace_back(worker, t, std::ref(qs), std::ref(sums[t]));
    for (auto &th : ts) th.join();
    uint64_t total = 0;
    for (uint64_t s : sums) total += s;
    std::printf("threads %llu\n", static_cast<unsigned long long>(total));
    return 0;
}
