// The autotuner without a GPU: sample statistics, the search (tune) against a FakeMeasurer that
// replays recorded H100 timings (tests/data/timings_h100.json) with deterministic ~1% noise,
// representative shapes per bucket, and workload parsing from flags, JSON and presets.
#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "tune/tuner.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace tuner = sigjit::tuner;
using nlohmann::json;
using sigjit::Arch;
using sigjit::KernelSpec;
using sigjit::SeqBucket;
using sigjit::TileConfig;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---- statistics -------------------------------------------------------------------------------

tuner::Samples samples(std::vector<double> ms) { return tuner::Samples{std::move(ms)}; }

TEST(TunerStats, MedianOfOddEvenAndUnsortedSamples) {
  EXPECT_DOUBLE_EQ(samples({3.0}).median(), 3.0);
  EXPECT_DOUBLE_EQ(samples({5.0, 1.0, 3.0}).median(), 3.0);
  EXPECT_DOUBLE_EQ(samples({4.0, 1.0, 3.0, 2.0}).median(), 2.5);
  EXPECT_DOUBLE_EQ(samples({}).median(), 0.0);
}

TEST(TunerStats, SpreadUsesLinearlyInterpolatedPercentiles) {
  // 1..10: p10 at rank 0.9 -> 1.9, p90 at rank 8.1 -> 9.1, median 5.5.
  EXPECT_NEAR(samples({10, 9, 8, 7, 6, 5, 4, 3, 2, 1}).spread(), (9.1 - 1.9) / 5.5, 1e-12);
  // 1, 2, 3: p10 1.2, p90 2.8, median 2.
  EXPECT_NEAR(samples({3, 1, 2}).spread(), 0.8, 1e-12);
  EXPECT_DOUBLE_EQ(samples({7, 7, 7, 7}).spread(), 0.0);
}

TEST(TunerStats, SpreadIsZeroBelowThreeSamples) {
  EXPECT_DOUBLE_EQ(samples({}).spread(), 0.0);
  EXPECT_DOUBLE_EQ(samples({1.0}).spread(), 0.0);
  EXPECT_DOUBLE_EQ(samples({1.0, 100.0}).spread(), 0.0);
}

// ---- the recorded timing table and a measurer that replays it -----------------------------------

fs::path data_dir() {
  if (const char* dir = std::getenv("SIGJIT_TEST_DATA_DIR")) return dir;
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "data";  // tests/cpu/tune/ -> tests/data
}

struct TimingTable {
  int head_dim = 0;
  int heads = 0;
  int seq_len = 0;
  std::map<std::string, double> ms, tflops;
};

struct TimingData {
  double noise = 0;
  double default_ms = 0;
  std::map<int, TimingTable> tables;  // by head_dim
};

const TimingData& h100_data() {
  static const TimingData data = [] {
    std::ifstream in(data_dir() / "timings_h100.json");
    if (!in) throw std::runtime_error("cannot open " + (data_dir() / "timings_h100.json").string());
    const json j = json::parse(in);
    TimingData d;
    d.noise = j.at("noise_rel").get<double>();
    d.default_ms = j.at("default_ms").get<double>();
    for (const json& t : j.at("tables")) {
      TimingTable tt;
      tt.head_dim = t.at("head_dim").get<int>();
      tt.heads = t.at("heads").get<int>();
      tt.seq_len = t.at("seq_len").get<int>();
      for (const json& c : t.at("configs")) {
        tt.ms[c.at("config").get<std::string>()] = c.at("ms").get<double>();
        tt.tflops[c.at("config").get<std::string>()] = c.at("tflops").get<double>();
      }
      d.tables[tt.head_dim] = tt;
    }
    return d;
  }();
  return data;
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Irwin-Hall: the sum of 12 uniforms minus 6 has mean 0, standard deviation 1, range +-6.
double gaussian_like(std::uint64_t key, int index) {
  std::uint64_t state = key ^ (static_cast<std::uint64_t>(index) * 0xd1b54a32d192ed03ULL);
  double sum = 0;
  for (int i = 0; i < 12; ++i) sum += static_cast<double>(splitmix(state) >> 11) * 0x1.0p-53;
  return sum - 6.0;
}

// Replays a timing table. Sample k of a config is base_ms * (1 + noise * g(config, k)), with g
// keyed by the config's name and its own sample count, so the numbers a config gets do not
// depend on the order configs are timed in.
class FakeMeasurer final : public tuner::Measurer {
 public:
  FakeMeasurer(std::map<std::string, double> ms, double noise, double default_ms)
      : base_(std::move(ms)), noise_(noise), default_ms_(default_ms) {}

  static FakeMeasurer h100(int head_dim) {
    return FakeMeasurer(h100_data().tables.at(head_dim).ms, h100_data().noise, h100_data().default_ms);
  }

  tuner::Verdict check(const KernelSpec&, const TileConfig& config) override {
    checks.push_back(config.describe());
    const auto it = verdicts.find(config.describe());
    return it == verdicts.end() ? tuner::Verdict{} : it->second;
  }

  void time(const KernelSpec&, const TileConfig& config, int reps, tuner::Samples& out) override {
    const std::string name = config.describe();
    if (throw_on_time.count(name)) throw sigjit::Error("CUDA_ERROR_ILLEGAL_ADDRESS in the kernel launch", sigjit::ErrorKind::cuda);
    calls.emplace_back(name, reps);
    const auto it = base_.find(name);
    const double base = it == base_.end() ? default_ms_ : it->second;
    for (int r = 0; r < reps; ++r) {
      int& k = count_[name];
      out.ms.push_back(base * (1.0 + noise_ * gaussian_like(fnv1a(name), k)));
      ++k;
    }
  }

  int reps_of(const std::string& name) const {
    const auto it = count_.find(name);
    return it == count_.end() ? 0 : it->second;
  }
  int total_reps() const {
    int n = 0;
    for (const auto& [name, k] : count_) n += k;
    return n;
  }

  std::map<std::string, tuner::Verdict> verdicts;  // check() results by config (default: ok)
  std::set<std::string> throw_on_time;             // configs whose time() throws
  std::vector<std::string> checks;                 // configs check() was called for, in order
  std::vector<std::pair<std::string, int>> calls;  // (config, reps) of every time() call

 private:
  std::map<std::string, double> base_;
  double noise_;
  double default_ms_;
  std::map<std::string, int> count_;
};

KernelSpec h100_spec(int head_dim) {
  KernelSpec s;
  s.head_dim = head_dim;
  s.arch = Arch::parse("sm_90");
  s.bucket = SeqBucket::over_8k;
  return s;
}

std::vector<TileConfig> table_configs(int head_dim) {
  std::vector<TileConfig> out;
  for (const auto& [name, ms] : h100_data().tables.at(head_dim).ms) out.push_back(TileConfig::parse(name, "table"));
  return out;
}

const tuner::Candidate* find(const tuner::TuneResult& r, const std::string& name) {
  for (const auto& c : r.all)
    if (c.config.describe() == name) return &c;
  return nullptr;
}

tuner::TuneResult run(FakeMeasurer& m, const KernelSpec& spec, const std::vector<TileConfig>& configs,
                      tuner::Strategy strategy = tuner::Strategy::automatic, const tuner::Budget& budget = {},
                      const tuner::Progress& progress = {}) {
  return tuner::tune(spec, configs, m, strategy, budget, progress);
}

std::string winner(const tuner::TuneResult& r) { return r.best ? r.best->config.describe() : "<none>"; }

TEST(TunerTimingTable, RecordedFromTheH100SweepAndValid) {
  const TimingData& d = h100_data();
  ASSERT_EQ(d.tables.size(), 2u);
  for (const auto& [hd, t] : d.tables) {
    EXPECT_EQ(t.heads * hd, 2048);
    EXPECT_EQ(t.ms.size(), 7u);
    const double flops = 4.0 * t.heads * hd * static_cast<double>(t.seq_len) * t.seq_len;
    for (const auto& [name, ms] : t.ms) {
      EXPECT_NEAR(ms, flops / (t.tflops.at(name) * 1e12) * 1e3, 1e-3) << name;
      EXPECT_EQ(sigjit::check_config(h100_spec(hd), TileConfig::parse(name, "table")), "") << name;
    }
  }
  EXPECT_NEAR(d.tables.at(64).ms.at("m128n128w4s2"), 7.12, 0.01);  // 308.8 TFLOPS
}

// ---- tune() --------------------------------------------------------------------------------------

TEST(TunerTune, ExhaustivePicksTheFastestHd64) {
  FakeMeasurer m = FakeMeasurer::h100(64);
  const auto r = run(m, h100_spec(64), table_configs(64));
  EXPECT_EQ(r.strategy_used, tuner::Strategy::exhaustive);  // 7 candidates <= kExhaustiveLimit
  EXPECT_EQ(winner(r), "m128n128w4s2");
  EXPECT_NEAR(r.best->samples.median(), 7.12, 0.1);
  EXPECT_EQ(r.all.size(), 7u);
  for (const auto& c : r.all) {
    EXPECT_TRUE(c.verdict.ok) << c.config.describe();
    EXPECT_GE(c.samples.ms.size(), 10u) << c.config.describe();  // min_reps each
    EXPECT_LE(c.samples.ms.size(), 100u + 10u) << c.config.describe();
  }
}

TEST(TunerTune, NearTieInRecordedNumbersGoesToTheSmallerName) {
  // hd 128: m128n64w4s2qs (300.7 TFLOPS) and m128n32w4s2qs (298.7) are 0.7% apart, inside the
  // ~2.5% spread of 1% noise: re-timed interleaved, still tied, so the name decides.
  FakeMeasurer m = FakeMeasurer::h100(128);
  const auto r = run(m, h100_spec(128), table_configs(128));
  EXPECT_EQ(r.strategy_used, tuner::Strategy::exhaustive);
  EXPECT_EQ(winner(r), "m128n32w4s2qs");
  // The interleaved re-timing: single runs alternating between the two.
  ASSERT_GE(m.calls.size(), 20u);
  const std::set<std::string> pair{"m128n32w4s2qs", "m128n64w4s2qs"};
  for (std::size_t i = m.calls.size() - 20; i < m.calls.size(); ++i) {
    EXPECT_EQ(m.calls[i].second, 1);
    EXPECT_TRUE(pair.count(m.calls[i].first)) << m.calls[i].first;
    if (i > m.calls.size() - 20) EXPECT_NE(m.calls[i].first, m.calls[i - 1].first);
  }
}

TEST(TunerTune, SuccessiveHalvingFindsTheSameWinnerWithFewerReps) {
  for (int hd : {64, 128}) {
    FakeMeasurer ex = FakeMeasurer::h100(hd);
    FakeMeasurer sh = FakeMeasurer::h100(hd);
    const auto a = run(ex, h100_spec(hd), table_configs(hd), tuner::Strategy::exhaustive);
    const auto b = run(sh, h100_spec(hd), table_configs(hd), tuner::Strategy::successive_halving);
    EXPECT_EQ(a.strategy_used, tuner::Strategy::exhaustive);
    EXPECT_EQ(b.strategy_used, tuner::Strategy::successive_halving);
    EXPECT_EQ(winner(a), winner(b)) << "hd " << hd;
    EXPECT_LT(sh.total_reps(), ex.total_reps()) << "hd " << hd;
    std::printf("hd %d, 7 candidates: successive halving %d reps, exhaustive %d\n", hd, sh.total_reps(), ex.total_reps());
    // Round 1 timed everyone with max(3, min_reps / 2) = 5 runs.
    for (const auto& c : b.all) EXPECT_GE(c.samples.ms.size(), 5u) << c.config.describe();
  }
}

TEST(TunerTune, AutomaticHalvesLargeSpaces) {
  // Every candidate of the template for hd 64 on sm_90 (48 > kExhaustiveLimit); configs missing
  // from the table take the slow default.
  const KernelSpec spec = h100_spec(64);
  const std::vector<TileConfig> all = sigjit::candidate_configs(spec);
  ASSERT_GT(static_cast<int>(all.size()), tuner::kExhaustiveLimit);
  FakeMeasurer sh = FakeMeasurer::h100(64);
  const auto r = run(sh, spec, all);
  EXPECT_EQ(r.strategy_used, tuner::Strategy::successive_halving);
  EXPECT_EQ(winner(r), "m128n128w4s2");
  FakeMeasurer ex = FakeMeasurer::h100(64);
  const auto e = run(ex, spec, all, tuner::Strategy::exhaustive);
  EXPECT_EQ(winner(e), "m128n128w4s2");
  EXPECT_LT(sh.total_reps(), ex.total_reps());
  std::printf("hd 64, %zu candidates: successive halving %d reps, exhaustive %d\n", all.size(), sh.total_reps(), ex.total_reps());
}

TEST(TunerTune, WrongOutputIsRejectedAndNeverWinsEvenIfFastest) {
  for (auto strategy : {tuner::Strategy::exhaustive, tuner::Strategy::successive_halving}) {
    FakeMeasurer m = FakeMeasurer::h100(64);
    m.verdicts["m128n128w4s2"] = {false, "wrong output: rel error 0.3 > 0.02"};
    const auto r = run(m, h100_spec(64), table_configs(64), strategy);
    EXPECT_EQ(winner(r), "m128n64w4s2qs");
    const auto* c = find(r, "m128n128w4s2");
    ASSERT_NE(c, nullptr);
    EXPECT_FALSE(c->verdict.ok);
    EXPECT_EQ(c->verdict.reason, "wrong output: rel error 0.3 > 0.02");
    EXPECT_TRUE(c->samples.ms.empty());
    EXPECT_EQ(m.reps_of("m128n128w4s2"), 0);  // never timed
  }
}

TEST(TunerTune, CompileFailureIsRecorded) {
  FakeMeasurer m = FakeMeasurer::h100(64);
  m.verdicts["m256n64w8s2"] = {false, "compile: ptxas error: too many resources requested"};
  const auto r = run(m, h100_spec(64), table_configs(64));
  EXPECT_EQ(winner(r), "m128n128w4s2");
  const auto* c = find(r, "m256n64w8s2");
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->verdict.ok);
  EXPECT_THAT(c->verdict.reason, StartsWith("compile: "));
  EXPECT_EQ(m.reps_of("m256n64w8s2"), 0);
}

TEST(TunerTune, InvalidConfigsAreRejectedBeforeTheMeasurerSeesThem) {
  FakeMeasurer m = FakeMeasurer::h100(64);
  std::vector<TileConfig> configs = table_configs(64);
  configs.push_back(TileConfig(sigjit::Sm80Tile{96, 64, 4, 2}));   // 96 is not a multiple of 16 * 4
  configs.push_back(TileConfig(sigjit::Sm80Tile{128, 64, 4, 7}));  // stages outside 2..4
  const auto r = run(m, h100_spec(64), configs);
  EXPECT_EQ(winner(r), "m128n128w4s2");
  for (const char* name : {"m96n64w4s2", "m128n64w4s7"}) {
    const auto* c = find(r, name);
    ASSERT_NE(c, nullptr) << name;
    EXPECT_FALSE(c->verdict.ok);
    EXPECT_THAT(c->verdict.reason, StartsWith("invalid config: "));
    EXPECT_EQ(std::count(m.checks.begin(), m.checks.end(), name), 0) << name;
    EXPECT_EQ(m.reps_of(name), 0);
  }
  EXPECT_THAT(find(r, "m96n64w4s2")->verdict.reason, HasSubstr("block_m=96"));
  EXPECT_THAT(find(r, "m128n64w4s7")->verdict.reason, HasSubstr("stages=7"));
  EXPECT_EQ(m.checks.size(), 7u);
}

TEST(TunerTune, LaunchFailureWhileTimingRejects) {
  for (auto strategy : {tuner::Strategy::exhaustive, tuner::Strategy::successive_halving}) {
    FakeMeasurer m = FakeMeasurer::h100(64);
    m.throw_on_time.insert("m128n128w4s2");
    const auto r = run(m, h100_spec(64), table_configs(64), strategy);
    EXPECT_EQ(winner(r), "m128n64w4s2qs");
    const auto* c = find(r, "m128n128w4s2");
    ASSERT_NE(c, nullptr);
    EXPECT_FALSE(c->verdict.ok);
    EXPECT_THAT(c->verdict.reason, AllOf(StartsWith("launch: "), HasSubstr("CUDA_ERROR_ILLEGAL_ADDRESS")));
  }
}

TEST(TunerTune, EveryCandidateRejectedGivesNoBest) {
  FakeMeasurer m = FakeMeasurer::h100(64);
  for (const auto& c : table_configs(64)) m.verdicts[c.describe()] = {false, "launch: no device"};
  std::vector<std::string> messages;
  const auto r = run(m, h100_spec(64), table_configs(64), tuner::Strategy::automatic, {},
                     [&](int, int, const std::string& msg) { messages.push_back(msg); });
  EXPECT_FALSE(r.best.has_value());
  EXPECT_EQ(r.all.size(), 7u);
  EXPECT_EQ(m.total_reps(), 0);
  ASSERT_FALSE(messages.empty());
  EXPECT_THAT(messages.back(), HasSubstr("every candidate was rejected"));

  FakeMeasurer empty = FakeMeasurer::h100(64);
  EXPECT_FALSE(run(empty, h100_spec(64), {}).best.has_value());
}

TEST(TunerTune, ExactTieGoesToTheSmallerNameEveryTime) {
  // Two configs with identical recorded timings (plus their own 1% noise), one slower.
  const std::map<std::string, double> table{{"m128n64w4s2", 5.0}, {"m128n128w4s2", 5.0}, {"m64n64w4s2", 9.0}};
  const std::vector<TileConfig> forward{TileConfig::parse("m128n64w4s2", "t"), TileConfig::parse("m128n128w4s2", "t"),
                                        TileConfig::parse("m64n64w4s2", "t")};
  const std::vector<TileConfig> reversed(forward.rbegin(), forward.rend());
  std::vector<tuner::TuneResult> results;
  for (int rep = 0; rep < 3; ++rep) {
    for (const auto* configs : {&forward, &reversed}) {
      for (auto strategy : {tuner::Strategy::exhaustive, tuner::Strategy::successive_halving}) {
        FakeMeasurer m(table, 0.01, 20.0);
        results.push_back(run(m, h100_spec(64), *configs, strategy));
        EXPECT_EQ(winner(results.back()), "m128n128w4s2");  // "m128n1..." < "m128n6..."
        // The tie was re-timed: the last 2 * min_reps calls are single runs.
        ASSERT_GE(m.calls.size(), 20u);
        for (std::size_t i = m.calls.size() - 20; i < m.calls.size(); ++i) EXPECT_EQ(m.calls[i].second, 1);
      }
    }
  }
  // Same samples every run (per strategy).
  for (std::size_t i = 4; i < results.size(); ++i) {
    EXPECT_EQ(results[i].best->samples.ms, results[i % 4].best->samples.ms);
  }
}

TEST(TunerTune, NoRetimingWithoutANearTie) {
  FakeMeasurer m({{"m128n64w4s2", 5.0}, {"m128n128w4s2", 6.0}}, 0.01, 20.0);
  const auto r = run(m, h100_spec(64), {TileConfig::parse("m128n128w4s2", "t"), TileConfig::parse("m128n64w4s2", "t")});
  EXPECT_EQ(winner(r), "m128n64w4s2");  // faster, although its name sorts second
  for (const auto& [name, reps] : m.calls) EXPECT_GT(reps, 1) << name;
}

TEST(TunerTune, ResultsAreDeterministic) {
  const KernelSpec spec = h100_spec(128);
  const std::vector<TileConfig> all = sigjit::candidate_configs(spec);
  FakeMeasurer m1 = FakeMeasurer::h100(128), m2 = FakeMeasurer::h100(128);
  const auto a = run(m1, spec, all), b = run(m2, spec, all);
  ASSERT_EQ(a.all.size(), b.all.size());
  for (std::size_t i = 0; i < a.all.size(); ++i) {
    EXPECT_EQ(a.all[i].config.describe(), b.all[i].config.describe());
    EXPECT_EQ(a.all[i].samples.ms, b.all[i].samples.ms);
    EXPECT_EQ(a.all[i].verdict.ok, b.all[i].verdict.ok);
  }
  EXPECT_EQ(winner(a), winner(b));
  EXPECT_EQ(m1.calls, m2.calls);
}

TEST(TunerTune, TimeBudgetStopsRepetition) {
  // 500 ms per run with 10% noise: the spread never reaches 3%, so only the budget stops it.
  FakeMeasurer m({{"m128n64w4s2", 500.0}}, 0.10, 20.0);
  tuner::Budget budget;
  budget.min_reps = 4;
  budget.seconds_per_candidate = 5.0;
  const auto r = run(m, h100_spec(64), {TileConfig::parse("m128n64w4s2", "t")}, tuner::Strategy::exhaustive, budget);
  ASSERT_TRUE(r.best.has_value());
  const auto n = r.best->samples.ms.size();
  EXPECT_GE(n, 4u);   // min_reps always run
  EXPECT_LE(n, 11u);  // ~5 s / 500 ms
  EXPECT_LT(n, 100u);
  EXPECT_GT(r.best->samples.spread(), budget.target_spread);

  // Even min_reps are run when one of them exceeds the budget.
  FakeMeasurer slow({{"m128n64w4s2", 3000.0}}, 0.10, 20.0);
  const auto s = run(slow, h100_spec(64), {TileConfig::parse("m128n64w4s2", "t")}, tuner::Strategy::exhaustive, budget);
  EXPECT_EQ(s.best->samples.ms.size(), 4u);
}

TEST(TunerTune, MaxRepsStopsRepetition) {
  FakeMeasurer m({{"m128n64w4s2", 1.0}}, 0.10, 20.0);
  tuner::Budget budget;
  budget.max_reps = 25;
  const auto r = run(m, h100_spec(64), {TileConfig::parse("m128n64w4s2", "t")}, tuner::Strategy::exhaustive, budget);
  EXPECT_EQ(r.best->samples.ms.size(), 25u);
}

TEST(TunerTune, TargetSpreadStopsRepetition) {
  FakeMeasurer m({{"m128n64w4s2", 1.0}}, 0.0, 20.0);  // no noise: spread 0 after min_reps
  const auto r = run(m, h100_spec(64), {TileConfig::parse("m128n64w4s2", "t")});
  EXPECT_EQ(r.best->samples.ms.size(), 10u);
}

TEST(TunerTune, ProgressCountsStepsMonotonically) {
  const KernelSpec spec = h100_spec(64);
  std::vector<TileConfig> configs = sigjit::candidate_configs(spec);
  configs.push_back(TileConfig(sigjit::Sm80Tile{96, 64, 4, 2}));  // rejected up front: still a step
  for (auto strategy : {tuner::Strategy::exhaustive, tuner::Strategy::successive_halving}) {
    FakeMeasurer m = FakeMeasurer::h100(64);
    m.verdicts["m64n32w4s2"] = {false, "wrong output: rel error 1 > 0.01"};
    std::vector<std::tuple<int, int, std::string>> seen;
    const auto r =
        run(m, spec, configs, strategy, {}, [&](int done, int total, const std::string& msg) { seen.emplace_back(done, total, msg); });
    ASSERT_FALSE(seen.empty());
    for (std::size_t i = 0; i < seen.size(); ++i) {
      const auto& [done, total, msg] = seen[i];
      EXPECT_EQ(done, static_cast<int>(i) + 1);
      EXPECT_LE(done, total);
      EXPECT_FALSE(msg.empty());
    }
    // One step per candidate check plus at least one timing step per checked candidate.
    EXPECT_GE(seen.size(), 2 * configs.size() - 2);
    EXPECT_EQ(std::get<0>(seen.back()), std::get<1>(seen.back()));
    EXPECT_THAT(std::get<2>(seen.back()), HasSubstr("best m128n128w4s2"));
    EXPECT_THAT(std::get<2>(seen[0]), HasSubstr(configs[0].describe()));
    EXPECT_EQ(winner(r), "m128n128w4s2");
  }
}

TEST(TunerTune, DuplicateCandidatesAreTimedOnce) {
  FakeMeasurer m = FakeMeasurer::h100(64);
  std::vector<TileConfig> configs = table_configs(64);
  configs.push_back(configs.front());
  const auto r = run(m, h100_spec(64), configs);
  EXPECT_EQ(r.all.size(), 7u);
  EXPECT_EQ(m.checks.size(), 7u);
}

TEST(TunerTune, RejectsANonsensicalBudget) {
  FakeMeasurer m = FakeMeasurer::h100(64);
  tuner::Budget b;
  b.min_reps = 0;
  EXPECT_THAT([&] { run(m, h100_spec(64), table_configs(64), tuner::Strategy::automatic, b); },
              ::testing::ThrowsMessage<sigjit::Error>(HasSubstr("min_reps")));
  b = {};
  b.max_reps = 5;
  EXPECT_THAT([&] { run(m, h100_spec(64), table_configs(64), tuner::Strategy::automatic, b); },
              ::testing::ThrowsMessage<sigjit::Error>(HasSubstr("max_reps")));
  b = {};
  b.seconds_per_candidate = 0;
  EXPECT_THAT([&] { run(m, h100_spec(64), table_configs(64), tuner::Strategy::automatic, b); },
              ::testing::ThrowsMessage<sigjit::Error>(HasSubstr("seconds_per_candidate")));
}

// ---- representative shapes --------------------------------------------------------------------------

KernelSpec shape_spec(int head_dim, sigjit::Layout layout, SeqBucket bucket) {
  KernelSpec s;
  s.head_dim = head_dim;
  s.layout = layout;
  s.bucket = bucket;
  s.arch = Arch::parse("sm_90");
  return s;
}

const std::vector<std::pair<SeqBucket, int>> kBuckets{
    {SeqBucket::up_to_512, 512}, {SeqBucket::up_to_2k, 2048}, {SeqBucket::up_to_8k, 8192}, {SeqBucket::over_8k, 16384}};

long long sum(const std::vector<int>& v) { return std::accumulate(v.begin(), v.end(), 0LL); }

TEST(TunerShape, DenseFillsSixteenKTokensAtTheBucketLength) {
  for (int hd : {64, 128}) {
    for (const auto& [bucket, L] : kBuckets) {
      const tuner::Shape s = tuner::representative_shape(shape_spec(hd, sigjit::Layout::dense, bucket));
      EXPECT_EQ(s.heads, 2048 / hd);
      EXPECT_EQ(s.batch, 16384 / L);
      ASSERT_EQ(s.seq_lens.size(), static_cast<std::size_t>(s.batch));
      for (int l : s.seq_lens) EXPECT_EQ(l, L);
      EXPECT_EQ(s.describe(), "B=" + std::to_string(16384 / L) + " H=" + std::to_string(2048 / hd) + " L=" + std::to_string(L));
    }
  }
  // User lengths do not apply to dense problems.
  const std::vector<int> user{100, 200};
  EXPECT_EQ(tuner::representative_shape(shape_spec(64, sigjit::Layout::dense, SeqBucket::up_to_2k), &user).seq_lens,
            std::vector<int>(8, 2048));
}

TEST(TunerShape, HeadsFollowAModelWidthOf2048AndTheGqaRatio) {
  auto heads = [](int hd, int gqa) {
    KernelSpec s = shape_spec(hd, sigjit::Layout::dense, SeqBucket::over_8k);
    s.gqa_ratio = gqa;
    return tuner::representative_shape(s).heads;
  };
  EXPECT_EQ(heads(32, 1), 64);
  EXPECT_EQ(heads(96, 1), 21);
  EXPECT_EQ(heads(256, 1), 8);
  EXPECT_EQ(heads(96, 4), 20);
  EXPECT_EQ(heads(128, 8), 16);
  EXPECT_EQ(heads(256, 16), 16);  // at least one KV head
}

TEST(TunerShape, SyntheticRaggedBatches) {
  for (auto layout : {sigjit::Layout::padded, sigjit::Layout::varlen}) {
    for (const auto& [bucket, L] : kBuckets) {
      const tuner::Shape s = tuner::representative_shape(shape_spec(64, layout, bucket));
      SCOPED_TRACE(s.describe());
      EXPECT_EQ(s.heads, 32);
      ASSERT_GE(s.seq_lens.size(), 2u);
      EXPECT_EQ(s.batch, static_cast<int>(s.seq_lens.size()));
      EXPECT_EQ(sum(s.seq_lens), std::max(16384, 2 * L));  // token budget, filled exactly
      EXPECT_EQ(s.seq_lens.front(), L);                    // the longest puts it in the bucket
      EXPECT_EQ(sigjit::seq_bucket_for(*std::max_element(s.seq_lens.begin(), s.seq_lens.end())), bucket);
      for (std::size_t i = 0; i < s.seq_lens.size(); ++i) {
        EXPECT_GE(s.seq_lens[i], 1);
        EXPECT_LE(s.seq_lens[i], L);
        if (i + 1 < s.seq_lens.size()) EXPECT_GE(s.seq_lens[i], L / 8) << i;  // all but the remainder
      }
      // Deterministic, and the same for both ragged layouts.
      EXPECT_EQ(tuner::representative_shape(shape_spec(64, layout, bucket)).seq_lens, s.seq_lens);
      EXPECT_EQ(tuner::representative_shape(shape_spec(128, sigjit::Layout::varlen, bucket)).seq_lens, s.seq_lens);
      EXPECT_THAT(s.describe(), AllOf(HasSubstr("ragged"), HasSubstr("max=" + std::to_string(L))));
    }
  }
  // Log-uniform in [L/8, L]: about half the draws fall below the geometric midpoint L/sqrt(8).
  const tuner::Shape s = tuner::representative_shape(shape_spec(64, sigjit::Layout::varlen, SeqBucket::up_to_512));
  const std::vector<int> draws(s.seq_lens.begin() + 1, s.seq_lens.end() - 1);
  ASSERT_GE(draws.size(), 40u);
  const auto shorter = std::count_if(draws.begin(), draws.end(), [](int l) { return l < 512 / std::sqrt(8.0); });
  EXPECT_GT(shorter, static_cast<long>(draws.size() * 3 / 10));
  EXPECT_LT(shorter, static_cast<long>(draws.size() * 7 / 10));
}

TEST(TunerShape, UserLengthsAreSampledAndClamped) {
  const std::vector<int> user{100, 300, 20000};
  const tuner::Shape s = tuner::representative_shape(shape_spec(64, sigjit::Layout::varlen, SeqBucket::over_8k), &user);
  EXPECT_EQ(sum(s.seq_lens), 32768);
  EXPECT_EQ(s.seq_lens.front(), 16384);  // 20000 clamped to the bucket's L
  std::set<int> values;
  for (std::size_t i = 0; i + 1 < s.seq_lens.size(); ++i) values.insert(s.seq_lens[i]);
  for (int v : values) EXPECT_TRUE(v == 100 || v == 300 || v == 16384) << v;
  EXPECT_LE(s.seq_lens.back(), 16384);
  EXPECT_EQ(tuner::representative_shape(shape_spec(64, sigjit::Layout::varlen, SeqBucket::over_8k), &user).seq_lens, s.seq_lens);

  // Longest user length inside the bucket: kept as the longest sequence.
  const std::vector<int> mid{3000, 500};
  const tuner::Shape m = tuner::representative_shape(shape_spec(64, sigjit::Layout::padded, SeqBucket::up_to_8k), &mid);
  EXPECT_EQ(m.seq_lens.front(), 3000);
  EXPECT_EQ(sum(m.seq_lens), 16384);
  for (std::size_t i = 1; i + 1 < m.seq_lens.size(); ++i) EXPECT_TRUE(m.seq_lens[i] == 3000 || m.seq_lens[i] == 500);

  // User lengths that never reach the bucket: the longest is raised to just inside it.
  const std::vector<int> tiny{100, 300};
  const tuner::Shape t = tuner::representative_shape(shape_spec(64, sigjit::Layout::padded, SeqBucket::up_to_2k), &tiny);
  EXPECT_EQ(t.seq_lens.front(), 513);
  EXPECT_EQ(sigjit::seq_bucket_for(t.seq_lens.front()), SeqBucket::up_to_2k);
  EXPECT_EQ(sum(t.seq_lens), 16384);

  // An empty list means the synthetic distribution; bad lengths are errors.
  const std::vector<int> none;
  EXPECT_EQ(tuner::representative_shape(shape_spec(64, sigjit::Layout::varlen, SeqBucket::up_to_2k), &none).seq_lens,
            tuner::representative_shape(shape_spec(64, sigjit::Layout::varlen, SeqBucket::up_to_2k)).seq_lens);
  const std::vector<int> bad{100, 0};
  EXPECT_THAT([&] { tuner::representative_shape(shape_spec(64, sigjit::Layout::varlen, SeqBucket::up_to_2k), &bad); },
              ::testing::ThrowsMessage<sigjit::Error>(AllOf(HasSubstr("user lengths"), HasSubstr("entry 1"))));
}

// ---- workloads ----------------------------------------------------------------------------------------

const Arch kSm90 = Arch::parse("sm_90");

std::set<std::string> keys(const tuner::Workload& w) {
  std::set<std::string> k;
  for (const auto& s : w.specs) k.insert(sigjit::problem_key(s));
  return k;
}

template <class F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no sigjit::Error thrown; expected one mentioning " << parts.front();
  } catch (const sigjit::Error& e) {
    for (const auto& p : parts) EXPECT_THAT(e.what(), HasSubstr(p));
    EXPECT_EQ(e.kind(), sigjit::ErrorKind::invalid_argument);
  }
}

fs::path write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::path(::testing::TempDir()) / ("sigjit_tuner_" + name);
  std::ofstream(p) << text;
  return p;
}

TEST(TunerWorkload, FlagDefaultsCoverBothHeadDimsAndEveryBucket) {
  const tuner::Workload w = tuner::workload_from_flags({}, kSm90);
  ASSERT_EQ(w.specs.size(), 8u);
  EXPECT_EQ(keys(w).size(), 8u);
  for (const auto& s : w.specs) {
    EXPECT_EQ(s.direction, sigjit::Direction::forward);
    EXPECT_EQ(s.dtype, sigjit::DType::bf16);
    EXPECT_EQ(s.layout, sigjit::Layout::dense);
    EXPECT_FALSE(s.causal);
    EXPECT_EQ(s.sigmoid, sigjit::SigmoidMode::fast);
    EXPECT_EQ(s.bias_mode, sigjit::BiasMode::log_n);
    EXPECT_EQ(s.arch.name(), "sm_90");
  }
  EXPECT_EQ(w.specs[0].head_dim, 64);
  EXPECT_EQ(w.specs[0].bucket, SeqBucket::up_to_512);
  EXPECT_EQ(w.specs[3].bucket, SeqBucket::over_8k);
  EXPECT_EQ(w.specs[4].head_dim, 128);
  EXPECT_TRUE(w.user_lengths.empty());
}

TEST(TunerWorkload, FlagsAreACartesianProductWithBucketsDeduplicated) {
  tuner::WorkloadFlags f;
  f.head_dims = {64};
  f.dtypes = {"bf16", "fp16"};
  f.layouts = {"dense", "varlen"};
  f.causal = {false, true};
  f.sigmoid = {"fast", "exact"};
  f.seq_lens = {512};
  EXPECT_EQ(tuner::workload_from_flags(f, kSm90).specs.size(), 16u);

  f = {};
  f.head_dims = {128};
  f.seq_lens = {100, 512, 600, 2048, 3000, 8192, 100};  // le512, le2k, le8k
  const tuner::Workload w = tuner::workload_from_flags(f, kSm90);
  ASSERT_EQ(w.specs.size(), 3u);
  EXPECT_EQ(w.specs[0].bucket, SeqBucket::up_to_512);
  EXPECT_EQ(w.specs[1].bucket, SeqBucket::up_to_2k);
  EXPECT_EQ(w.specs[2].bucket, SeqBucket::up_to_8k);
}

TEST(TunerWorkload, CausalAlignDoublesOnlyCausalSpecsAndOnlyWhenAsked) {
  tuner::WorkloadFlags f;
  f.head_dims = {128};
  f.causal = {false, true};
  f.seq_lens = {512};
  const tuner::Workload def = tuner::workload_from_flags(f, kSm90);  // bottom-right only
  ASSERT_EQ(def.specs.size(), 2u);
  for (const auto& s : def.specs) EXPECT_EQ(s.causal_align, sigjit::CausalAlign::bottom_right);
  EXPECT_EQ(keys(def), (std::set<std::string>{"fwd_bf16_d128_dense_full_logn_nosb_fast_le512_sm_90",
                                              "fwd_bf16_d128_dense_causal_logn_nosb_fast_le512_sm_90"}));

  f.causal_align = {"bottom-right", "top_left"};  // both spellings
  const tuner::Workload both = tuner::workload_from_flags(f, kSm90);
  ASSERT_EQ(both.specs.size(), 3u);  // the non-causal spec once
  EXPECT_EQ(keys(both).count("fwd_bf16_d128_dense_causaltl_logn_nosb_fast_le512_sm_90"), 1u);
  for (const auto& s : both.specs)
    if (!s.causal) EXPECT_EQ(s.causal_align, sigjit::CausalAlign::bottom_right);

  f.causal = {false};
  f.causal_align = {"top-left"};
  expect_error([&] { tuner::workload_from_flags(f, kSm90); }, {"--causal-align", "causal specs only", "--causal"});
  f.causal = {true};
  f.causal_align = {"top-right"};
  expect_error([&] { tuner::workload_from_flags(f, kSm90); }, {"--causal-align", "'top-right'", "bottom_right, top_left"});
}

TEST(TunerWorkload, JsonCausalAlign) {
  const tuner::Workload w = tuner::workload_from_json(
      nlohmann::json::parse(R"({"specs": [{"head_dim": 64, "causal": true, "causal_align": "top_left", "seq": 4096}]})"), kSm90);
  ASSERT_EQ(w.specs.size(), 1u);
  EXPECT_TRUE(w.specs[0].top_left());
  const tuner::Workload flags = tuner::workload_from_json(
      nlohmann::json::parse(R"({"head_dims": [64], "seq_lens": [512], "causal": [true], "causal_align": ["bottom_right", "top_left"]})"),
      kSm90);
  EXPECT_EQ(flags.specs.size(), 2u);
  expect_error(
      [] {
        tuner::workload_from_json(nlohmann::json::parse(R"({"specs": [{"head_dim": 64, "causal_align": "top_left", "seq": 512}]})"), kSm90);
      },
      {"specs[0].causal_align", "causal"});
}

TEST(TunerWorkload, FlagErrorsNameTheFlagAndTheAllowedValues) {
  auto with = [](auto edit) {
    tuner::WorkloadFlags f;
    edit(f);
    return [f] { tuner::workload_from_flags(f, kSm90); };
  };
  expect_error(with([](auto& f) { f.head_dims = {64, 80}; }), {"--head-dim", "80", "32, 64, 96, 128, 256"});
  expect_error(with([](auto& f) { f.dtypes = {"fp32"}; }), {"--dtype", "'fp32'", "bf16, fp16"});
  expect_error(with([](auto& f) { f.layouts = {"ragged"}; }), {"--layout", "'ragged'", "dense, padded, varlen"});
  expect_error(with([](auto& f) { f.seq_lens = {512, 0}; }), {"--seq", "0", "positive"});
  expect_error(with([](auto& f) { f.seq_lens = {-5}; }), {"--seq", "-5"});
  expect_error(with([](auto& f) { f.sigmoid = {"slow"}; }), {"--sigmoid", "'slow'", "fast, exact"});
  expect_error(with([](auto& f) { f.directions = {"bwd_dq_convert"}; }), {"--direction", "one config", "bwd_det"});
  expect_error(with([](auto& f) { f.directions = {"up"}; }), {"--direction", "'up'", "fwd, bwd, bwd_det, bwd_fused, bwd_dkdv, bwd_dq"});
  expect_error(with([](auto& f) { f.head_dims.clear(); }), {"--head-dim", "empty"});
  expect_error(with([](auto& f) { f.dtypes.clear(); }), {"--dtype", "empty"});
  expect_error(with([](auto& f) { f.layouts.clear(); }), {"--layout", "empty"});
  expect_error(with([](auto& f) { f.seq_lens.clear(); }), {"--seq", "empty"});
  expect_error(with([](auto& f) { f.causal.clear(); }), {"--causal", "empty"});
  expect_error(with([](auto& f) { f.sigmoid.clear(); }), {"--sigmoid", "empty"});
  expect_error(with([](auto& f) { f.directions.clear(); }), {"--direction", "empty"});
}

TEST(TunerWorkload, LengthsFileAsLinesOrJsonArray) {
  tuner::WorkloadFlags f;
  f.lengths_file = write_temp("lines.txt", "# token counts\n100\n\n  2500 \r\n17\n").string();
  EXPECT_EQ(tuner::workload_from_flags(f, kSm90).user_lengths, (std::vector<int>{100, 2500, 17}));
  f.lengths_file = write_temp("array.json", " [512, 64,\n 9000]\n").string();
  EXPECT_EQ(tuner::workload_from_flags(f, kSm90).user_lengths, (std::vector<int>{512, 64, 9000}));
}

TEST(TunerWorkload, LengthsFileErrors) {
  auto load = [](const std::string& path) {
    return [path] {
      tuner::WorkloadFlags f;
      f.lengths_file = path;
      tuner::workload_from_flags(f, kSm90);
    };
  };
  expect_error(load("/nonexistent/lengths.txt"), {"--lengths-file", "cannot open", "/nonexistent/lengths.txt"});
  expect_error(load(write_temp("empty.txt", "\n  \n").string()), {"--lengths-file", "empty"});
  expect_error(load(write_temp("comments.txt", "# nothing\n").string()), {"--lengths-file", "no lengths"});
  expect_error(load(write_temp("word.txt", "100\nlots\n").string()), {"--lengths-file", "line 2", "'lots'", "positive integer"});
  expect_error(load(write_temp("neg.txt", "100\n-3\n").string()), {"--lengths-file", "line 2", "'-3'"});
  expect_error(load(write_temp("zero.txt", "0\n").string()), {"--lengths-file", "line 1"});
  expect_error(load(write_temp("float.txt", "12.5\n").string()), {"--lengths-file", "line 1", "'12.5'"});
  expect_error(load(write_temp("two.txt", "12 13\n").string()), {"--lengths-file", "line 1"});
  expect_error(load(write_temp("huge.txt", "99999999999999999999\n").string()), {"--lengths-file", "line 1"});
  expect_error(load(write_temp("badjson.json", "[1, 2,").string()), {"--lengths-file", "not valid JSON"});
  expect_error(load(write_temp("strjson.json", "[1, \"2\"]").string()), {"--lengths-file", "entry 1", "positive integers"});
  expect_error(load(write_temp("emptyjson.json", "[]").string()), {"--lengths-file", "empty"});
}

TEST(TunerWorkload, JsonSpecList) {
  const json j = json::parse(R"({"specs": [
      {"head_dim": 128, "dtype": "bf16", "layout": "padded", "causal": false, "bias": "log_n", "score_bias": false,
       "sigmoid": "fast", "direction": "fwd", "seq": 16384},
      {"head_dim": 64, "seq": 300},
      {"head_dim": 64, "bucket": "le512"},
      {"head_dim": 96, "dtype": "fp16", "layout": "varlen", "causal": true, "bias": "scalar", "score_bias": true,
       "sigmoid": "exact", "bucket": "le8k", "gqa_ratio": 4}],
    "lengths": [300, 1200]})");
  const tuner::Workload w = tuner::workload_from_json(j, kSm90);
  ASSERT_EQ(w.specs.size(), 3u);  // the second and third are the same problem
  EXPECT_EQ(w.specs[0].head_dim, 128);
  EXPECT_EQ(w.specs[0].layout, sigjit::Layout::padded);
  EXPECT_EQ(w.specs[0].bucket, SeqBucket::over_8k);
  EXPECT_EQ(w.specs[1].head_dim, 64);
  EXPECT_EQ(w.specs[1].layout, sigjit::Layout::dense);
  EXPECT_EQ(w.specs[1].bucket, SeqBucket::up_to_512);
  const KernelSpec& s = w.specs[2];
  EXPECT_EQ(s.dtype, sigjit::DType::fp16);
  EXPECT_EQ(s.layout, sigjit::Layout::varlen);
  EXPECT_TRUE(s.causal);
  EXPECT_EQ(s.bias_mode, sigjit::BiasMode::scalar);
  EXPECT_TRUE(s.score_bias);
  EXPECT_EQ(s.sigmoid, sigjit::SigmoidMode::exact);
  EXPECT_EQ(s.bucket, SeqBucket::up_to_8k);
  EXPECT_EQ(s.gqa_ratio, 4);
  EXPECT_EQ(s.arch.name(), "sm_90");
  EXPECT_EQ(w.user_lengths, (std::vector<int>{300, 1200}));
}

TEST(TunerWorkload, JsonFlagsObject) {
  const json j = json::parse(R"({"head_dims": [128], "layouts": ["dense", "varlen"], "seq_lens": [16384, 1000],
                                  "causal": [false], "lengths": [50, 60]})");
  const tuner::Workload w = tuner::workload_from_json(j, kSm90);
  EXPECT_EQ(w.specs.size(), 4u);
  EXPECT_EQ(w.user_lengths, (std::vector<int>{50, 60}));
  // A single value stands for a one-element list; missing keys keep the flag defaults.
  const tuner::Workload one = tuner::workload_from_json(json::parse(R"({"head_dims": 64, "causal": true})"), kSm90);
  EXPECT_EQ(one.specs.size(), 4u);
  for (const auto& s : one.specs) EXPECT_TRUE(s.causal);
  EXPECT_EQ(tuner::workload_from_json(json::object(), kSm90).specs.size(), 8u);
  // lengths_file inside JSON.
  const std::string path = write_temp("json_lens.txt", "7\n8\n").string();
  EXPECT_EQ(tuner::workload_from_json(json{{"lengths_file", path}}, kSm90).user_lengths, (std::vector<int>{7, 8}));
  EXPECT_EQ(tuner::workload_from_json(json::parse(R"({"specs":[{"head_dim":64,"seq":512}]})"), kSm90).user_lengths.size(), 0u);
}

TEST(TunerWorkload, JsonErrorsNameTheField) {
  auto parse = [](const std::string& text) { return [text] { tuner::workload_from_json(json::parse(text), kSm90); }; };
  expect_error(parse("[1, 2]"), {"workload JSON", "expected an object"});
  expect_error(parse(R"({"specs": {"head_dim": 64}})"), {"specs", "expected an array"});
  expect_error(parse(R"({"specs": []})"), {"specs", "empty"});
  expect_error(parse(R"({"specs": [42]})"), {"specs[0]", "expected an object"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "colour": "red", "mood": 1}]})"),
               {"specs[0]", "unknown keys", "'colour'", "'mood'", "allowed: head_dim"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512}], "head_dims": [64]})"), {"unknown key", "'head_dims'", "specs, lengths"});
  expect_error(parse(R"({"head_dim": [64]})"), {"workload JSON", "unknown key", "'head_dim'", "head_dims"});
  expect_error(parse(R"({"specs": [{"seq": 512}]})"), {"specs[0]", "missing 'head_dim'"});
  expect_error(parse(R"({"specs": [{"head_dim": 64}]})"), {"specs[0]", "'seq'", "'bucket'"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "bucket": "le512"}]})"), {"specs[0]", "exactly one"});
  expect_error(parse(R"({"specs": [{"head_dim": "128", "seq": 512}]})"), {"specs[0].head_dim", "expected an integer"});
  expect_error(parse(R"({"specs": [{"head_dim": 80, "seq": 512}]})"), {"specs[0].head_dim", "80", "32, 64, 96, 128, 256"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 0}]})"), {"specs[0].seq", "positive"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 1.5}]})"), {"specs[0].seq", "expected an integer"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "causal": "no"}]})"), {"specs[0].causal", "true or false"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "score_bias": 1}]})"), {"specs[0].score_bias", "true or false"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "dtype": "fp4"}]})"), {"specs[0].dtype", "bf16, fp16, fp8"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "dtype": 16}]})"), {"specs[0].dtype", "expected a string"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "layout": "jagged"}]})"), {"specs[0].layout", "dense, padded, varlen"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "bias": "alibi"}]})"), {"specs[0].bias", "log_n, scalar"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "sigmoid": "relu"}]})"), {"specs[0].sigmoid", "fast, exact"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "direction": "back"}]})"), {"specs[0].direction", "'back'", "bwd_det"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "bucket": "le4k"}]})"), {"specs[0].bucket", "le512, le2k, le8k, gt8k"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512, "gqa_ratio": 0}]})"), {"specs[0].gqa_ratio", "at least 1"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512}], "lengths": [1, -2]})"), {"lengths", "entry 1"});
  expect_error(parse(R"({"specs": [{"head_dim": 64, "seq": 512}], "lengths": 5})"), {"lengths", "array"});
  expect_error(parse(R"({"lengths": []})"), {"lengths", "empty"});
  expect_error(parse(R"({"lengths": [1], "lengths_file": "x"})"), {"'lengths' or 'lengths_file'"});
  expect_error(parse(R"({"head_dims": [64, "128"]})"), {"workload JSON: head_dims[1]", "expected an integer"});
  expect_error(parse(R"({"head_dims": [48]})"), {"workload JSON: head_dims", "48"});
  expect_error(parse(R"({"layouts": ["dense", 3]})"), {"workload JSON: layouts[1]", "expected a string"});
  expect_error(parse(R"({"causal": ["yes"]})"), {"workload JSON: causal[0]", "true or false"});
  expect_error(parse(R"({"directions": ["bwd_dq_convert"]})"), {"workload JSON: directions", "one config"});
  expect_error(parse(R"({"seq_lens": []})"), {"workload JSON: seq_lens", "empty"});
  expect_error(parse(R"({"lengths_file": 3})"), {"workload JSON: lengths_file", "expected a string"});
  expect_error(parse(R"({"lengths_file": "/nonexistent/lens"})"), {"workload JSON: lengths_file", "cannot open"});
}

TEST(TunerWorkload, SingleCellPreset) {
  const tuner::Workload w = tuner::preset("single-cell", kSm90);
  // 2 head dims x 3 layouts x 4 buckets, for the forward and for each kernel of the backward the
  // library runs by default (the fused one).
  ASSERT_EQ(w.specs.size(), 24u * 2);
  EXPECT_EQ(keys(w).size(), w.specs.size());
  std::set<int> dims;
  std::set<sigjit::Layout> layouts;
  std::set<SeqBucket> buckets;
  std::map<sigjit::Direction, int> directions;
  for (const auto& s : w.specs) {
    dims.insert(s.head_dim);
    layouts.insert(s.layout);
    buckets.insert(s.bucket);
    ++directions[s.direction];
    EXPECT_EQ(s.dtype, sigjit::DType::bf16);
    EXPECT_FALSE(s.causal);
    EXPECT_EQ(s.sigmoid, sigjit::SigmoidMode::fast);
    EXPECT_EQ(s.arch.name(), "sm_90");
  }
  EXPECT_EQ(dims, (std::set<int>{64, 128}));
  EXPECT_EQ(layouts.size(), 3u);
  EXPECT_EQ(buckets.size(), 4u);
  EXPECT_EQ(directions, (std::map<sigjit::Direction, int>{{sigjit::Direction::forward, 24}, {sigjit::Direction::backward_fused, 24}}));
  EXPECT_TRUE(w.user_lengths.empty());
}

TEST(TunerWorkload, PresetDirectionsCanBeNarrowed) {
  const tuner::Workload fwd = tuner::preset("single-cell", kSm90, {"fwd"});
  ASSERT_EQ(fwd.specs.size(), 24u);
  for (const auto& s : fwd.specs) EXPECT_EQ(s.direction, sigjit::Direction::forward);
  const tuner::Workload bwd = tuner::preset("single-cell", kSm90, {"bwd"});
  ASSERT_EQ(bwd.specs.size(), 24u);
  for (const auto& s : bwd.specs) EXPECT_EQ(s.direction, sigjit::Direction::backward_fused);
  expect_error([] { tuner::preset("single-cell", kSm90, {"sideways"}); }, {"preset 'single-cell'", "sideways"});
}

TEST(TunerWorkload, BackwardDirectionsMapToTheirKernels) {
  auto directions = [](std::vector<std::string> names) {
    tuner::WorkloadFlags f;
    f.head_dims = {64};
    f.seq_lens = {512};
    f.directions = std::move(names);
    std::vector<sigjit::Direction> out;
    for (const auto& s : tuner::workload_from_flags(f, kSm90).specs) out.push_back(s.direction);
    return out;
  };
  using D = sigjit::Direction;
  EXPECT_EQ(directions({"bwd"}), (std::vector<D>{D::backward_fused}));
  EXPECT_EQ(directions({"bwd_det"}), (std::vector<D>{D::backward_dkdv, D::backward_dq}));
  EXPECT_EQ(directions({"fwd", "bwd", "bwd_fused"}), (std::vector<D>{D::forward, D::backward_fused}));  // deduplicated
  EXPECT_EQ(directions({"bwd_dq", "bwd_dkdv"}), (std::vector<D>{D::backward_dq, D::backward_dkdv}));
  const tuner::Workload w = tuner::workload_from_json(
      nlohmann::json::parse(R"({"specs": [{"head_dim": 128, "seq": 2048, "direction": "bwd_det"}, {"head_dim": 128, "seq": 2048, "direction": "bwd"}]})"),
      kSm90);
  ASSERT_EQ(w.specs.size(), 3u);
  EXPECT_EQ(w.specs[0].direction, D::backward_dkdv);
  EXPECT_EQ(w.specs[1].direction, D::backward_dq);
  EXPECT_EQ(w.specs[2].direction, D::backward_fused);
}

// FP8 is the Hopper forward alone: a workload that asks for it anywhere else is refused before any
// compile (it used to fall back to a portable config that NVRTC cannot build for e4m3).
TEST(TunerWorkload, Fp8IsTunedOnlyWhereAKernelServesIt) {
  const Arch sm90a = Arch::parse("sm_90a");
  tuner::WorkloadFlags f;
  f.dtypes = {"fp8"};
  f.head_dims = {64, 128};
  f.layouts = {"dense", "padded", "varlen"};
  f.seq_lens = {512, 16384};
  const tuner::Workload w = tuner::workload_from_flags(f, sm90a);
  ASSERT_EQ(w.specs.size(), 12u);
  for (const auto& s : w.specs) {
    EXPECT_EQ(s.dtype, sigjit::DType::fp8_e4m3);
    EXPECT_EQ(sigjit::unserved_reason(s), "") << s.describe();
    for (const sigjit::TileConfig& c : sigjit::candidate_configs(s)) EXPECT_EQ(c.family(), sigjit::KernelFamily::sm90) << c.describe();
  }
  expect_error([&] { tuner::workload_from_flags(f, kSm90); }, {"--dtype", "fp8", "sm_90a", "arch=sm_90"});  // no wgmma without the a
  f.directions = {"fwd", "bwd"};
  expect_error([&] { tuner::workload_from_flags(f, sm90a); }, {"--dtype", "bwd_fused fp8", "forward only"});
  f.directions = {"bwd_det"};
  expect_error([&] { tuner::workload_from_flags(f, sm90a); }, {"--dtype", "fp8", "forward only"});
  f.directions = {"fwd"};
  f.head_dims = {32};
  expect_error([&] { tuner::workload_from_flags(f, sm90a); }, {"--dtype", "hd32", "head dims 64 and 128"});
  expect_error(
      [] {
        tuner::workload_from_json(nlohmann::json::parse(R"({"specs": [{"head_dim": 64, "dtype": "fp8", "seq": 512, "direction": "bwd"}]})"),
                                  Arch::parse("sm_90a"));
      },
      {"workload JSON: specs[0]", "forward only"});
  // Every 16-bit spec is served (the portable family at least).
  f.dtypes = {"bf16", "fp16"};
  f.head_dims = {32, 64, 96, 128, 256};
  f.directions = {"fwd", "bwd", "bwd_det"};
  EXPECT_NO_THROW(tuner::workload_from_flags(f, kSm90));
  EXPECT_NO_THROW(tuner::workload_from_flags(f, Arch::parse("sm_80")));
}

TEST(TunerWorkload, PresetNames) {
  const auto names = tuner::preset_names();
  EXPECT_THAT(names, ::testing::Contains("single-cell"));
  for (const auto& n : names) EXPECT_NO_THROW(tuner::preset(n, kSm90));
  expect_error([] { tuner::preset("multi-cell", kSm90); }, {"preset", "'multi-cell'", "single-cell"});
}

}  // namespace
