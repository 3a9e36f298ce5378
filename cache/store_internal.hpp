// What the store's pieces share beyond the file layer (files.hpp): names and paths (store.cpp),
// the index format and merge policy (index.cpp), the cache marker (maintenance.cpp). Not part of
// the store's interface (cache/store.hpp), and never included by code outside cache/.
#pragma once

#include "cache/files.hpp"
#include "cache/store.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

namespace sigjit::cache::detail {

using nlohmann::json;

// ---- store.cpp: logging, names, blobs -------------------------------------------------------------

void log_miss(const fs::path& path, const std::string& reason);
bool is_sha256_hex(std::string_view s);
bool is_valid_key(std::string_view k);
void check_key(const std::string& key);
void check_sha(const std::string& sha, const char* what);
fs::path index_path(const fs::path& root, const std::string& fp_id, const std::string& key);
fs::path lock_path(const fs::path& root, const std::string& fp_id, const std::string& key);
fs::path blob_path(const fs::path& root, const std::string& sha);
std::string put_blob_bytes(const fs::path& root, const void* data, std::size_t size);  // returns the sha256

// ---- index.cpp: bounds, parsing, index files, merge policy -------------------------------------------

std::string quoted_prefix(const std::string& s, std::size_t keep = 64);
void check_entry_bounds(const Entry& e);
void check_fingerprint_bounds(const DeviceFingerprint& f);
const json& field(const json& j, const char* name, const char* what);

struct ParseLimits {
  int max_depth = kMaxNestingDepth;
  std::size_t max_string = kMaxIndexString;
  std::size_t max_binary = 0;
  std::size_t max_values = std::numeric_limits<std::size_t>::max();
};
// Instantiated for std::string (JSON text) and std::vector<std::uint8_t> (CBOR).
template <class Bytes>
std::string bounded_parse(const Bytes& bytes, bool cbor, const ParseLimits& limits, json& out);

struct IndexRead {
  enum Status { ok, absent, bad, newer } status = absent;
  std::string reason;  // bad / newer: what is wrong, for logs and verify()
  DeviceFingerprint fingerprint;
  Entry entry;
  std::string newer_cubin;  // newer: entry.cubin_sha256 if it has one (kept referenced by gc)
};
IndexRead read_index(const fs::path& path, const std::string& key, const std::string& fp_id);

void cap_lists(Entry& e);
std::pair<Entry, bool> merge_entries(const Entry& current, const Entry& incoming);
// replaced: MergePolicy::replace, or an entry measured here over one that was not (never from an
// import: an imported entry is a claim). replaced_faster, replaced_untuned, replaced_cubin_missing:
// keep_faster's other reasons, as ImportReport counts them.
// kept_local: kept because the current entry was measured here and the new one was not (F1);
// kept_local_cubin_missing: the same, although the current entry's cubin is missing or unreadable.
enum class Outcome {
  added,
  replaced,
  replaced_faster,
  replaced_untuned,
  replaced_cubin_missing,
  kept,
  kept_local,
  kept_local_cubin_missing
};
Outcome put_entry_locked(const fs::path& root, const DeviceFingerprint& fp, const Entry& entry_in, MergePolicy policy);
bool replace_locked_if(const fs::path& root, const DeviceFingerprint& fp, const Entry& entry_in, const std::string& expected_sha);
std::string digest_hex(const unsigned char* md);

// ---- maintenance.cpp: the cache marker ----------------------------------------------------------

bool write_marker(const fs::path& root);
bool absent_or_empty(const fs::path& root);

}  // namespace sigjit::cache::detail
