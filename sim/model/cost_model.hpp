// The cost model interface the executor asks for durations, and the fixed-time model used by
// pipeline_only scenarios (op times given in the scenario). Not a network simulator: flow-level
// sharing of links plugs in behind group_time() in a later model.
#pragma once

#include "sim/core/units.hpp"
#include "sim/ir/program.hpp"

namespace bubblesim::sim {

class CostModel {
 public:
  virtual ~CostModel() = default;
  /// Duration of compute op `id`, in ps.
  virtual Time op_time(const Program& p, OpId id) const = 0;
  /// Duration of rendezvous group `g` once all its members have been issued, in ps.
  virtual Time group_time(const Program& p, GroupId g) const = 0;
};

/// Uses the durations written into the Program (Op::duration, Group::duration).
class GivenTimes final : public CostModel {
 public:
  Time op_time(const Program& p, OpId id) const override { return p.op(id).duration; }
  Time group_time(const Program& p, GroupId g) const override { return p.groups()[g].duration; }
};

}  // namespace bubblesim::sim
