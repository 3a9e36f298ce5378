// Sample statistics and the search: tune() (see tuner.hpp for the design).
//
// The search, step by step:
//   1. Candidates are de-duplicated by describe() (first occurrence kept). Each is checked
//      against the template's static constraints (check_config) and, if it passes, by the
//      measurer (compile, launch, compare with the baseline). Either failure records the
//      candidate as rejected with the reason; a rejected candidate is never timed.
//   2. automatic picks exhaustive for at most kExhaustiveLimit checked candidates, otherwise
//      successive halving.
//      - exhaustive ("refine" each candidate): min_reps timed runs, then chunks of min_reps more
//        while the spread is above target_spread, below max_reps and the candidate's time budget
//        (median * reps so far, against seconds_per_candidate) affords at least one more run.
//        min_reps are always run: fewer would make the median and spread meaningless.
//      - successive halving: round 1 times every candidate max(3, min_reps / 2) times; the
//        faster half (ceil, by median) survives and the repetition count doubles (samples
//        accumulate: a survivor is topped up to the round's count, but once it has min_reps
//        runs within target_spread it is not timed further, as in exhaustive); repeated until
//        one or two remain, which are then refined as in exhaustive. With stable kernels this
//        costs about (1/2 + 1/4) * min_reps per candidate against exhaustive's min_reps.
//   3. Near tie: if the best two medians differ by at most max(spread_a, spread_b) * median_a,
//      both are re-timed interleaved (a, b, a, b, ... one run each, min_reps runs each) and
//      compared on those fresh samples only (same thermal/clock conditions); if they are still
//      within each other's spread, the smaller describe() wins. The interleaved samples are then
//      appended to each candidate's samples, so the reported median of the winner may sit a hair
//      above the runner-up's after a tie.
//   Ranking is always by (median, describe()), so the outcome depends only on the numbers the
//   measurer returns, never on candidate order or on the machine.
//   A measurer exception while timing (a launch failure on the GPU) rejects that candidate with
//   "launch: <message>"; an exception from check() likewise.
#include "tune/tuner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <set>

namespace sigjit::tuner {

namespace {

// Linear interpolation between closest ranks (numpy's default), p in [0, 1]; `sorted` non-empty.
double percentile(const std::vector<double>& sorted, double p) {
  const double pos = p * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

std::vector<double> sorted_copy(const std::vector<double>& v) {
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  return s;
}

}  // namespace

// 0 when there are no samples.
double Samples::median() const {
  if (ms.empty()) return 0.0;
  return percentile(sorted_copy(ms), 0.5);
}

double Samples::spread() const {
  if (ms.size() < 3) return 0.0;
  const std::vector<double> s = sorted_copy(ms);
  const double med = percentile(s, 0.5);
  if (med <= 0.0) return 0.0;
  return (percentile(s, 0.9) - percentile(s, 0.1)) / med;
}

namespace {

const char* strategy_name(Strategy s) {
  switch (s) {
    case Strategy::automatic: return "automatic";
    case Strategy::exhaustive: return "exhaustive";
    case Strategy::successive_halving: return "successive halving";
  }
  return "?";
}

void check_budget(const Budget& b) {
  if (b.min_reps < 1) throw Error(fmt::format("budget: min_reps={} must be at least 1", b.min_reps));
  if (b.max_reps < b.min_reps) throw Error(fmt::format("budget: max_reps={} is below min_reps={}", b.max_reps, b.min_reps));
  if (!(b.target_spread >= 0.0)) throw Error(fmt::format("budget: target_spread={} must be >= 0", b.target_spread));
  if (!(b.seconds_per_candidate > 0.0)) throw Error(fmt::format("budget: seconds_per_candidate={} must be > 0", b.seconds_per_candidate));
}

// Steps the timing phase takes for n checked candidates (one per candidate per round, one per
// finalist refinement), not counting the final tie step.
int timing_steps(int n, Strategy strategy) {
  if (strategy == Strategy::exhaustive || n <= 2) return n;
  int steps = 0;
  while (n > 2) {
    steps += n;
    n = (n + 1) / 2;
  }
  return steps + n;
}

std::string summary(const Candidate& c) {
  return fmt::format("{}: {:.4f} ms, spread {:.1f}% over {} reps", c.config.describe(), c.samples.median(), 100.0 * c.samples.spread(),
                     c.samples.ms.size());
}

class Search {
 public:
  Search(const KernelSpec& spec, Measurer& measurer, const Budget& budget, const Progress& progress)
      : spec_(spec), measurer_(measurer), budget_(budget), progress_(progress) {}

  TuneResult run(const std::vector<TileConfig>& configs, Strategy strategy) {
    TuneResult result;
    result.spec = spec_;
    std::set<std::string> seen;
    for (const TileConfig& c : configs) {
      if (seen.insert(c.describe()).second) all_.push_back(Candidate{c, {}, {}});
    }
    const int n = static_cast<int>(all_.size());

    // Static constraints first: free, and they size the progress total.
    std::vector<std::string> static_reasons(all_.size());
    int statically_valid = 0;
    for (std::size_t i = 0; i < all_.size(); ++i) {
      static_reasons[i] = check_config(spec_, all_[i].config);
      if (static_reasons[i].empty()) ++statically_valid;
    }
    auto resolve = [&](int valid) {
      return strategy != Strategy::automatic ? strategy : valid <= kExhaustiveLimit ? Strategy::exhaustive : Strategy::successive_halving;
    };
    total_ = n + timing_steps(statically_valid, resolve(statically_valid)) + 1;

    std::vector<std::size_t> alive;
    for (std::size_t i = 0; i < all_.size(); ++i) {
      Candidate& c = all_[i];
      if (!static_reasons[i].empty()) {
        c.verdict = {false, "invalid config: " + static_reasons[i]};
      } else {
        try {
          c.verdict = measurer_.check(spec_, c.config);
          if (!c.verdict.ok && c.verdict.reason.empty()) c.verdict.reason = "rejected by the measurer (no reason given)";
        } catch (const std::exception& e) {
          c.verdict = {false, fmt::format("launch: {}", e.what())};
        }
      }
      if (c.verdict.ok) alive.push_back(i);
      step(c.verdict.ok ? fmt::format("checked {}: ok", c.config.describe())
                        : fmt::format("rejected {}: {}", c.config.describe(), c.verdict.reason));
    }

    const Strategy used = resolve(static_cast<int>(alive.size()));
    result.strategy_used = used;
    total_ = done_ + timing_steps(static_cast<int>(alive.size()), used) + 1;

    if (used == Strategy::successive_halving) alive = halve(alive);
    for (std::size_t i : alive) {
      if (refine(all_[i])) {
        step("timed " + summary(all_[i]));
      } else {
        step(fmt::format("rejected {}: {}", all_[i].config.describe(), all_[i].verdict.reason));
      }
    }
    alive = still_ok(alive);
    rank(alive);

    std::string tie_message = "no near tie";
    if (alive.size() >= 2) tie_message = break_tie(alive);
    std::optional<std::size_t> best;
    if (!alive.empty()) best = alive.front();
    total_ = done_ + 1;
    step(best ? fmt::format("{}; best {} ({})", tie_message, summary(all_[*best]), strategy_name(used)) : "every candidate was rejected");

    if (best) result.best = all_[*best];
    result.all = std::move(all_);
    return result;
  }

 private:
  void step(const std::string& message) {
    ++done_;
    total_ = std::max(total_, done_);
    if (progress_) progress_(done_, total_, message);
  }

  // Appends `reps` timed runs; on an exception or an unusable sample the candidate is rejected.
  bool time(Candidate& c, int reps, Samples& into) {
    if (reps <= 0) return true;
    try {
      const std::size_t before = into.ms.size();
      measurer_.time(spec_, c.config, reps, into);
      for (std::size_t k = before; k < into.ms.size(); ++k) {
        if (!std::isfinite(into.ms[k]) || into.ms[k] < 0.0) {
          c.verdict = {false, fmt::format("timing: unusable sample {} ms", into.ms[k])};
          return false;
        }
      }
      if (into.ms.size() == before) {
        c.verdict = {false, "timing: the measurer returned no samples"};
        return false;
      }
    } catch (const std::exception& e) {
      c.verdict = {false, fmt::format("launch: {}", e.what())};
      return false;
    }
    return true;
  }

  // Runs the candidate could still afford within its time budget (estimate: median * reps).
  int affordable(const Candidate& c) const {
    const std::size_t n = c.samples.ms.size();
    const double med = c.samples.median();
    if (n == 0 || med <= 0.0) return budget_.max_reps;
    const double left_ms = budget_.seconds_per_candidate * 1e3 - med * static_cast<double>(n);
    return left_ms <= 0.0 ? 0 : static_cast<int>(std::min<double>(std::floor(left_ms / med), budget_.max_reps));
  }

  // min_reps, then chunks until the spread target, max_reps or the time budget. False when
  // the candidate got rejected while timing.
  bool refine(Candidate& c) {
    const int have = static_cast<int>(c.samples.ms.size());
    if (have < budget_.min_reps && !time(c, budget_.min_reps - have, c.samples)) return false;
    while (c.samples.spread() > budget_.target_spread) {
      const int n = static_cast<int>(c.samples.ms.size());
      const int add = std::min({budget_.min_reps, budget_.max_reps - n, affordable(c)});
      if (add <= 0) break;
      if (!time(c, add, c.samples)) return false;
    }
    return true;
  }

  std::vector<std::size_t> still_ok(const std::vector<std::size_t>& ids) const {
    std::vector<std::size_t> out;
    for (std::size_t i : ids)
      if (all_[i].verdict.ok) out.push_back(i);
    return out;
  }

  void rank(std::vector<std::size_t>& ids) const {
    std::vector<std::pair<double, std::string>> keys(all_.size());
    for (std::size_t i : ids) keys[i] = {all_[i].samples.median(), all_[i].config.describe()};
    std::sort(ids.begin(), ids.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b]; });
  }

  // Rounds of successive halving; returns the one or two finalists (not yet refined).
  std::vector<std::size_t> halve(std::vector<std::size_t> alive) {
    int reps = std::min(std::max(3, budget_.min_reps / 2), budget_.max_reps);
    for (int round = 1; alive.size() > 2; ++round) {
      for (std::size_t i : alive) {
        Candidate& c = all_[i];
        const int have = static_cast<int>(c.samples.ms.size());
        // Round 1 always runs in full. Later rounds top up to the round's count, within the
        // candidate's time budget, only while the candidate is below min_reps or noisier than
        // target_spread: the stopping rule of exhaustive, so that halving never times a
        // candidate more than exhaustive would (beyond the doubling for a noisy one).
        const bool settled = have >= budget_.min_reps && c.samples.spread() <= budget_.target_spread;
        const int add = round == 1 ? reps - have : settled ? 0 : std::min(reps - have, affordable(c));
        if (time(c, add, c.samples)) {
          step(fmt::format("round {}: {} {}", round, add > 0 ? "timed" : "settled", summary(c)));
        } else {
          step(fmt::format("round {}: rejected {}: {}", round, c.config.describe(), c.verdict.reason));
        }
      }
      alive = still_ok(alive);
      rank(alive);
      alive.resize((alive.size() + 1) / 2);
      total_ = done_ + timing_steps(static_cast<int>(alive.size()), Strategy::successive_halving) + 1;
      reps = std::min(reps * 2, budget_.max_reps);
    }
    return alive;
  }

  static bool near(const Samples& a, const Samples& b) {
    const double ma = a.median(), mb = b.median();
    return std::abs(ma - mb) <= std::max(a.spread(), b.spread()) * std::min(ma, mb);
  }

  // `ranked` is sorted, size >= 2; reorders its front after the tie rule.
  std::string break_tie(std::vector<std::size_t>& ranked) {
    Candidate& a = all_[ranked[0]];
    Candidate& b = all_[ranked[1]];
    if (!near(a.samples, b.samples)) return "no near tie";
    Samples fa, fb;
    bool ok_a = true, ok_b = true;
    for (int r = 0; r < budget_.min_reps && ok_a && ok_b; ++r) {
      ok_a = time(a, 1, fa);
      if (ok_a) ok_b = time(b, 1, fb);
    }
    const std::string names = fmt::format("{} vs {}", a.config.describe(), b.config.describe());
    if (!ok_a || !ok_b) {
      ranked.erase(ranked.begin() + (ok_a ? 1 : 0));
      return fmt::format("near tie {}: {} rejected while re-timing", names, ok_a ? b.config.describe() : a.config.describe());
    }
    const double ma = fa.median(), mb = fb.median();
    bool b_wins;
    std::string how;
    if (near(fa, fb)) {
      b_wins = b.config.describe() < a.config.describe();
      how = fmt::format("still within spread ({:.4f} vs {:.4f} ms), {} wins by name", ma, mb,
                        b_wins ? b.config.describe() : a.config.describe());
    } else {
      b_wins = mb < ma;
      how = fmt::format("interleaved medians {:.4f} vs {:.4f} ms", ma, mb);
    }
    a.samples.ms.insert(a.samples.ms.end(), fa.ms.begin(), fa.ms.end());
    b.samples.ms.insert(b.samples.ms.end(), fb.ms.begin(), fb.ms.end());
    if (b_wins) std::swap(ranked[0], ranked[1]);
    return fmt::format("near tie {} re-timed interleaved: {}", names, how);
  }

  const KernelSpec& spec_;
  Measurer& measurer_;
  const Budget& budget_;
  const Progress& progress_;
  std::vector<Candidate> all_;
  int done_ = 0;
  int total_ = 0;
};

}  // namespace

TuneResult tune(const KernelSpec& spec, const std::vector<TileConfig>& candidates, Measurer& measurer, Strategy strategy,
                const Budget& budget, const Progress& progress) {
  check_budget(budget);
  return Search(spec, measurer, budget, progress).run(candidates, strategy);
}

}  // namespace sigjit::tuner
