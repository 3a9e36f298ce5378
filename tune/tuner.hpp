// The autotuner: picks the fastest correct tile config per (spec, bucket) on this GPU.
//
// What: candidates come from candidate_configs() (every config the templates accept and the
// arch can hold), are compiled in parallel on a thread pool, then timed by a Measurer. A
// candidate whose output disagrees with the trusted baseline (the heuristic default config,
// itself checked by the GPU test matrix against the fp64 reference) or that fails to compile
// or launch is recorded as rejected with its reason and can never win.
// Strategies: exhaustive (every candidate, full repetitions) for spaces of at most
// kExhaustiveLimit configs; otherwise successive halving (time all briefly, keep the faster
// half, double the repetitions, repeat) which spends about 2x the cost of timing one survivor.
// Ties: candidates whose medians are within the larger spread of each other are re-timed
// interleaved; a remaining tie goes to the config whose describe() sorts first, so every
// machine picks the same winner from the same numbers.
// Cost: compile ~1 s per candidate / threads; timing ~reps * kernel time per candidate.
#pragma once

#include "problem/spec.hpp"
#include "kernels/registry.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sigjit::tuner {

inline constexpr int kExhaustiveLimit = 16;

struct Samples {
  std::vector<double> ms;
  double median() const;
  double spread() const;  // (p90 - p10) / median; 0 for fewer than 3 samples
};

struct Verdict {
  bool ok = true;
  std::string reason;  // when !ok: "compile: ...", "launch: ...", "wrong output: rel error 0.3 > 0.02"
};

// Times and checks one compiled candidate. Implemented on the GPU by the runtime (and by a
// recorded timing table in tests).
class Measurer {
 public:
  virtual ~Measurer() = default;
  virtual Verdict check(const KernelSpec& spec, const TileConfig& config) = 0;
  // Appends `reps` timed runs of the candidate to `out`.
  virtual void time(const KernelSpec& spec, const TileConfig& config, int reps, Samples& out) = 0;
};

struct Budget {
  int min_reps = 10;
  int max_reps = 100;
  double target_spread = 0.03;     // stop repeating once (p90-p10)/median is below this
  double seconds_per_candidate = 2.0;
};

enum class Strategy { automatic, exhaustive, successive_halving };

struct Candidate {
  TileConfig config;
  Samples samples;
  Verdict verdict;
};

struct TuneResult {
  KernelSpec spec;
  std::optional<Candidate> best;  // nullopt when every candidate was rejected
  std::vector<Candidate> all;     // every candidate, rejected ones included
  Strategy strategy_used = Strategy::exhaustive;
};

// progress(done, total, message) is called after each step (compile or timing).
using Progress = std::function<void(int done, int total, const std::string& message)>;

TuneResult tune(const KernelSpec& spec, const std::vector<TileConfig>& candidates, Measurer& measurer, Strategy strategy,
                const Budget& budget, const Progress& progress);

// The problem sizes a bucket is timed at: a representative shape (document in tuner.cpp).
struct Shape {
  int batch = 1;
  int heads = 16;
  std::vector<int> seq_lens;  // one per sequence (dense: all equal)
  std::string describe() const;
};
Shape representative_shape(const KernelSpec& spec, const std::vector<int>* user_lengths = nullptr);

// What to tune: a list of specs (each with its bucket). From CLI-style lists or JSON.
struct Workload {
  std::vector<KernelSpec> specs;
  std::vector<int> user_lengths;  // optional ragged length distribution for padded/varlen
};
struct WorkloadFlags {
  std::vector<int> head_dims{64, 128};
  std::vector<std::string> dtypes{"bf16"};
  std::vector<std::string> layouts{"dense"};
  std::vector<int> seq_lens{512, 2048, 8192, 16384};  // each maps to its bucket
  std::vector<bool> causal{false};
  std::vector<std::string> sigmoid{"fast"};
  std::vector<std::string> directions{"fwd"};  // fwd, bwd (fused), bwd_det (dkdv + dq), or a kernel tag
  std::string lengths_file;  // one integer per line, or a JSON array
  // Causal diagonals to tune for the causal specs: "bottom_right" (the default; FlashAttention's
  // rule) and/or "top_left" (TritonSigmoid's), "bottom-right"/"top-left" alike. One by default,
  // so a causal workload is not tuned twice unless asked; non-causal specs ignore it. Last, so
  // that positional initialisers of the fields above stay valid.
  std::vector<std::string> causal_align{"bottom_right"};
};
Workload workload_from_flags(const WorkloadFlags& flags, const Arch& arch);
Workload workload_from_json(const nlohmann::json& j, const Arch& arch);  // throws Error naming the bad field
// "single-cell". `directions`, when not empty, replaces the preset's (e.g. {"fwd"} to tune its forward only).
Workload preset(const std::string& name, const Arch& arch, const std::vector<std::string>& directions = {});
std::vector<std::string> preset_names();

}  // namespace sigjit::tuner
