// Every SIGJIT_* environment switch, in one table: its name, what it does, and whether it changes
// the binary (those are part of the cache key through the compile options). The library reads them
// only through text() and flag(), which accept only names in the table, so a new switch cannot
// appear without its line here (tests/cpu/test_env.cpp checks the sources for SIGJIT_ names),
// and `sigjit config` prints them all with the values in force.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sigjit::env {

struct Switch {
  std::string_view name;
  std::string_view effect;
  bool changes_binary = false;
};

const std::vector<Switch>& switches();

// The switch's value when set and non-empty. Throws std::logic_error for a name not in the table.
std::optional<std::string> text(std::string_view name);
// Set, non-empty and not "0".
bool flag(std::string_view name);
// getenv's own answer (nullptr when unset), for readers that parse the text themselves.
const char* raw(std::string_view name);

// Decimal digits only (no sign, no spaces, at most 12 digits), within [lo, hi]; nullopt otherwise.
// The one integer parser for switch values and URL fields, so that they all refuse the same text.
std::optional<long long> parse_int(std::string_view s, long long lo, long long hi);

}  // namespace sigjit::env
