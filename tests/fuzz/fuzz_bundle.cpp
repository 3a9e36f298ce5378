// libFuzzer target: one bundle file as `sigjit import` reads it. Each input is run twice: as
// given, and (when it is shallow, well-formed CBOR) with its bundle checksum recomputed, so
// mutations reach the entry checks behind the checksum. Then: import (foreign entries allowed,
// and refused), list, verify, export, and import of that export into a second store.
//
//   build:  setup.sh --test builds it in build/asan (clang: libFuzzer; gcc: a replay driver)
//   run:    build/asan/tests/fuzz/fuzz_bundle -max_total_time=3600 CORPUS_DIR tests/fuzz/corpus/bundle
#include "tests/fuzz/fuzz_common.hpp"

namespace {

using namespace sigjit_fuzz;
using sigjit::cache::Store;

void exercise(const fs::path& bundle) {
  const fs::path root = scratch() / "store", copy = scratch() / "copy", out = scratch() / "out.sjb";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::remove_all(copy, ec);
  Store store(root);
  const auto fp = local_fp();
  for (bool allow_foreign : {false, true}) {
    try {
      (void)store.import_bundle(bundle, &fp, allow_foreign);
    } catch (const sigjit::Error&) {
    }
  }
  const auto listed = store.list();
  (void)store.verify();
  try {
    store.export_bundle(out, listed);
    Store second(copy);
    (void)second.import_bundle(out, nullptr, true);
    (void)second.list();
  } catch (const sigjit::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path bundle = scratch() / "in.sjb";
  write_file(bundle, data, size);
  exercise(bundle);

  json b;
  if (!parse_shallow(data, size, true, b) || !b.is_object()) return 0;
  b.erase("checksum");
  const std::vector<std::uint8_t> body = json::to_cbor(b);
  b["checksum"] = sigjit::cache::sha256_hex(body.data(), body.size());
  const std::vector<std::uint8_t> fixed = json::to_cbor(b);
  write_file(bundle, fixed.data(), fixed.size());
  exercise(bundle);
  return 0;
}
