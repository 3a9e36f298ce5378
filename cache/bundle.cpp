// Bundles: export and import of one CBOR file (magic, format version, checksum) holding entries and
// their cubins. A second format with its own bounds and its own trust decision (what origin an
// imported entry gets), over the index's merge policy; the store's lookup path never reads one.
#include "cache/store_internal.hpp"

#include "base/env.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>
#include <openssl/evp.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <optional>
#include <ostream>
#include <streambuf>
#include <utility>

namespace sigjit::cache {
namespace detail {
namespace {

constexpr const char* kBundleMagic = "sigjit-bundle";

// SHA-256 of json::to_cbor(j), fed to the digest as it is encoded (no second copy in memory).
class Sha256Sink : public std::streambuf {
 public:
  Sha256Sink() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
      fail("cache: OpenSSL's EVP_DigestInit(SHA-256) failed; check the OpenSSL installation (libcrypto)");
  }
  Sha256Sink(const Sha256Sink&) = delete;
  Sha256Sink& operator=(const Sha256Sink&) = delete;
  ~Sha256Sink() override { EVP_MD_CTX_free(ctx_); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!ok_ || EVP_DigestFinal_ex(ctx_, md, &len) != 1 || len != 32)
      fail("cache: OpenSSL's SHA-256 failed; check the OpenSSL installation");
    return digest_hex(md);
  }

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      const char ch = traits_type::to_char_type(c);
      ok_ = ok_ && EVP_DigestUpdate(ctx_, &ch, 1) == 1;
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    ok_ = ok_ && EVP_DigestUpdate(ctx_, s, static_cast<std::size_t>(n)) == 1;
    return n;
  }

 private:
  EVP_MD_CTX* ctx_;
  bool ok_ = true;
};

std::string cbor_sha256_hex(const json& j) {
  Sha256Sink sink;
  std::ostream out(&sink);
  json::to_cbor(j, out);
  return sink.hex();
}

std::uint64_t max_bundle_bytes() {
  if (const char* v = env::raw("SIGJIT_MAX_BUNDLE_BYTES"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(v, &end, 10);
    if (end != v && *end == '\0' && errno == 0 && n > 0 && v[0] != '-') return n;
    fail(fmt::format("SIGJIT_MAX_BUNDLE_BYTES='{}': expected a positive number of bytes, e.g. {}", v, kDefaultMaxBundleBytes));
  }
  return kDefaultMaxBundleBytes;
}

// The trust decision for one bundle entry: the origin it gets in this store. Every imported
// entry is a claim today (the bundle's own "origin" is never believed). Signed entries (the
// cluster tier: an Ed25519 signature over the entry and its cubin digest, checked against
// trusted keys) plug in here and nowhere else: a verified signature may return a trusted origin.
std::string origin_of_bundle_entry(const json& item) {
  static_cast<void>(item);
  return kOriginImported;
}

}  // namespace
}  // namespace detail

using namespace detail;  // the store's internals: files.hpp, store_internal.hpp

// ---- public: bundles ------------------------------------------------------------------------------

int Store::export_bundle(const std::filesystem::path& file, const std::vector<Listed>& entries, int* skipped) const {
  // The destination first: nothing is read or written for one that will be refused.
  const bool to_stdout = file == "-";
  if (file.empty()) fail("export: the bundle path is empty; give a file name, or - for stdout");
  if (!to_stdout) {
    struct stat st {};
    if (::lstat(file.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      const char* what = S_ISLNK(st.st_mode)    ? "a symbolic link"
                         : S_ISDIR(st.st_mode)  ? "a directory"
                         : S_ISFIFO(st.st_mode) ? "a FIFO"
                         : S_ISCHR(st.st_mode)  ? "a character device"
                         : S_ISBLK(st.st_mode)  ? "a block device"
                         : S_ISSOCK(st.st_mode) ? "a socket"
                                                : "not a regular file";
      fail(fmt::format("export: {} exists and is {}; refusing to replace it (a bundle is written to a temp file beside the "
                       "destination and renamed onto it). Give the path of a regular file, or - to write the bundle to stdout",
                       file.string(), what));
    }
  }
  if (skipped != nullptr) *skipped = 0;
  json list = json::array();
  for (const Listed& l : entries) {
    check_key(l.entry.problem_key);
    const std::optional<std::vector<char>> cubin = load_blob(l.entry.cubin_sha256);
    if (!cubin) {
      std::fputs(fmt::format("sigjit: cache: export: skipping {} ({}): its cubin {} is missing or corrupted\n", l.entry.problem_key,
                             l.fingerprint.id(), l.entry.cubin_sha256)
                     .c_str(),
                 stderr);
      if (skipped != nullptr) ++*skipped;
      continue;
    }
    list.push_back({{"fingerprint", l.fingerprint.to_json()},
                    {"entry", l.entry.to_json()},
                    {"cubin", json::binary(std::vector<std::uint8_t>(cubin->begin(), cubin->end()))}});
  }
  const int count = static_cast<int>(list.size());
  json bundle = {{"magic", kBundleMagic}, {"format_version", kBundleFormatVersion}, {"entries", std::move(list)}};
  const std::vector<std::uint8_t> body = json::to_cbor(bundle);
  bundle["checksum"] = sha256_hex(body.data(), body.size());
  const std::vector<std::uint8_t> bytes = json::to_cbor(bundle);
  if (to_stdout) {
    if (!write_all(STDOUT_FILENO, bytes.data(), bytes.size()))
      fail(fmt::format("export: cannot write the bundle to stdout: {}", errno_text(errno)));
    return count;
  }
  fs::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  atomic_write(dir, file, bytes.data(), bytes.size(), "of the bundle's directory");
  return count;
}

ImportReport Store::import_bundle(const std::filesystem::path& file, const DeviceFingerprint* local, bool allow_foreign) {
  const std::uint64_t max_bytes = max_bundle_bytes();
  json b;
  try {
    // Size first (F7): the file's size is checked before a byte is read, and the tree is built
    // under bounds (depth, strings, cubins, values: F2) by a SAX parser; the raw bytes are freed
    // before the checksum is computed (streamed, no second encoding in memory).
    std::vector<std::uint8_t> data;
    if (const int e = read_all(file, data, nullptr, static_cast<std::size_t>(std::min<std::uint64_t>(max_bytes, SIZE_MAX)), true); e != 0) {
      if (e == EFBIG) {
        struct stat st {};
        const std::uint64_t size = ::stat(file.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
        fail(fmt::format("cache import: bundle {} is {} bytes, over the limit of {} bytes; set SIGJIT_MAX_BUNDLE_BYTES to import it anyway",
                         file.string(), size, max_bytes));
      }
      fail(fmt::format("cache import: cannot read bundle {}: {}", file.string(), read_error_text(e)));
    }
    ParseLimits limits;
    limits.max_binary = kMaxBlobBytes;
    limits.max_values = kMaxBundleValues;
    if (const std::string why = bounded_parse(data, true, limits, b); !why.empty())
      fail(fmt::format("cache import: {} is not a sigjit bundle, is truncated or exceeds a limit ({}); export it again", file.string(),
                       why));
  } catch (const std::bad_alloc&) {
    fail(
        fmt::format("cache import: out of memory reading bundle {}; import it on a host with more memory, or export smaller bundles "
                    "(sigjit export --match)",
                    file.string()));
  }
  if (!b.is_object() || !b.contains("magic") || b["magic"] != kBundleMagic)
    fail(fmt::format(
        "cache import: {} is not a sigjit bundle (wrong magic); bundles are written by Store::export_bundle / `sigjit export`",
        file.string()));
  if (!b.contains("format_version") || !b["format_version"].is_number_integer() || b["format_version"] != kBundleFormatVersion)
    fail(fmt::format("cache import: {}: bundle format version {}, this sigjit reads {}; export it with a matching sigjit version",
                     file.string(), b.contains("format_version") ? b["format_version"].dump() : "missing", kBundleFormatVersion));
  if (!b.contains("checksum") || !b["checksum"].is_string())
    fail(fmt::format("cache import: {}: the bundle has no checksum (corrupted); export it again", file.string()));
  const std::string stored = b["checksum"].get<std::string>();
  b.erase("checksum");
  if (cbor_sha256_hex(b) != stored)
    fail(fmt::format("cache import: {}: bundle checksum mismatch: the file is corrupted or truncated; export it again", file.string()));
  if (!b.contains("entries") || !b["entries"].is_array())
    fail(fmt::format("cache import: {}: the bundle has no entries array (corrupted); export it again", file.string()));
  if (b["entries"].size() > kMaxBundleEntries)
    fail(fmt::format("cache import: {}: {} entries, over the limit of {} per bundle; export smaller bundles (sigjit export --match)",
                     file.string(), b["entries"].size(), kMaxBundleEntries));

  // Entries of one (device, key) are merged in memory first and written once (F8: a bundle of
  // 5 000 entries for one key is one locked read-merge-write, not 5 000 rewrites of a growing file).
  struct Pending {
    DeviceFingerprint fp;
    Entry entry;
    const json::binary_t* cubin = nullptr;
    std::vector<std::size_t> items;  // bundle positions merged into it, for messages
  };
  std::vector<Pending> pending;
  std::map<std::pair<std::string, std::string>, std::size_t> slot;
  ImportReport rep;
  std::size_t i = 0;
  for (const json& item : b["entries"]) {
    const std::size_t n = i++;
    std::string key = "?";
    try {
      const DeviceFingerprint fp = DeviceFingerprint::from_json(field(item, "fingerprint", "bundle entry"));
      Entry entry = Entry::from_json(field(item, "entry", "bundle entry"));
      key = is_valid_key(entry.problem_key) ? entry.problem_key : quoted_prefix(entry.problem_key);
      check_key(entry.problem_key);
      check_sha(entry.cubin_sha256, "entry.cubin_sha256");
      check_fingerprint_bounds(fp);
      check_entry_bounds(entry);
      if (local != nullptr && fp != *local && !allow_foreign) {
        ++rep.refused_foreign;
        continue;
      }
      const json& cubin = field(item, "cubin", "bundle entry");
      if (!cubin.is_binary()) fail("bundle entry: field 'cubin' must be a CBOR byte string");
      const auto& bytes = cubin.get_binary();
      const std::string got = sha256_hex(bytes.data(), bytes.size());
      if (got != entry.cubin_sha256)
        fail(fmt::format("cubin digest {} does not match entry.cubin_sha256 {}; skipped", got, entry.cubin_sha256));
      entry.origin = origin_of_bundle_entry(item);
      cap_lists(entry);
      const auto [it, fresh] = slot.emplace(std::make_pair(fp.id(), entry.problem_key), pending.size());
      if (fresh) {
        pending.push_back({fp, std::move(entry), &bytes, {n}});
        continue;
      }
      Pending& p = pending[it->second];
      if (p.fp != fp) fail(fmt::format("its fingerprint has the same id {} as entry {}'s but differs", fp.id(), p.items.front()));
      auto [merged, incoming_won] = merge_entries(p.entry, entry);
      p.entry = std::move(merged);
      if (incoming_won) p.cubin = &bytes;
      p.items.push_back(n);
      ++rep.kept;  // a duplicate of an earlier entry of the bundle, merged into it
    } catch (const Error& ex) {
      rep.problems.push_back(fmt::format("{}: entry {} ({}): {}", file.string(), n, key, ex.what()));
    }
  }
  if (!pending.empty() && layout_pending_) create_layout();  // a refused or empty import creates nothing
  for (const Pending& p : pending) {
    try {
      put_blob_bytes(root_, p.cubin->data(), p.cubin->size());
      switch (put_entry_locked(root_, p.fp, p.entry, MergePolicy::keep_faster)) {
        case Outcome::added: ++rep.added; break;
        case Outcome::replaced: ++rep.replaced; break;  // not from an import (every imported entry is a claim)
        case Outcome::replaced_faster: ++rep.replaced_faster, ++rep.replaced; break;
        case Outcome::replaced_untuned: ++rep.replaced_untuned, ++rep.replaced; break;
        case Outcome::replaced_cubin_missing: ++rep.replaced_cubin_missing, ++rep.replaced; break;
        case Outcome::kept: ++rep.kept; break;
        case Outcome::kept_local_cubin_missing: ++rep.kept_local_cubin_missing; [[fallthrough]];
        case Outcome::kept_local: ++rep.kept_local, ++rep.kept; break;
      }
    } catch (const Error& ex) {
      rep.problems.push_back(fmt::format("{}: entry {} ({}): {}", file.string(), p.items.front(), p.entry.problem_key, ex.what()));
    }
  }
  return rep;
}

}  // namespace sigjit::cache
