// libFuzzer target: one index file (index/<fingerprint id>/<key>.json) as the store reads it.
// Each input is run twice: as given, and (when it is shallow, well-formed JSON) with its checksum
// recomputed and placed where its own fingerprint and key say, so mutations reach the field
// checks behind the checksum. Then every reader and writer that touches index files runs over
// it: lookup, list, verify, put_entry (a read-merge-write), lookup again, gc.
//
//   build:  setup.sh --test builds it in build/asan (clang: libFuzzer; gcc: a replay driver)
//   run:    build/asan/tests/fuzz/fuzz_index -max_total_time=3600 CORPUS_DIR tests/fuzz/corpus/index
#include "tests/fuzz/fuzz_common.hpp"

namespace {

using namespace sigjit_fuzz;
using sigjit::cache::Store;

void exercise(Store& store, const std::string& key) {
  const auto fp = local_fp();
  try {
    (void)store.lookup(fp, key);
  } catch (const sigjit::Error&) {
  }
  (void)store.list();
  (void)store.verify();
  try {
    sigjit::cache::Entry e;
    e.problem_key = key;
    e.spec = json::object();
    e.config = "m128n64w4s2";
    e.kernel_name = "k";
    e.tuned = true;
    e.median_ms = 1.0;
    e.cubin_sha256 = store.put_blob(std::vector<char>{'c', 'u', 'b', 'i', 'n'});
    store.put_entry(fp, e);
    (void)store.lookup(fp, key);
  } catch (const sigjit::Error&) {
  }
  (void)store.gc(false, nullptr, 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path root = scratch() / "store";
  std::error_code ec;
  fs::remove_all(root, ec);
  Store store(root);
  const std::string key = "fwd_bf16_d64_dense";
  const fs::path dir = root / "index" / local_fp().id();
  fs::create_directories(dir);
  write_file(dir / (key + ".json"), data, size);
  exercise(store, key);

  json j;
  if (!parse_shallow(data, size, false, j) || !j.is_object()) return 0;
  j.erase("checksum");
  const std::string body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  j["checksum"] = sigjit::cache::sha256_hex(body.data(), body.size());
  std::string id = local_fp().id(), file_key = key;
  try {
    if (j.contains("fingerprint")) id = sigjit::cache::DeviceFingerprint::from_json(j["fingerprint"]).id();
  } catch (const sigjit::Error&) {
  }
  if (j.contains("problem_key") && j["problem_key"].is_string()) {
    const std::string k = j["problem_key"].get<std::string>();
    if (!k.empty() && k.size() <= 100 &&
        k.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == std::string::npos)
      file_key = k;
  }
  fs::remove_all(root, ec);
  Store again(root);
  fs::create_directories(root / "index" / id);
  const std::string text = j.dump(2, ' ', false, json::error_handler_t::replace);
  write_file(root / "index" / id / (file_key + ".json"), reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  exercise(again, file_key);
  return 0;
}
