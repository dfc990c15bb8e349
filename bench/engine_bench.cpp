// Hold model: a queue of N pending events; each step pops the earliest and pushes one at
// (popped time + random increment). Run on bubblesim's EventQueue and on a bare
// std::priority_queue of the same (time, seq) events, with the same increments.
#include <benchmark/benchmark.h>

#include <queue>
#include <random>
#include <vector>

#include "sim/engine/event_queue.hpp"

using namespace bubblesim;
using namespace bubblesim::sim;

namespace {

constexpr int64_t kSteps = 1 << 20;

std::vector<int64_t> increments() {
  std::mt19937_64 rng(12345);
  std::exponential_distribution<double> exp(1.0 / 1000.0);
  std::vector<int64_t> v(kSteps);
  for (auto& x : v) x = static_cast<int64_t>(exp(rng));
  return v;
}

void BM_EngineHold(benchmark::State& state) {
  const auto inc = increments();
  const auto n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    EventQueue q;
    q.reserve(n + 1);
    for (size_t i = 0; i < n; ++i) q.push(Time::ps(inc[i % inc.size()]), 0, static_cast<uint32_t>(i));
    for (int64_t i = 0; i < kSteps; ++i) {
      const Event e = q.pop();
      q.push(e.time + Time::ps(inc[static_cast<size_t>(i)]), e.kind, e.target);
    }
    benchmark::DoNotOptimize(q.top());
  }
  state.SetItemsProcessed(state.iterations() * kSteps);
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(state.iterations() * kSteps),
                                                  benchmark::Counter::kIsRate);
}

struct BareEvent {
  int64_t time;
  uint64_t seq;
  uint32_t kind;
  uint32_t target;
  bool operator>(const BareEvent& o) const { return time > o.time || (time == o.time && seq > o.seq); }
};

void BM_BarePriorityQueueHold(benchmark::State& state) {
  const auto inc = increments();
  const auto n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<BareEvent> storage;
    storage.reserve(n + 1);
    std::priority_queue<BareEvent, std::vector<BareEvent>, std::greater<>> q(std::greater<>{}, std::move(storage));
    uint64_t seq = 0;
    for (size_t i = 0; i < n; ++i) q.push({inc[i % inc.size()], seq++, 0, static_cast<uint32_t>(i)});
    for (int64_t i = 0; i < kSteps; ++i) {
      const BareEvent e = q.top();
      q.pop();
      q.push({e.time + inc[static_cast<size_t>(i)], seq++, e.kind, e.target});
    }
    benchmark::DoNotOptimize(q.top());
  }
  state.SetItemsProcessed(state.iterations() * kSteps);
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(state.iterations() * kSteps),
                                                  benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_EngineHold)->Arg(64)->Arg(1024)->Arg(65536)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BarePriorityQueueHold)->Arg(64)->Arg(1024)->Arg(65536)->Unit(benchmark::kMillisecond);
