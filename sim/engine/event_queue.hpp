// The event queue of the discrete-event engine: a vector-backed binary min-heap of small POD
// events ordered by (time, insertion counter), so equal-time events pop first-in first-out and
// every run is reproducible. Not a scheduler of callbacks: an event is (time, kind, target) and
// the owner dispatches on `kind`.
//
// Costs: push O(log n), pop O(log n), top O(1); no allocation once the vector has grown to the
// queue's high-water mark (reserve() it up front).
#pragma once

#include <cstdint>
#include <vector>

#include "sim/core/units.hpp"

namespace bubblesim::sim {

struct Event {
  Time time;
  uint64_t seq;     // insertion counter: ties on time pop in insertion order
  uint32_t kind;    // owner-defined
  uint32_t target;  // owner-defined (usually an op id)
};

class EventQueue {
 public:
  void reserve(size_t n) { heap_.reserve(n); }
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  const Event& top() const { return heap_.front(); }

  void push(Time time, uint32_t kind, uint32_t target) {
    Event ev{time, next_seq_++, kind, target};
    size_t hole = heap_.size();
    heap_.push_back(ev);
    while (hole > 0) {
      const size_t parent = (hole - 1) / 2;
      if (!before(ev, heap_[parent])) break;
      heap_[hole] = heap_[parent];
      hole = parent;
    }
    heap_[hole] = ev;
  }

  Event pop() {
    const Event result = heap_.front();
    const Event last = heap_.back();
    heap_.pop_back();
    const size_t n = heap_.size();
    if (n == 0) return result;
    size_t hole = 0;
    for (;;) {
      size_t child = 2 * hole + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
      if (!before(heap_[child], last)) break;
      heap_[hole] = heap_[child];
      hole = child;
    }
    heap_[hole] = last;
    return result;
  }

 private:
  static bool before(const Event& a, const Event& b) {
    return a.time < b.time || (a.time == b.time && a.seq < b.seq);
  }

  std::vector<Event> heap_;
  uint64_t next_seq_ = 0;
};

}  // namespace bubblesim::sim
