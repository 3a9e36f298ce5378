// The lookup counters' shard files (cache/counters.hpp) and `sigjit stats` over them: counts
// written and read back, persisted by processes that exit without flushing, a forked child that
// counts only its own, the periodic flush, --zero, hostile or corrupt shards (skipped when read, a
// logged reset when flushed over, never a crash), a stats/ that is a link (nothing written through
// it), and readers that create nothing (a missing, empty or populated cache left as it was).
#include "cache/counters.hpp"
#include "tests/common/cache_test_files.hpp"
#include "tests/common/run_command.hpp"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sigjit::cache::Counter;
using sigjit::cache::CounterValues;
using sigjit::test::read_text;
using sigjit::test::write_text;
using ::testing::HasSubstr;

constexpr const char* kChildRootEnv = "COUNTERS_TEST_CHILD_ROOT";  // not a SIGJIT_ switch: the child test's input

std::uint64_t at(const CounterValues& v, Counter c) { return v[static_cast<std::size_t>(c)]; }

std::string own_shard(int plus = 0) { return fmt::format("stats_{:02d}.json", (::getpid() + plus) % sigjit::cache::kCounterShards); }

// Every path under `dir` with its size and modification time: what a reader must leave alone.
std::vector<std::string> snapshot(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return {"absent"};
  std::vector<std::string> out;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    out.push_back(fmt::format("{} {} {}.{}", it->path().string(), st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
  }
  std::sort(out.begin(), out.end());
  return out;
}

sigjit::test::CommandResult stats_cli(const fs::path& root, const std::string& args) {
  return sigjit::test::run_command("env -u SIGJIT_REMOTE_CACHE SIGJIT_CACHE_DIR='" + root.string() + "' '" SIGJIT_CLI_PATH "' stats " +
                                   args + " 2>&1");
}

class Counters : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("sigjit_counters_{}_{}", ::getpid(), std::chrono::steady_clock::now().time_since_epoch().count());
    root_ = dir_ / "cache";
    fs::create_directories(root_);
    // What earlier tests of this process counted goes to this root, and is zeroed. No periodic
    // flush during a test (FlushedPeriodically sets its own interval): each flush here is asked for.
    sigjit::cache::persist_counters(root_, std::chrono::hours(1));
    sigjit::cache::flush_counters();
    sigjit::cache::zero_counters(root_);
  }
  void TearDown() override {
    sigjit::cache::persist_counters({});
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static void count(Counter c, int n) {
    for (int i = 0; i < n; ++i) sigjit::cache::count(c);
  }

  fs::path dir_, root_;
};

TEST_F(Counters, CountedFlushedAndReadBack) {
  count(Counter::local_hit, 3);
  count(Counter::remote_miss, 1);
  count(Counter::remote_refused, 2);
  EXPECT_GE(at(sigjit::cache::pending_counters(), Counter::local_hit), 3u);
  ASSERT_TRUE(sigjit::cache::flush_counters());
  EXPECT_EQ(at(sigjit::cache::pending_counters(), Counter::local_hit), 0u);
  const auto r = sigjit::cache::read_counters(root_);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(at(r.totals, Counter::local_hit), 3u);
  EXPECT_EQ(at(r.totals, Counter::remote_miss), 1u);
  EXPECT_EQ(at(r.totals, Counter::remote_refused), 2u);
  EXPECT_EQ(at(r.totals, Counter::process_hit), 0u);
  EXPECT_TRUE(fs::is_regular_file(root_ / "stats" / own_shard()));
  EXPECT_TRUE(fs::is_empty(root_ / "tmp")) << "no temp file left behind";
  // A second flush adds to the same shard.
  count(Counter::local_hit, 2);
  ASSERT_TRUE(sigjit::cache::flush_counters());
  EXPECT_EQ(at(sigjit::cache::read_counters(root_).totals, Counter::local_hit), 5u);

  const auto text = stats_cli(root_, "");
  EXPECT_EQ(text.code, 0) << text.out;
  EXPECT_THAT(text.out, HasSubstr("local store:      5 hits, 0 misses"));
  EXPECT_THAT(text.out, HasSubstr("2 records refused"));
  const auto js = stats_cli(root_, "--json");
  ASSERT_EQ(js.code, 0) << js.out;
  const auto j = nlohmann::json::parse(js.out);
  EXPECT_EQ(j["counters"]["tiers"]["local"]["hit"], 5);
  EXPECT_EQ(j["counters"]["tiers"]["remote"]["refused"], 2);
  EXPECT_EQ(j["counters"]["tiers"]["process"]["miss"], 0);
}

// Run by PersistedAcrossProcesses in a fresh process: counts, never flushes, exits normally.
TEST(CountersChild, DISABLED_CountAndExit) {
  const char* root = std::getenv(kChildRootEnv);
  ASSERT_NE(root, nullptr);
  sigjit::cache::persist_counters(root);
  for (int i = 0; i < 5; ++i) sigjit::cache::count(Counter::process_hit);
  sigjit::cache::count(Counter::remote_error);
}

TEST_F(Counters, PersistedAcrossProcesses) {
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string cmd = std::string(kChildRootEnv) + "='" + root_.string() + "' '" + self +
                          "' --gtest_also_run_disabled_tests --gtest_filter=CountersChild.DISABLED_CountAndExit > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto r = sigjit::cache::read_counters(root_);
  EXPECT_EQ(at(r.totals, Counter::process_hit), 10u) << "each process's counts are saved at its exit";
  EXPECT_EQ(at(r.totals, Counter::remote_error), 2u);
}

TEST_F(Counters, AForkedChildCountsOnlyItsOwn) {
  count(Counter::local_miss, 3);  // pending in the parent when it forks
  const pid_t pid = ::fork();
  if (pid == 0) {
    sigjit::cache::count(Counter::local_miss);
    std::exit(0);  // the exit flush: the child's one count, not the parent's three again
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(sigjit::cache::flush_counters());
  EXPECT_EQ(at(sigjit::cache::read_counters(root_).totals, Counter::local_miss), 4u);
}

TEST_F(Counters, FlushedPeriodicallyWithoutAskingFor) {
  sigjit::cache::persist_counters(root_, std::chrono::milliseconds(200));
  count(Counter::process_miss, 7);
  const auto t0 = std::chrono::steady_clock::now();
  while (at(sigjit::cache::read_counters(root_).totals, Counter::process_miss) != 7 &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(at(sigjit::cache::read_counters(root_).totals, Counter::process_miss), 7u);
}

TEST_F(Counters, ZeroResetsEveryShardAndRecordsWhen) {
  count(Counter::remote_hit, 4);
  ASSERT_TRUE(sigjit::cache::flush_counters());
  write_text(root_ / "stats" / own_shard(1), R"({"sigjit_counters":1,"counters":{"remote.hit":6}})");  // another process's
  EXPECT_EQ(at(sigjit::cache::read_counters(root_).totals, Counter::remote_hit), 10u);
  const std::int64_t before = std::time(nullptr);
  const auto z = stats_cli(root_, "--zero");
  ASSERT_EQ(z.code, 0) << z.out;
  EXPECT_THAT(z.out, HasSubstr("zeroed the lookup counters"));
  const auto r = sigjit::cache::read_counters(root_);
  EXPECT_EQ(at(r.totals, Counter::remote_hit), 0u);
  EXPECT_EQ(r.files, 2);
  ASSERT_TRUE(r.zeroed_at);
  EXPECT_GE(*r.zeroed_at, before);
  EXPECT_THAT(stats_cli(root_, "").out, HasSubstr("UTC (`sigjit stats --zero`)"));
  EXPECT_EQ(stats_cli(root_, "-z --json").code, 0);
}

TEST_F(Counters, HostileShardsAreSkippedWhenRead) {
  const fs::path stats = root_ / "stats";
  fs::create_directories(stats);
  const std::vector<std::string> bad = {
      "garbage",
      R"({"sigjit_counters":2,"counters":{}})",
      R"({"sigjit_counters":1,"counters":{"local.hit":-1}})",
      R"({"sigjit_counters":1,"counters":{"local.hit":1.5}})",
      R"({"sigjit_counters":1,"counters":{"local.hit":"3"}})",
      R"({"sigjit_counters":1,"counters":{"Local Hit":3}})",
      R"({"sigjit_counters":1,"counters":[1,2]})",
      R"({"sigjit_counters":1,"counters":{"local.hit":99999999999999999999999}})",
      R"({"sigjit_counters":1,"counters":{}, "zeroed_at":-5})",
      R"({"sigjit_counters":1,"counters":{"a":{"b":{"c":{"d":1}}}}})",
      std::string(5000, ' ') + "{}",  // over the size bound
  };
  for (const std::string& text : bad) {
    fs::remove_all(stats);
    fs::create_directories(stats);
    write_text(stats / "stats_01.json", text);
    write_text(stats / "stats_02.json", R"({"sigjit_counters":1,"counters":{"local.hit":2}})");
    const auto r = sigjit::cache::read_counters(root_);
    EXPECT_EQ(r.problems.size(), 1u) << text.substr(0, 80);
    EXPECT_EQ(r.files, 1) << text.substr(0, 80);
    EXPECT_EQ(at(r.totals, Counter::local_hit), 2u) << text.substr(0, 80);
  }
  // Too many names (a newer sigjit's are kept, within a bound).
  std::string many = R"({"sigjit_counters":1,"counters":{)";
  for (int i = 0; i < 100; ++i) many += fmt::format("{}\"x{}\":1", i ? "," : "", i);
  write_text(stats / "stats_01.json", many + "}}");
  EXPECT_EQ(sigjit::cache::read_counters(root_).problems.size(), 1u);
  // A link, a FIFO (never opened for a blocking read) and a directory in a shard's place.
  fs::remove(stats / "stats_01.json");
  fs::create_symlink(stats / "stats_02.json", stats / "stats_03.json");
  ASSERT_EQ(::mkfifo((stats / "stats_04.json").c_str(), 0644), 0);
  fs::create_directories(stats / "stats_05.json");
  const auto r = sigjit::cache::read_counters(root_);
  EXPECT_EQ(r.problems.size(), 3u);
  EXPECT_EQ(at(r.totals, Counter::local_hit), 2u);
  const auto cli = stats_cli(root_, "");
  EXPECT_EQ(cli.code, 0) << cli.out;
  EXPECT_THAT(cli.out, HasSubstr("skipped stats/stats_04.json"));
}

TEST_F(Counters, ACorruptShardIsALoggedResetWhenFlushedOver) {
  const fs::path shard = root_ / "stats" / own_shard();  // the one this process's flush takes first
  fs::create_directories(shard.parent_path());
  write_text(shard, "{\"sigjit_counters\":1,\"counters\":{\"local.hit\":\x01");
  count(Counter::local_hit, 2);
  ::testing::internal::CaptureStderr();
  const bool flushed = sigjit::cache::flush_counters();
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(flushed);
  EXPECT_THAT(log, HasSubstr("stats/" + own_shard() + " is unreadable"));
  EXPECT_THAT(log, HasSubstr("start again from zero"));
  const auto r = sigjit::cache::read_counters(root_);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(at(r.totals, Counter::local_hit), 2u);
  EXPECT_THAT(read_text(shard), HasSubstr("\"local.hit\":2"));
}

TEST_F(Counters, NothingIsWrittenThroughALinkedStatsDirectory) {
  fs::remove_all(root_ / "stats");
  const fs::path elsewhere = dir_ / "elsewhere";
  fs::create_directories(elsewhere);
  fs::create_directory_symlink(elsewhere, root_ / "stats");
  count(Counter::local_hit, 1);
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(sigjit::cache::flush_counters());
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("not saved"));
  EXPECT_TRUE(fs::is_empty(elsewhere));
  EXPECT_EQ(at(sigjit::cache::pending_counters(), Counter::local_hit), 1u) << "kept for a later flush";
  EXPECT_THAT(sigjit::cache::read_counters(root_).problems, ::testing::SizeIs(1));
  fs::remove(root_ / "stats");
  EXPECT_TRUE(sigjit::cache::flush_counters());
}

// Readers create nothing (commit 4afd707's rule for read-only commands): stats and stats --json on
// a missing, an empty and a populated cache, and --zero where there is nothing to zero.
TEST_F(Counters, ReadersCreateNothing) {
  count(Counter::local_hit, 1);
  ASSERT_TRUE(sigjit::cache::flush_counters());
  sigjit::cache::persist_counters({});
  const fs::path missing = dir_ / "missing", empty = dir_ / "empty";
  fs::create_directories(empty);
  for (const fs::path& root : {missing, empty, root_}) {
    const auto before = snapshot(root);
    for (const char* args : {"", "--json"}) {
      const auto r = stats_cli(root, args);
      EXPECT_EQ(r.code, 0) << root << " " << args << ": " << r.out;
      EXPECT_EQ(snapshot(root), before) << "sigjit stats " << args << " changed " << root;
    }
    (void)sigjit::cache::read_counters(root);
    EXPECT_EQ(snapshot(root), before) << root;
  }
  for (const fs::path& root : {missing, empty}) {
    const auto before = snapshot(root);
    EXPECT_EQ(stats_cli(root, "--zero").code, 0) << root;
    EXPECT_EQ(sigjit::cache::zero_counters(root), 0);
    EXPECT_EQ(snapshot(root), before) << "sigjit stats --zero changed " << root;
  }
  // A read-only cache: stats reads it. (root ignores the mode bits, so this half needs another user.)
  if (::geteuid() == 0) return;
  fs::permissions(root_, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write, fs::perm_options::remove);
  const auto r = stats_cli(root_, "");
  fs::permissions(root_, fs::perms::owner_write, fs::perm_options::add);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("local store:      1 hits"));
}

}  // namespace
