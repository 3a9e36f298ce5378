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

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sigjit::cache {

class PrivateKey;   // cache/signing.hpp
class TrustedKeys;  // cache/signing.hpp

// Index files: version 2 added Entry::origin. Version 1 files are still read (their origin is
// "unknown": they cannot prove where they came from); every write is version 2.
inline constexpr int kFormatVersion = 2;
inline constexpr int kOldestReadableFormatVersion = 1;
// Bundles: version 2 added each entry's signature (see ImportOptions); version 1 bundles carry
// none and are still read. The version changed so that an older sigjit refuses a signed bundle
// instead of ignoring its signatures. An entry's "origin" field is never believed either way.
inline constexpr int kBundleFormatVersion = 2;
inline constexpr int kOldestReadableBundleFormatVersion = 1;

// Bounds on everything the store reads (index files, bundles), checked before or while parsing,
// never after building an unbounded tree. Each violation is a named error or a logged miss.
inline constexpr int kMaxNestingDepth = 64;                          // JSON / CBOR arrays and objects
inline constexpr std::size_t kMaxIndexBytes = 8u << 20;              // an index file is a few KB
inline constexpr std::size_t kMaxIndexString = 64u << 10;            // any string in an index file or bundle entry
inline constexpr std::size_t kMaxConfigLength = 64;                  // Entry::config (a tile config is ~25 chars)
inline constexpr std::size_t kMaxNameLength = 512;                   // kernel_name, tuned_shape, fingerprint and provenance strings
inline constexpr std::size_t kMaxProvenance = 128;                   // provenance records kept per entry (the newest)
inline constexpr std::size_t kMaxRejected = 256;                     // rejected configs kept per entry
inline constexpr std::size_t kMaxRejectedReason = 1024;              // longer reasons are truncated when written
inline constexpr std::uint64_t kDefaultMaxBundleBytes = 1ull << 30;  // SIGJIT_MAX_BUNDLE_BYTES overrides
inline constexpr std::size_t kMaxBlobBytes = 256u << 20;             // one cubin (real ones are well under 10 MB)
inline constexpr std::size_t kMaxBundleEntries = 1u << 16;
inline constexpr std::size_t kMaxBundleValues = 1u << 22;  // JSON values in a bundle, all entries together

// Where an entry's timing comes from (Entry::origin). Trust model: only this machine's own
// measurements are trusted. An entry that was not measured here (imported from a bundle, or an
// index file of format 1) never displaces one that was, whatever time it claims; it is used
// (its cubin runs: importing a bundle means running its code) until a local tune or
// `sigjit verify --gpu` re-measures it here. A signed entry (remote tier, bundle) is a claim too:
// its signature proves who vouches for it (a provenance record remote:<key id> or bundle:<key id>),
// not that its timing holds on this machine.
inline constexpr const char* kOriginLocal = "local";        // compiled or tuned by this machine's sigjit
inline constexpr const char* kOriginImported = "imported";  // from a bundle: its timings are claims
inline constexpr const char* kOriginUnknown = "unknown";    // read from a format-1 index file

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
  std::string origin = kOriginLocal;  // kOriginLocal, kOriginImported or kOriginUnknown
  // Tuned on this machine: the only entries whose timing is trusted (see kOriginLocal).
  bool measured_here() const;
  nlohmann::json to_json() const;
  static Entry from_json(const nlohmann::json& j);
};

// Lower-case hex SHA-256 (OpenSSL EVP).
std::string sha256_hex(const void* data, std::size_t size);

struct VerifyReport {
  int entries_ok = 0;
  int blobs_ok = 0;
  std::vector<std::string> problems;  // one line each: what is wrong and where
  std::vector<std::string> claims;    // entries not produced here (imported, or format-1 unknown): not problems, but unproven
};

struct GcReport {
  int temp_files_removed = 0;
  int blobs_removed = 0;       // unreferenced by any index entry
  int entries_removed = 0;     // foreign fingerprints when asked, or unreadable files
  int links_removed = 0;       // symbolic links where sigjit keeps directories (tmp/, index/<id>, blobs/<ab>): unlinked, never followed
  std::uint64_t bytes_freed = 0;
};

// A bundle entry's signature (format 2) as import found it.
enum class BundleSignature {
  none,       // unsigned (every entry of a format-1 bundle)
  trusted,    // verified against a trusted key: imported with a provenance record bundle:<key id>
  untrusted,  // signed by a key that is not trusted: refused
  invalid,    // malformed, or not over this entry and cubin (altered, or copied from another): refused
};
const char* to_string(BundleSignature s);  // "unsigned", "trusted", "untrusted", "invalid"

// One entry of a bundle as import saw it (`sigjit import --list` prints these); the fields it
// could not parse stay empty.
struct BundleItem {
  DeviceFingerprint fingerprint;
  std::string problem_key;
  std::string config;
  bool tuned = false;
  double median_ms = 0;
  BundleSignature signature = BundleSignature::none;
  std::string key_id;   // the signer the bundle names (64 hex digits), when well-formed
  std::string refused;  // why it was not imported (also a line of ImportReport::problems unless foreign); "" when merged
};

struct ImportOptions {
  // The keys signed entries must verify against; nullptr: SIGJIT_TRUSTED_KEYS, read only when
  // the bundle holds a signed entry (an unusable list then fails the import, naming it).
  const TrustedKeys* trusted = nullptr;
  // Refuse unsigned entries (all of a format-1 bundle), so a fleet imports only what a trusted key signed.
  bool require_signed = false;
};

struct ExportReport {
  int exported = 0;
  int skipped = 0;          // cubin missing or corrupted (each noted on stderr)
  int signed_entries = 0;   // signed with the key given
  int unsigned_claims = 0;  // not made on this machine (origin other than local): exported unsigned, never re-signed
};

struct ImportReport {
  int added = 0;
  int replaced = 0;   // the bundle's entry won (provenances merged), for one of these reasons:
  int replaced_faster = 0;  // both timed, both tuned or both not: the bundle's time is lower
  // Ours was an untuned default (or had no time): a tuned entry outranks it whatever its time, so
  // this is no speed-up (measured beats unmeasured).
  int replaced_untuned = 0;
  int replaced_cubin_missing = 0;  // our cubin is missing and ours was not measured here: ours could only miss
  int kept = 0;       // ours was faster (provenances merged), or measured here
  // Of kept: ours was measured on this machine and the bundle's entry is a claim, which never
  // displaces it (kOriginLocal), whatever time it claims...
  int kept_local = 0;
  // ...even when our cubin is missing or unreadable: the runtime recompiles our entry's config on
  // next use (and `sigjit verify --gpu` does now) and stores it under our entry.
  int kept_local_cubin_missing = 0;
  int refused_foreign = 0;
  int signed_trusted = 0;     // entries whose signature verified (imported, unless refused for another reason)
  int refused_signature = 0;  // signed by an untrusted key, or a signature that does not verify: never written
  int refused_unsigned = 0;   // unsigned while ImportOptions::require_signed
  std::vector<std::string> problems;
  std::vector<BundleItem> items;  // one per entry of the bundle, in its order
};

enum class MergePolicy { keep_faster, replace };

class Store {
 public:
  // create: creates the directories now; throws sigjit::Error if it cannot. A root that does not
  // exist yet or is empty also gets the marker file (kMarkerName). existing: creates nothing until
  // the first write (put_blob, put_entry, replace_if_current, an import with entries to merge), so
  // that readers (list, verify, export, lookup) and refused commands leave a missing or empty
  // directory as they found it; a missing root reads as an empty cache, and gc and prune have
  // nothing to remove in it.
  enum class Open { create, existing };
  explicit Store(std::filesystem::path root, Open open = Open::create);
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
  // Locked compare-and-replace: writes `entry` (merging provenances) only if the current entry of
  // its key still references the cubin `expected_sha256`, or is absent or unreadable. The heal of
  // a cubin that failed to load and the promotion of a re-measured claim use it, so that neither
  // overwrites what another process wrote meanwhile. Returns whether it wrote.
  bool replace_if_current(const DeviceFingerprint& fp, const Entry& entry, const std::string& expected_sha256);
  // Single flight of producing one key's entry (a compile) among the processes sharing the store:
  // flock on locks/<fingerprint id>.<problem key>.compile, opened like the index locks (never
  // through a link); the kernel drops it when its holder dies, so no stale lock outlives a crash.
  // Waits up to SIGJIT_CACHE_LOCK_TIMEOUT and then throws sigjit::Error (the caller produces
  // unlocked). Held until the returned handle is destroyed.
  std::shared_ptr<void> lock_production(const DeviceFingerprint& fp, const std::string& problem_key);

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
  // The same, signing with `signer` (when not null) each entry made on this machine (origin
  // local): sign_entry over the entry and its cubin, stored beside the entry. Claims are exported
  // unsigned (a node vouches only for what it made, as `sigjit push`).
  ExportReport export_bundle(const std::filesystem::path& file, const std::vector<Listed>& entries, const PrivateKey* signer) const;
  // Merges a bundle (format 1 or 2). A signed entry is imported only if verify_entry accepts its
  // signature against options.trusted (then with a provenance record bundle:<key id>); one that
  // does not verify is refused with its reason and never written. Every imported entry is a claim.
  ImportReport import_bundle(const std::filesystem::path& file, const DeviceFingerprint* local, bool allow_foreign,
                             const ImportOptions& options = {});

 private:
  void create_layout();  // the directories and, for a new or empty root, the marker

  std::filesystem::path root_;
  bool layout_pending_ = false;  // Open::existing until the first write (its first write must not race another thread's)
};

}  // namespace sigjit::cache
