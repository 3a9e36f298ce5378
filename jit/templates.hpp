// The kernel templates (templates/sigjit/*) are embedded into the library at build time so a
// deployed binary needs no source tree. SIGJIT_TEMPLATE_DIR points at a checkout's templates/
// directory to iterate on kernels without rebuilding; its files then replace the embedded ones
// (and, since their text is part of the source, change every hash of it).
#pragma once

#include <string>
#include <vector>

namespace sigjit {

struct TemplateFile {
  std::string include_name;  // as written in #include, e.g. "sigjit/sm80/fwd.cuh"
  std::string text;
};

// Embedded files, or those under $SIGJIT_TEMPLATE_DIR when set. Throws Error when the override
// directory lacks one of the embedded files.
std::vector<TemplateFile> template_files();

}  // namespace sigjit
