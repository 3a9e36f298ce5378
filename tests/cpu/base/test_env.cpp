// The SIGJIT_* switches (base/env.hpp): every one the sources name is in the one table, none is
// read around it, and the readers mean what the table says.
#include "base/env.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

namespace {

namespace fs = std::filesystem;

const fs::path kRoot = fs::path(SIGJIT_GOLDEN_DIR).parent_path().parent_path();

std::vector<fs::path> library_sources() {
  std::vector<fs::path> out;
  for (const char* folder : {"base", "problem", "cuda", "kernels", "cache", "jit", "tune", "runtime", "cli"})
    for (const auto& e : fs::directory_iterator(kRoot / folder))
      if (e.path().extension() == ".cpp" || e.path().extension() == ".hpp") out.push_back(e.path());
  return out;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(EnvSwitches, EverySwitchTheSourcesNameIsInTheTable) {
  std::set<std::string> table;
  for (const auto& s : sigjit::env::switches()) {
    EXPECT_TRUE(table.insert(std::string(s.name)).second) << s.name << " is listed twice";
    EXPECT_FALSE(s.effect.empty()) << s.name;
  }
  // A string literal that starts with a switch name: read, documented or printed in a message.
  const std::regex literal("\"(SIGJIT_[A-Z0-9_]+)");
  int named = 0;
  for (const fs::path& file : library_sources()) {
    const std::string text = read(file);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), literal); it != std::sregex_iterator(); ++it, ++named) {
      EXPECT_TRUE(table.count((*it)[1].str())) << file << " names " << (*it)[1] << ", which base/env.cpp's table lacks";
    }
  }
  EXPECT_GT(named, 10) << "the scan found too few switch names: is " << kRoot << " the repository?";
}

TEST(EnvSwitches, NoSwitchIsReadAroundTheTable) {
  for (const fs::path& file : library_sources()) {
    if (file.parent_path().filename() == "base") continue;
    const std::string text = read(file);
    EXPECT_EQ(text.find("getenv(\"SIGJIT_"), std::string::npos) << file << " reads a SIGJIT_ switch with getenv; use env::text/env::flag";
  }
}

TEST(EnvSwitches, ReadersFollowTheTable) {
  ::setenv("SIGJIT_AUTOTUNE", "0", 1);
  EXPECT_FALSE(sigjit::env::flag("SIGJIT_AUTOTUNE"));
  ::setenv("SIGJIT_AUTOTUNE", "", 1);
  EXPECT_FALSE(sigjit::env::flag("SIGJIT_AUTOTUNE"));
  EXPECT_FALSE(sigjit::env::text("SIGJIT_AUTOTUNE"));
  ::setenv("SIGJIT_AUTOTUNE", "1", 1);
  EXPECT_TRUE(sigjit::env::flag("SIGJIT_AUTOTUNE"));
  EXPECT_EQ(sigjit::env::text("SIGJIT_AUTOTUNE").value_or(""), "1");
  ::unsetenv("SIGJIT_AUTOTUNE");
  EXPECT_FALSE(sigjit::env::flag("SIGJIT_AUTOTUNE"));
  EXPECT_THROW(sigjit::env::text("SIGJIT_NOT_A_SWITCH"), std::logic_error);
}

TEST(EnvSwitches, IntegersAreDecimalDigitsWithinTheRange) {
  using sigjit::env::parse_int;
  EXPECT_EQ(parse_int("0", 0, 10), 0);
  EXPECT_EQ(parse_int("132", 1, 2147483647), 132);
  EXPECT_EQ(parse_int("10", 1, 10), 10);
  EXPECT_EQ(parse_int("999999999999", 0, 999999999999LL), 999999999999LL);
  for (const char* bad : {"", "-1", "+3", " 3", "3 ", "3x", "0x10", "1e3", "1.5", "9999999999999"})
    EXPECT_FALSE(parse_int(bad, 0, 999999999999LL)) << "'" << bad << "' was accepted";
  EXPECT_FALSE(parse_int("0", 1, 10));
  EXPECT_FALSE(parse_int("11", 1, 10));
  EXPECT_FALSE(parse_int("2147483648", 1, 2147483647));
}

}  // namespace
