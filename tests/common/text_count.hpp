// How often a string occurs in a text (a PTX listing, a log): the kernel tests' instruction counts.
#pragma once

#include <cstddef>
#include <string>

namespace sigjit::test {

inline std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace sigjit::test
