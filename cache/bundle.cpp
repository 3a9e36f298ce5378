// Bundles: export and import of one CBOR file (magic, format version, checksum) holding entries and
// their cubins. A second format with its own bounds and its own trust decision (whether an entry is
// imported, and with what provenance), over the index's merge policy; the store's lookup path never
// reads one. Format 2 adds to each entry an optional "signature": {"key_id": 64 hex digits,
// "ed25519": 64 bytes}, made by sign_entry and checked by verify_entry as the remote tier's records
// are (cache/signing.hpp), so a bundle passed around a fleet cannot be altered on the way.
#include "cache/signing.hpp"
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
#include <ctime>
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

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  char buf[32];
  ::gmtime_r(&t, &tm);
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json signature_json(const EntrySignature& s) {
  return {{"key_id", s.key_id}, {"ed25519", json::binary(std::vector<std::uint8_t>(s.signature.begin(), s.signature.end()))}};
}

// A format-2 entry's signature, its sizes bounded before anything is taken from it: absent
// (nullopt), or an object of exactly a key id (64 lower-case hex digits) and a 64-byte Ed25519
// signature. Anything else is malformed (fail() says what), never guessed at.
std::optional<EntrySignature> bundle_signature(const json& item) {
  const auto s = item.find("signature");
  if (s == item.end()) return std::nullopt;
  const char* shape = "field 'signature' must be an object of exactly 'key_id' (64 hex digits) and 'ed25519' (64 bytes)";
  if (!s->is_object() || s->size() != 2) fail(shape);
  const auto id = s->find("key_id");
  const auto sig = s->find("ed25519");
  if (id == s->end() || sig == s->end()) fail(shape);
  if (!id->is_string() || !is_key_id(id->get_ref<const std::string&>()))
    fail(fmt::format("signature.key_id must be 64 lower-case hex digits, not {}",
                     id->is_string() ? quoted_prefix(id->get_ref<const std::string&>()) : std::string("a ") + id->type_name()));
  if (!sig->is_binary() || sig->get_binary().size() != kEd25519SignatureBytes)
    fail(fmt::format("signature.ed25519 must be a CBOR byte string of {} bytes, not {}", kEd25519SignatureBytes,
                     sig->is_binary() ? fmt::format("{} bytes", sig->get_binary().size()) : std::string("a ") + sig->type_name()));
  const auto& bytes = sig->get_binary();
  return EntrySignature{id->get<std::string>(), std::string(bytes.begin(), bytes.end())};
}

struct Verdict {
  BundleSignature status = BundleSignature::none;
  std::string key_id;
  std::string why;  // untrusted, invalid: why the entry is refused
};

// The trust decision for one entry: what its signature proves. Format 1 has no signatures.
Verdict check_signature(const json& item, int version, const TrustedKeys* trusted, const DeviceFingerprint& fp, const Entry& entry,
                        std::string_view cubin) {
  if (version < 2) return {};
  std::optional<EntrySignature> sig;
  try {
    sig = bundle_signature(item);
  } catch (const Error& ex) {
    return {BundleSignature::invalid, {}, ex.what()};
  }
  if (!sig) return {};
  if (trusted == nullptr) return {BundleSignature::untrusted, sig->key_id, "no trusted keys were given to check it"};
  if (!trusted->trusts(sig->key_id)) return {BundleSignature::untrusted, sig->key_id, trusted->verify({}, sig->signature, sig->key_id)};
  std::string why = verify_entry(*trusted, fp, entry, cubin, *sig);
  return {why.empty() ? BundleSignature::trusted : BundleSignature::invalid, sig->key_id, std::move(why)};
}

// SIGJIT_TRUSTED_KEYS, read only for a bundle that holds a signed entry: an unsigned bundle
// imports as it did before signatures, whatever the variable says.
std::optional<TrustedKeys> keys_for(const json& entries, int version, const fs::path& file) {
  if (version < 2 || std::none_of(entries.begin(), entries.end(), [](const json& e) { return e.is_object() && e.contains("signature"); }))
    return std::nullopt;
  try {
    return TrustedKeys::from_env();
  } catch (const Error& ex) {
    fail(fmt::format("cache import: {} holds signed entries, and {} cannot be used to check them: {}", file.string(), kTrustedKeysEnv,
                     ex.what()));
  }
}

// The bundle's tree, read and checked as a whole before any entry is looked at: size first (F7:
// from the file's size, before a byte is read), then a SAX parse under bounds (depth, strings,
// cubins, values: F2), the magic, a readable format version, the checksum (streamed, the raw bytes
// freed first) and the entry count. *version: the bundle's format version.
json read_bundle(const fs::path& file, int* version) {
  const std::uint64_t max_bytes = max_bundle_bytes();
  json b;
  try {
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
  const json* v = b.contains("format_version") ? &b["format_version"] : nullptr;
  if (v == nullptr || !v->is_number_integer() || *v < kOldestReadableBundleFormatVersion || *v > kBundleFormatVersion)
    fail(fmt::format("cache import: {}: bundle format version {}, this sigjit reads {} to {}; export it with a matching sigjit version",
                     file.string(), v != nullptr ? v->dump() : "missing", kOldestReadableBundleFormatVersion, kBundleFormatVersion));
  *version = v->get<int>();
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
  return b;
}

}  // namespace
}  // namespace detail

using namespace detail;  // the store's internals: files.hpp, store_internal.hpp

const char* to_string(BundleSignature s) {
  switch (s) {
    case BundleSignature::none: return "unsigned";
    case BundleSignature::trusted: return "trusted";
    case BundleSignature::untrusted: return "untrusted";
    case BundleSignature::invalid: return "invalid";
  }
  return "?";
}

// ---- public: bundles ------------------------------------------------------------------------------

int Store::export_bundle(const std::filesystem::path& file, const std::vector<Listed>& entries, int* skipped) const {
  const ExportReport r = export_bundle(file, entries, static_cast<const PrivateKey*>(nullptr));
  if (skipped != nullptr) *skipped = r.skipped;
  return r.exported;
}

ExportReport Store::export_bundle(const std::filesystem::path& file, const std::vector<Listed>& entries, const PrivateKey* signer) const {
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
  ExportReport rep;
  json list = json::array();
  for (const Listed& l : entries) {
    check_key(l.entry.problem_key);
    const std::optional<std::vector<char>> cubin = load_blob(l.entry.cubin_sha256);
    if (!cubin) {
      std::fputs(fmt::format("sigjit: cache: export: skipping {} ({}): its cubin {} is missing or corrupted\n", l.entry.problem_key,
                             l.fingerprint.id(), l.entry.cubin_sha256)
                     .c_str(),
                 stderr);
      ++rep.skipped;
      continue;
    }
    json item = {{"fingerprint", l.fingerprint.to_json()},
                 {"entry", l.entry.to_json()},
                 {"cubin", json::binary(std::vector<std::uint8_t>(cubin->begin(), cubin->end()))}};
    // A node vouches only for what it made: re-signing a claim would launder it (as `sigjit push`).
    if (signer != nullptr && l.entry.origin == kOriginLocal) {
      item["signature"] = signature_json(sign_entry(*signer, l.fingerprint, l.entry, *cubin));
      ++rep.signed_entries;
    } else if (signer != nullptr) {
      ++rep.unsigned_claims;
    }
    list.push_back(std::move(item));
  }
  rep.exported = static_cast<int>(list.size());
  json bundle = {{"magic", kBundleMagic}, {"format_version", kBundleFormatVersion}, {"entries", std::move(list)}};
  const std::vector<std::uint8_t> body = json::to_cbor(bundle);
  bundle["checksum"] = sha256_hex(body.data(), body.size());
  const std::vector<std::uint8_t> bytes = json::to_cbor(bundle);
  if (to_stdout) {
    if (!write_all(STDOUT_FILENO, bytes.data(), bytes.size()))
      fail(fmt::format("export: cannot write the bundle to stdout: {}", errno_text(errno)));
    return rep;
  }
  fs::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  atomic_write(dir, file, bytes.data(), bytes.size(), "of the bundle's directory");
  return rep;
}

ImportReport Store::import_bundle(const std::filesystem::path& file, const DeviceFingerprint* local, bool allow_foreign,
                                  const ImportOptions& options) {
  int version = 0;
  const json b = read_bundle(file, &version);
  const json& entries = b["entries"];
  std::optional<TrustedKeys> env_keys;
  if (options.trusted == nullptr) env_keys = keys_for(entries, version, file);
  const TrustedKeys* trusted = options.trusted != nullptr ? options.trusted : env_keys ? &*env_keys : nullptr;

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
  rep.items.resize(entries.size());
  auto refuse = [&](std::size_t n, const std::string& key, const std::string& why, const char* prefix = "") {
    rep.items[n].refused = why;
    rep.problems.push_back(fmt::format("{}: entry {} ({}): {}{}", file.string(), n, key, prefix, why));
  };
  std::size_t i = 0;
  for (const json& item : entries) {
    const std::size_t n = i++;
    BundleItem& seen = rep.items[n];
    std::string key = "?";
    try {
      const DeviceFingerprint fp = DeviceFingerprint::from_json(field(item, "fingerprint", "bundle entry"));
      Entry entry = Entry::from_json(field(item, "entry", "bundle entry"));
      key = is_valid_key(entry.problem_key) ? entry.problem_key : quoted_prefix(entry.problem_key);
      check_key(entry.problem_key);
      check_sha(entry.cubin_sha256, "entry.cubin_sha256");
      check_fingerprint_bounds(fp);
      check_entry_bounds(entry);
      seen.fingerprint = fp;
      seen.problem_key = entry.problem_key;
      seen.config = entry.config;
      seen.tuned = entry.tuned;
      seen.median_ms = entry.median_ms;
      if (local != nullptr && fp != *local && !allow_foreign) {
        seen.refused = "for another device (--allow-foreign imports it)";  // not looked at further
        ++rep.refused_foreign;
        continue;
      }
      const json& cubin = field(item, "cubin", "bundle entry");
      if (!cubin.is_binary()) fail("bundle entry: field 'cubin' must be a CBOR byte string");
      const auto& bytes = cubin.get_binary();
      const Verdict v = check_signature(item, version, trusted, fp, entry,
                                        std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
      seen.signature = v.status;
      seen.key_id = v.key_id;
      if (v.status == BundleSignature::untrusted || v.status == BundleSignature::invalid) {
        ++rep.refused_signature;
        refuse(n, key, fmt::format("{} signature: {}", to_string(v.status), v.why), "refused: ");
        continue;
      }
      if (v.status == BundleSignature::none && options.require_signed) {
        ++rep.refused_unsigned;
        refuse(n, key,
               version < 2 ? "unsigned (a format-1 bundle carries no signatures), and signed entries are required"
                           : "unsigned, and signed entries are required",
               "refused: ");
        continue;
      }
      const std::string got = sha256_hex(bytes.data(), bytes.size());
      if (got != entry.cubin_sha256)
        fail(fmt::format("cubin digest {} does not match entry.cubin_sha256 {}; skipped", got, entry.cubin_sha256));
      if (v.status == BundleSignature::trusted) {
        ++rep.signed_trusted;
        entry.provenance.push_back({"bundle:" + key_id_short(v.key_id), now_utc(), SIGJIT_VERSION});
      }
      entry.origin = kOriginImported;  // a claim, signed or not: the bundle's own "origin" is never believed
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
      refuse(n, key, ex.what());
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
      for (const std::size_t n : p.items) rep.items[n].refused = ex.what();
      rep.problems.push_back(fmt::format("{}: entry {} ({}): {}", file.string(), p.items.front(), p.entry.problem_key, ex.what()));
    }
  }
  return rep;
}

}  // namespace sigjit::cache
