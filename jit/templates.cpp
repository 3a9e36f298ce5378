#include "jit/templates.hpp"

#include "base/env.hpp"
#include <sigjit/sigjit.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace sigjit {

// Generated at build time by cmake/embed_templates.cmake.
namespace embedded {
extern const char* const kNames[];
extern const char* const kTexts[];
extern const int kCount;
}  // namespace embedded

std::vector<TemplateFile> template_files() {
  std::vector<TemplateFile> files;
  const std::optional<std::string> dir = env::text("SIGJIT_TEMPLATE_DIR");
  const char* override_dir = dir ? dir->c_str() : nullptr;
  for (int i = 0; i < embedded::kCount; ++i) {
    TemplateFile f{embedded::kNames[i], embedded::kTexts[i]};
    if (override_dir && *override_dir) {
      const std::string path = fmt::format("{}/{}", override_dir, f.include_name);
      std::ifstream in(path, std::ios::binary);
      if (!in) {
        throw Error(fmt::format("SIGJIT_TEMPLATE_DIR={}: cannot read {}; point it at the repository's templates/ directory or unset it",
                                override_dir, path));
      }
      std::ostringstream text;
      text << in.rdbuf();
      f.text = text.str();
    }
    files.push_back(std::move(f));
  }
  return files;
}

}  // namespace sigjit
