// The on-disk kernel store: tuned configs and their cubins, shareable across processes,
// machines and clusters (copy the directory, or export/import a bundle).
//
// Layout under the root ($SIGJIT_CACHE_DIR, else $XDG_CACHE_HOME/sigjit, else ~/.cache/sigjit):
//   index/<fingerprint id>/<problem key>.json   one small JSON file per (device, problem)
//   blobs/<sha256[0:2]>/<sha256>.cubin          content-addressed cubins
//   locks/<fingerprint id>.<problem key>.lock   flock files serialising updates of one index file
//   tmp/                                        temp files; renamed into place, stale ones removed by gc
//   CACHEDIR.TAG                                the cache marker (https://bford.info/cachedir/ plus a sigjit
//                                               line), written when sigjit creates the root: gc and prune
//                                               delete nothing in a directory without it
// Deleting is confined to the cache: gc and prune never follow a symbolic link inside the root
// (directories are opened with O_NOFOLLOW, files removed with unlinkat relative to them) and only
// remove names sigjit writes (index files <key>.json, blobs <sha256>.cubin, its own temp names).
// Why one index file per problem: writers of different problems never contend and a
// read-merge-write can lose nothing but a same-key race, which the per-key lock serialises.
// Every file is written to tmp/, fsynced and renamed; readers verify magic, format version
// and checksum (index) or the digest (blob), and treat any mismatch as a logged miss: the
// caller recompiles and re-puts, which heals the entry. Cost: a hit is one small JSON read plus
// one blob read and hash (~50 KB); no process ever blocks forever on a lock (timeouts).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sigjit::cache {

inline constexpr int kFormatVersion = 1;

// Everything that must match for a cached binary or timing to be valid on this machine.
struct DeviceFingerprint {
  std::string gpu_name;
  int cc_major = 0;
  int cc_minor = 0;
  int sm_count = 0;
  int driver_version = 0;
  std::string nvrtc_version;
  int codegen_version = 0;
  std::string compile_options;  // joined compile options (arch included)

  // Stable short id (first 16 hex of sha256 of the canonical JSON): the index directory name.
  std::string id() const;
  nlohmann::json to_json() const;
  static DeviceFingerprint from_json(const nlohmann::json& j);  // throws on missing fields
  bool operator==(const DeviceFingerprint&) const = default;
};

struct Provenance {
  std::string host;
  std::string time_utc;  // ISO 8601
  std::string sigjit_version;
};

struct Rejected {
  std::string config;
  std::string reason;
};

struct Entry {
  std::string problem_key;
  nlohmann::json spec;     // descriptive copy of the KernelSpec (for list/show)
  std::string config;      // TileConfig::describe()
  std::string kernel_name;
  bool tuned = false;      // false: a heuristic default compiled on the spot
  double median_ms = 0;
  double spread = 0;       // (p90 - p10) / median of the timed runs
  double tflops = 0;
  std::string tuned_shape; // e.g. "B=4 L=4096 H=16" (what was timed)
  std::string cubin_sha256;
  std::vector<Provenance> provenance;
  std::vector<Rejected> rejected;
  nlohmann::json to_json() const;
  static Entry from_json(const nlohmann::json& j);
};

// Lower-case hex SHA-256 (OpenSSL EVP).
std::string sha256_hex(const void* data, std::size_t size);

struct VerifyReport {
  int entries_ok = 0;
  int blobs_ok = 0;
  std::vector<std::string> problems;  // one line each: what is wrong and where
};

struct GcReport {
  int temp_files_removed = 0;
  int blobs_removed = 0;       // unreferenced by any index entry
  int entries_removed = 0;     // foreign fingerprints when asked, or unreadable files
  int links_removed = 0;       // symbolic links where sigjit keeps directories (tmp/, index/<id>, blobs/<ab>): unlinked, never followed
  std::uint64_t bytes_freed = 0;
};

struct ImportReport {
  int added = 0;
  int replaced = 0;   // the bundle's entry was faster
  int kept = 0;       // ours was faster (provenances merged)
  int refused_foreign = 0;
  std::vector<std::string> problems;
};

enum class MergePolicy { keep_faster, replace };

class Store {
 public:
  // Creates the directories; throws sigjit::Error if it cannot. A root that does not exist yet
  // or is empty also gets the marker file (kMarkerName).
  explicit Store(std::filesystem::path root);
  static constexpr const char* kMarkerName = "CACHEDIR.TAG";
  static std::filesystem::path default_root();
  const std::filesystem::path& root() const { return root_; }

  // nullopt on a miss (absent, corrupt, wrong format version or fingerprint: each logged to
  // stderr when SIGJIT_VERBOSE_CACHE=1 or, for corruption, always once).
  std::optional<Entry> lookup(const DeviceFingerprint& fp, const std::string& problem_key) const;
  // Verifies the digest; a mismatch deletes the blob and returns nullopt.
  std::optional<std::vector<char>> load_blob(const std::string& sha256) const;
  std::string put_blob(const std::vector<char>& data);  // returns its sha256; no-op if present
  // Locked read-merge-write of one index file. keep_faster keeps the entry with the lower
  // median_ms (tuned beats untuned), merging provenances and rejected lists.
  void put_entry(const DeviceFingerprint& fp, const Entry& entry, MergePolicy policy = MergePolicy::keep_faster);

  struct Listed {
    DeviceFingerprint fingerprint;
    Entry entry;
  };
  std::vector<Listed> list() const;  // every readable entry, sorted by fingerprint id then key
  std::uint64_t size_bytes() const;

  VerifyReport verify() const;  // re-checks every index checksum and blob digest
  // gc and prune first check that the root is a sigjit cache: it holds the marker, or (a cache
  // written before markers) it has sigjit's layout and a readable sigjit index file, and then
  // gets the marker; otherwise they throw sigjit::Error naming the root and delete nothing.
  GcReport gc(bool remove_foreign, const DeviceFingerprint* local, double temp_age_seconds = 3600);
  // Removes the entries whose key contains any of the substrings (no substrings: every entry);
  // an empty substring (it would match every key) is refused with sigjit::Error.
  int prune(const std::vector<std::string>& problem_key_substrings, const DeviceFingerprint* only_fp);

  // One CBOR file (magic, format version, checksum) with the chosen entries and their cubins,
  // written to a temp file beside `file` and renamed onto it; "-" writes to stdout. A `file` that
  // exists and is not a regular file (a symbolic link, directory, device, FIFO) is refused.
  // Returns the number exported; entries whose cubin is missing or corrupted are skipped (each
  // noted on stderr) and counted in *skipped.
  int export_bundle(const std::filesystem::path& file, const std::vector<Listed>& entries, int* skipped = nullptr) const;
  ImportReport import_bundle(const std::filesystem::path& file, const DeviceFingerprint* local, bool allow_foreign);

 private:
  std::filesystem::path root_;
};

}  // namespace sigjit::cache
