#include "sim/sched/lower.hpp"

#include <algorithm>
#include <cmath>

#include "sim/core/error.hpp"
#include "sim/core/memory.hpp"

namespace bubblesim::sim {
namespace {

class Lowering {
 public:
  Lowering(const StageGraph& g, const std::vector<StageCost>& costs, const LowerOptions& opt)
      : g_(g), costs_(costs), opt_(opt) {
    const size_t slots = g.size() * static_cast<size_t>(g.microbatches);
    assign_huge(fwd_, slots, kNone);
    assign_huge(bwd_, slots, kNone);
    assign_huge(wgt_, slots, kNone);
  }

  Program run(const std::vector<RankActions>& actions) {
    BUBBLESIM_ASSERT(actions.size() == static_cast<size_t>(g_.ranks), "one action list per rank");
    size_t total = 0;
    for (const RankActions& a : actions) total += a.size();
    prog_.reserve_ops(total, total * 2);
    prog_.chunk_names = opt_.chunk_names;
    prog_.memory_unit = opt_.memory_unit;
    for (int32_t r = 0; r < g_.ranks; ++r) {
      const DeviceId d = prog_.add_device("rank " + std::to_string(r));
      prog_.reserve_stream(prog_.add_stream(d, StreamKind::Compute, "compute"), actions[static_cast<size_t>(r)].size());
    }
    // Op ids interleave the ranks (op i of every rank, then op i+1): ops that run at about the
    // same time sit together in memory, which keeps the executor's working set in cache.
    size_t longest = 0;
    for (const RankActions& a : actions) longest = std::max(longest, a.size());
    for (size_t i = 0; i < longest; ++i) {
      for (int32_t r = 0; r < g_.ranks; ++r) {
        const RankActions& a = actions[static_cast<size_t>(r)];
        if (i < a.size()) add(static_cast<StreamId>(r), a[i]);
      }
    }
    for (OpId id = 0; id < prog_.num_ops(); ++id) link(id);
    prog_.finalize();
    return std::move(prog_);
  }

 private:
  size_t slot(int32_t stage, int32_t mb) const {
    BUBBLESIM_ASSERT(stage >= 0 && static_cast<size_t>(stage) < g_.size(), "action on a stage outside the graph");
    BUBBLESIM_ASSERT(mb >= 0 && mb < g_.microbatches, "action on a microbatch outside the iteration");
    // Microbatch-major: the passes that run at about the same time share cache lines.
    return static_cast<size_t>(mb) * g_.size() + static_cast<size_t>(stage);
  }

  void claim(std::vector<OpId>& table, int32_t stage, int32_t mb, OpId id) {
    OpId& cell = table[slot(stage, mb)];
    BUBBLESIM_ASSERT(cell == kNone, "the same pass is scheduled twice (stage " + std::to_string(stage) +
                                        ", microbatch " + std::to_string(mb) + ")");
    cell = id;
  }

  void add(StreamId stream, const Action& a) {
    BUBBLESIM_ASSERT(g_.device[static_cast<size_t>(a.stage)] == static_cast<int32_t>(stream),
                     "action placed on a rank that does not hold its stage");
    const StageCost& c = costs_[static_cast<size_t>(a.stage)];
    Op op;
    op.stream = stream;
    op.label.phase = a.phase;
    op.label.stage = a.stage;
    op.label.microbatch = a.microbatch;
    op.label.chunk = g_.chunk[static_cast<size_t>(a.stage)];
    op.label.layer = c.first_layer;
    const OpId id = static_cast<OpId>(prog_.num_ops());
    switch (a.phase) {
      case Phase::F:
        op.duration = c.f;
        op.mem_alloc = c.activation_units;
        claim(fwd_, a.stage, a.microbatch, id);
        break;
      case Phase::B:
        op.duration = c.b;
        op.mem_free = c.activation_units;
        claim(bwd_, a.stage, a.microbatch, id);
        break;
      case Phase::I:
        op.duration = c.i;
        claim(bwd_, a.stage, a.microbatch, id);
        break;
      case Phase::W:
        op.duration = c.w;
        op.mem_free = c.activation_units;
        claim(wgt_, a.stage, a.microbatch, id);
        break;
      case Phase::FB: {
        const StageCost& cb = costs_[static_cast<size_t>(a.b_stage)];
        BUBBLESIM_ASSERT(g_.device[static_cast<size_t>(a.b_stage)] == static_cast<int32_t>(stream),
                         "F&B pair across ranks");
        const Time sum = c.f + cb.b;
        op.duration = opt_.fb_ratio ? Time::from_seconds(*opt_.fb_ratio * sum.seconds()) : sum;
        op.label.b_stage = a.b_stage;
        op.label.b_microbatch = a.b_microbatch;
        op.label.b_chunk = g_.chunk[static_cast<size_t>(a.b_stage)];
        op.mem_alloc = c.activation_units;
        op.mem_free = cb.activation_units;
        claim(fwd_, a.stage, a.microbatch, id);
        claim(bwd_, a.b_stage, a.b_microbatch, id);
        break;
      }
      case Phase::None: BUBBLESIM_ASSERT(false, "action without a phase");
    }
    prog_.add_op(op);
  }

  void depend(OpId id, const std::vector<OpId>& table, int32_t stage, int32_t mb, const char* what) {
    const OpId on = table[slot(stage, mb)];
    BUBBLESIM_ASSERT(on != kNone, std::string("pass never scheduled: ") + what + " of stage " +
                                      std::to_string(stage) + ", microbatch " + std::to_string(mb));
    if (on == id) return;  // the other half of the same F&B op
    const bool cross = g_.device[static_cast<size_t>(stage)] != g_.device[static_cast<size_t>(prog_.op(id).label.stage)];
    prog_.add_dep(id, on, cross ? opt_.p2p_latency : Time::zero());
  }

  void forward_deps(OpId id, int32_t stage, int32_t mb) {
    const int32_t prev = g_.prev[static_cast<size_t>(stage)];
    if (prev >= 0) depend(id, fwd_, prev, mb, "forward");
  }

  void backward_deps(OpId id, int32_t stage, int32_t mb) {
    depend(id, fwd_, stage, mb, "forward");
    const int32_t next = g_.next[static_cast<size_t>(stage)];
    if (next >= 0) depend(id, bwd_, next, mb, "backward");
  }

  void link(OpId id) {
    const Label& l = prog_.op(id).label;
    switch (l.phase) {
      case Phase::F: forward_deps(id, l.stage, l.microbatch); break;
      case Phase::B:
      case Phase::I: backward_deps(id, l.stage, l.microbatch); break;
      case Phase::W: depend(id, bwd_, l.stage, l.microbatch, "input-gradient backward"); break;
      case Phase::FB:
        forward_deps(id, l.stage, l.microbatch);
        backward_deps(id, l.b_stage, l.b_microbatch);
        break;
      case Phase::None: break;
    }
  }

  const StageGraph& g_;
  const std::vector<StageCost>& costs_;
  const LowerOptions& opt_;
  Program prog_;
  std::vector<OpId> fwd_;  // per (stage, microbatch): the op running its forward
  std::vector<OpId> bwd_;  // per (stage, microbatch): the op running its B or I
  std::vector<OpId> wgt_;  // per (stage, microbatch): the op running its W
};

}  // namespace

Program lower(const std::vector<RankActions>& actions, const StageGraph& g, const std::vector<StageCost>& costs,
              const LowerOptions& opt) {
  BUBBLESIM_ASSERT(costs.size() == g.size(), "one StageCost per stage");
  return Lowering(g, costs, opt).run(actions);
}

}  // namespace bubblesim::sim
