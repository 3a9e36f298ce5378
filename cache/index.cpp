// What an entry means on disk: the index file format (magic, format version, canonical JSON and
// its checksum), the bounds and parsing of what the store reads, and the keep_faster merge policy
// of the locked read-merge-write. A format change happens here (and in tests/golden), nowhere else.
//
// index/<fp id>/<key>.json: {"magic":"sigjit-index","format_version":2,"fingerprint":{..},"problem_key":..,
//   "entry":{..},"checksum":sha256(canonical dump of the object without "checksum")}, written as
//   dump(2) with the top-level keys in that order, nested keys sorted (format 1: the same without
//   entry.origin).
#include "cache/store_internal.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <set>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

namespace sigjit::cache {
namespace detail {

constexpr const char* kIndexMagic = "sigjit-index";

// ---- bounds on what the store reads ---------------------------------------------------------------

namespace {

// Entry::config as written by TileConfig::describe(): short, [a-z0-9_] only. TileConfig::parse
// (compiler/) checks the grammar; this keeps any other text out of the store.
bool is_config_text(std::string_view c) {
  return !c.empty() && c.size() <= kMaxConfigLength &&
         std::all_of(c.begin(), c.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
}

void check_length(const std::string& v, std::size_t limit, const char* what) {
  if (v.size() > limit) fail(fmt::format("{} is {} bytes long, over the limit of {}", what, v.size(), limit));
}

}  // namespace

// A string from a file, quoted and escaped for a message (control characters never reach a
// terminal), cut to `keep` bytes.
std::string quoted_prefix(const std::string& s, std::size_t keep) {
  std::string q = nlohmann::json(s.substr(0, keep)).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (s.size() > keep) q += fmt::format("... ({} bytes)", s.size());
  return q;
}

// Bounds every field an entry read from a file (index or bundle) may carry; throws Error naming
// the field and the limit.
void check_entry_bounds(const Entry& e) {
  if (!is_config_text(e.config))
    fail(fmt::format("entry config {} is not a tile config (1 to {} characters from [a-z0-9_], e.g. m128n64w4s2)", quoted_prefix(e.config),
                     kMaxConfigLength));
  check_length(e.kernel_name, kMaxNameLength, "entry kernel_name");
  check_length(e.tuned_shape, kMaxNameLength, "entry tuned_shape");
  for (const Provenance& p : e.provenance) {
    check_length(p.host, kMaxNameLength, "entry provenance host");
    check_length(p.time_utc, kMaxNameLength, "entry provenance time_utc");
    check_length(p.sigjit_version, kMaxNameLength, "entry provenance sigjit_version");
  }
  for (const Rejected& r : e.rejected) check_length(r.config, kMaxNameLength, "entry rejected config");
  for (const auto& [name, v] : {std::pair{"median_ms", e.median_ms}, std::pair{"spread", e.spread}, std::pair{"tflops", e.tflops}})
    if (!std::isfinite(v) || v < 0) fail(fmt::format("entry {} is {}; expected a finite number >= 0", name, v));
  if (e.origin != kOriginLocal && e.origin != kOriginImported && e.origin != kOriginUnknown)
    fail(fmt::format("entry origin {} is not one of \"{}\", \"{}\", \"{}\"", quoted_prefix(e.origin), kOriginLocal, kOriginImported,
                     kOriginUnknown));
}

void check_fingerprint_bounds(const DeviceFingerprint& f) {
  check_length(f.gpu_name, kMaxNameLength, "fingerprint gpu_name");
  check_length(f.nvrtc_version, kMaxNameLength, "fingerprint nvrtc_version");
  check_length(f.compile_options, kMaxIndexString, "fingerprint compile_options");
}

// ---- JSON field access -------------------------------------------------------------------------

namespace {

// "Canonical dump" = nlohmann::json::dump() with no indentation, keys sorted (std::map), invalid
// UTF-8 replaced: the reader parses the file, erases "checksum" and re-dumps, so the checksum does
// not depend on whitespace or key order in the file.
std::string canonical(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string get_string(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_string()) fail(fmt::format("{}: field '{}' must be a string, got {}", what, name, v.type_name()));
  return v.get<std::string>();
}

int get_int(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return static_cast<int>(u);
  } else if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i >= std::numeric_limits<int>::min() && i <= std::numeric_limits<int>::max()) return static_cast<int>(i);
  } else {
    fail(fmt::format("{}: field '{}' must be an integer, got {}", what, name, v.type_name()));
  }
  fail(fmt::format("{}: field '{}' is out of range for an int", what, name));
}

double get_double(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_number()) fail(fmt::format("{}: field '{}' must be a number, got {}", what, name, v.type_name()));
  return v.get<double>();
}

bool get_bool(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_boolean()) fail(fmt::format("{}: field '{}' must be true or false, got {}", what, name, v.type_name()));
  return v.get<bool>();
}

const json& get_array(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_array()) fail(fmt::format("{}: field '{}' must be an array, got {}", what, name, v.type_name()));
  return v;
}

}  // namespace

const json& field(const json& j, const char* name, const char* what) {
  if (!j.is_object()) fail(fmt::format("{}: expected a JSON object, got {}", what, j.type_name()));
  const auto it = j.find(name);
  if (it == j.end()) fail(fmt::format("{}: missing field '{}'", what, name));
  return *it;
}

// ---- bounded parsing (F2, F7) ---------------------------------------------------------------------

namespace {

// A SAX consumer that builds the same tree as json::parse / json::from_cbor but refuses, before
// building anything, nesting deeper than the limit (nlohmann's dump(), copy and CBOR reader
// recurse: a 200 KB file of brackets overflows any stack), over-long strings and byte strings,
// and too many values. Returning false stops the parser; error() says why.
class BoundedDom {
 public:
  BoundedDom(json& root, const ParseLimits& limits) : root_(root), limits_(limits) {}
  bool null() { return put(json(nullptr)) != nullptr; }
  bool boolean(bool v) { return put(json(v)) != nullptr; }
  bool number_integer(json::number_integer_t v) { return put(json(v)) != nullptr; }
  bool number_unsigned(json::number_unsigned_t v) { return put(json(v)) != nullptr; }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(json(v)) != nullptr; }
  bool string(json::string_t& v) {
    if (v.size() > limits_.max_string) return refuse(fmt::format("a string of {} bytes (the limit is {})", v.size(), limits_.max_string));
    return put(json(std::move(v))) != nullptr;
  }
  bool binary(json::binary_t& v) {
    if (v.size() > limits_.max_binary)
      return refuse(fmt::format("a byte string of {} bytes (the limit is {})", v.size(), limits_.max_binary));
    return put(json::binary(std::move(v))) != nullptr;
  }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool key(json::string_t& k) {
    if (k.size() > limits_.max_string)
      return refuse(fmt::format("an object key of {} bytes (the limit is {})", k.size(), limits_.max_string));
    key_ = std::move(k);
    return true;
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t, const std::string&, const json::exception& ex) {
    error_ = ex.what();
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool refuse(std::string why) {
    error_ = std::move(why);
    return false;
  }
  json* put(json&& v) {
    if (++values_ > limits_.max_values) {
      refuse(fmt::format("more than {} values", limits_.max_values));
      return nullptr;
    }
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];  // a repeated key keeps the last value, as json::parse does
    slot = std::move(v);
    return &slot;
  }
  bool open(json&& container) {
    if (static_cast<int>(stack_.size()) >= limits_.max_depth) return refuse(fmt::format("nested deeper than {} levels", limits_.max_depth));
    json* v = put(std::move(container));
    if (v == nullptr) return false;
    stack_.push_back(v);
    return true;
  }
  bool close() {
    if (!stack_.empty()) stack_.pop_back();
    return true;
  }

  json& root_;
  ParseLimits limits_;
  std::vector<json*> stack_;  // the open containers; a child is only added to the innermost one
  std::string key_;
  std::size_t values_ = 0;
  std::string error_;
};

}  // namespace

// Parses JSON text (cbor = false) or CBOR bytes into `out`; returns "" or what is wrong.
template <class Bytes>
std::string bounded_parse(const Bytes& bytes, bool cbor, const ParseLimits& limits, json& out) {
  BoundedDom sax(out, limits);
  bool ok = false;
  try {
    ok = json::sax_parse(bytes.begin(), bytes.end(), &sax, cbor ? json::input_format_t::cbor : json::input_format_t::json);
  } catch (const json::exception& ex) {
    return ex.what();
  }
  if (ok) return {};
  out = json();
  return sax.error().empty() ? std::string("parse error") : sax.error();
}

template std::string bounded_parse(const std::string&, bool, const ParseLimits&, json&);
template std::string bounded_parse(const std::vector<std::uint8_t>&, bool, const ParseLimits&, json&);

// ---- index files -------------------------------------------------------------------------------

// Reads and checks one index file. `key` comes from the file name, `fp_id` from the directory.
IndexRead read_index(const fs::path& path, const std::string& key, const std::string& fp_id) {
  IndexRead r;
  std::string text;
  if (const int e = read_all(path, text, nullptr, kMaxIndexBytes); e != 0) {
    r.status = e == ENOENT ? IndexRead::absent : IndexRead::bad;
    r.reason = e == EFBIG ? fmt::format("larger than any index file (over {} bytes; corrupted)", kMaxIndexBytes)
                          : "cannot read (" + read_error_text(e) + ")";
    return r;
  }
  r.status = IndexRead::bad;
  json j;
  ParseLimits limits;
  limits.max_values = text.size();  // every value takes at least one byte: a bound, not a limit
  if (const std::string why = bounded_parse(text, false, limits, j); !why.empty()) {
    r.reason = fmt::format("not valid JSON, truncated, corrupted or hostile ({})", why);
    return r;
  }
  if (!j.is_object() || !j.contains("magic") || j["magic"] != kIndexMagic) {
    r.reason = "not a sigjit index file (wrong magic)";
    return r;
  }
  const auto version = j.find("format_version");
  if (version == j.end() || !version->is_number_integer()) {
    r.reason = "no integer format_version";
    return r;
  }
  if (!(version->is_number_unsigned() && *version >= kOldestReadableFormatVersion && *version <= kFormatVersion)) {
    // An unsigned value beyond int64 (>= 2^63) is a newer format too, not a negative one.
    const bool huge = version->is_number_unsigned() && version->get<std::uint64_t>() > std::uint64_t{INT64_MAX};
    const auto v = huge ? std::numeric_limits<std::int64_t>::max() : version->get<std::int64_t>();
    r.reason = fmt::format("format version {} ({} sigjit), this sigjit reads {}", version->dump(),
                           v > kFormatVersion ? "written by a newer" : "an older", kFormatVersion);
    if (v > kFormatVersion) {
      r.status = IndexRead::newer;
      if (const json* e = j.contains("entry") ? &j["entry"] : nullptr;
          e != nullptr && e->is_object() && e->contains("cubin_sha256") && (*e)["cubin_sha256"].is_string())
        r.newer_cubin = (*e)["cubin_sha256"].get<std::string>();
    }
    return r;
  }
  const auto sum = j.find("checksum");
  if (sum == j.end() || !sum->is_string()) {
    r.reason = "no checksum";
    return r;
  }
  const std::string stored = sum->get<std::string>();
  j.erase("checksum");
  const std::string body = canonical(j);
  if (sha256_hex(body.data(), body.size()) != stored) {
    r.reason = "checksum mismatch (the file is corrupted or was edited)";
    return r;
  }
  try {
    r.fingerprint = DeviceFingerprint::from_json(field(j, "fingerprint", "index file"));
    r.entry = Entry::from_json(field(j, "entry", "index file"));
    if (*version < 2) {
      r.entry.origin = kOriginUnknown;  // format 1 had no origin: it cannot prove it was measured here
    } else if (!field(j, "entry", "index file").contains("origin")) {
      r.reason = "entry has no origin (format 2 requires it)";
      return r;
    }
    check_entry_bounds(r.entry);
    const std::string file_key = get_string(j, "problem_key", "index file");
    if (file_key != key || r.entry.problem_key != key) {
      r.reason = fmt::format("holds problem key '{}' (entry: '{}'), not '{}' as its name says", file_key, r.entry.problem_key, key);
      return r;
    }
  } catch (const Error& ex) {
    r.reason = ex.what();
    return r;
  }
  if (r.fingerprint.id() != fp_id) {
    r.reason = fmt::format("its fingerprint has id {}, not {} as its directory says", r.fingerprint.id(), fp_id);
    return r;
  }
  if (!is_sha256_hex(r.entry.cubin_sha256)) {
    r.reason = fmt::format("entry.cubin_sha256 '{}' is not a SHA-256 digest", r.entry.cubin_sha256);
    return r;
  }
  r.status = IndexRead::ok;
  return r;
}

namespace {

std::string index_text(const DeviceFingerprint& fp, const Entry& entry) {
  const json fpj = fp.to_json();
  const json ej = entry.to_json();
  const json body = {
      {"magic", kIndexMagic}, {"format_version", kFormatVersion}, {"fingerprint", fpj}, {"problem_key", entry.problem_key}, {"entry", ej}};
  const std::string c = canonical(body);
  // Same content, human-friendly order: magic first, checksum last, nested keys sorted.
  nlohmann::ordered_json out;
  out["magic"] = kIndexMagic;
  out["format_version"] = kFormatVersion;
  out["fingerprint"] = nlohmann::ordered_json::parse(canonical(fpj));
  out["problem_key"] = entry.problem_key;
  out["entry"] = nlohmann::ordered_json::parse(canonical(ej));
  out["checksum"] = sha256_hex(c.data(), c.size());
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace

// ---- merge policy (keep_faster) ------------------------------------------------------------------

namespace {

bool measured(const Entry& e) { return std::isfinite(e.median_ms) && e.median_ms > 0; }

// keep_faster: does `a` beat `b`? An entry measured here beats any that was not (an imported
// time is a claim: F1), then tuned beats untuned, a measured time beats none, then the lower
// median; a tie keeps `b` (the existing entry).
bool beats(const Entry& a, const Entry& b) {
  if (a.measured_here() != b.measured_here()) return a.measured_here();
  if (a.tuned != b.tuned) return a.tuned;
  if (measured(a) != measured(b)) return measured(a);
  return measured(a) && a.median_ms < b.median_ms;
}

// Why `a` beats `b` (beats(a, b) holds), following beats' order: only the last step compares
// times; a tuned or timed entry over an untuned or untimed one is not a speed-up (F17).
Outcome replaced_because(const Entry& a, const Entry& b) {
  if (a.measured_here() != b.measured_here()) return Outcome::replaced;
  if (a.tuned != b.tuned || measured(a) != measured(b)) return Outcome::replaced_untuned;
  return Outcome::replaced_faster;
}

// Adds the loser's provenance records and rejected configs the winner lacks (linear: F8). An
// entry measured here takes none of them from a claim (an entry of another origin): a claim's
// provenance is forged as easily as its time.
void merge_lists(Entry& winner, const Entry& loser) {
  if (winner.measured_here() && loser.origin != kOriginLocal) return;
  std::set<std::tuple<std::string, std::string, std::string>> seen;
  for (const Provenance& p : winner.provenance) seen.emplace(p.host, p.time_utc, p.sigjit_version);
  for (const Provenance& p : loser.provenance)
    if (seen.emplace(p.host, p.time_utc, p.sigjit_version).second) winner.provenance.push_back(p);
  std::set<std::pair<std::string, std::string>> seen_rejected;
  for (const Rejected& r : winner.rejected) seen_rejected.emplace(r.config, r.reason);
  for (const Rejected& r : loser.rejected)
    if (seen_rejected.emplace(r.config, r.reason).second) winner.rejected.push_back(r);
  cap_lists(winner);
}

// Validates an entry about to be written, with its lists capped: throws Error naming the field.
Entry checked_for_write(const Entry& in) {
  check_key(in.problem_key);
  check_sha(in.cubin_sha256, "entry.cubin_sha256");
  for (const auto& [name, v] : {std::pair{"median_ms", in.median_ms}, std::pair{"spread", in.spread}, std::pair{"tflops", in.tflops}})
    if (!std::isfinite(v))
      fail(fmt::format("cache: entry {}: {} is {}; store a finite number (0 when not measured)", in.problem_key, name, v));
  Entry e = in;
  cap_lists(e);
  try {
    check_entry_bounds(e);
  } catch (const Error& ex) {
    fail(fmt::format("cache: entry {}: {}", e.problem_key, ex.what()));
  }
  return e;
}

}  // namespace

// Keeps the lists of one entry bounded (F8): the newest kMaxProvenance provenance records (by
// time, order otherwise kept), the first kMaxRejected rejected configs, reasons cut short.
void cap_lists(Entry& e) {
  if (e.provenance.size() > kMaxProvenance) {
    std::vector<std::size_t> order(e.provenance.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return e.provenance[a].time_utc > e.provenance[b].time_utc; });
    std::vector<bool> keep(order.size(), false);
    for (std::size_t i = 0; i < kMaxProvenance; ++i) keep[order[i]] = true;
    std::vector<Provenance> kept;
    for (std::size_t i = 0; i < order.size(); ++i)
      if (keep[i]) kept.push_back(std::move(e.provenance[i]));
    e.provenance = std::move(kept);
  }
  if (e.rejected.size() > kMaxRejected) e.rejected.resize(kMaxRejected);
  for (Rejected& r : e.rejected)
    if (r.reason.size() > kMaxRejectedReason) r.reason = r.reason.substr(0, kMaxRejectedReason) + " [...]";
}

// The keep_faster merge of `incoming` into `current` (both readable): the result and whether
// `incoming` won.
std::pair<Entry, bool> merge_entries(const Entry& current, const Entry& incoming) {
  if (beats(incoming, current)) {
    Entry result = incoming;
    merge_lists(result, current);
    return {std::move(result), true};
  }
  Entry result = current;
  merge_lists(result, incoming);
  return {std::move(result), false};
}

Outcome put_entry_locked(const fs::path& root, const DeviceFingerprint& fp, const Entry& entry_in, MergePolicy policy) {
  const Entry entry = checked_for_write(entry_in);
  const std::string id = fp.id();
  const fs::path path = index_path(root, id, entry.problem_key);
  KeyLock lock(lock_path(root, id, entry.problem_key));  // its directories are created by open_cache_dir, as atomic_write's
  IndexRead cur = read_index(path, entry.problem_key, id);
  if (cur.status == IndexRead::ok && cur.fingerprint != fp) {
    cur.status = IndexRead::bad;
    cur.reason = "written for a different device fingerprint with the same id";
  }
  if (cur.status == IndexRead::bad || cur.status == IndexRead::newer) log_miss(path, cur.reason);
  Outcome outcome;
  Entry result;
  std::error_code ec;
  const bool cur_cubin_gone = cur.status == IndexRead::ok && !fs::exists(blob_path(root, cur.entry.cubin_sha256), ec);
  // Trust (F1): an entry measured on this machine is displaced only by another one measured here.
  const bool measured_over_unmeasured = cur.status == IndexRead::ok && cur.entry.measured_here() && !entry.measured_here();
  if (cur.status != IndexRead::ok) {
    outcome = Outcome::added;
    result = entry;
  } else if (policy == MergePolicy::replace) {
    outcome = Outcome::replaced;
    result = entry;
  } else if (cur_cubin_gone && !(measured_over_unmeasured && entry.origin != kOriginLocal)) {
    // The existing entry's cubin is gone (deleted as corrupt, or by hand): however fast it was,
    // it can only miss, so a new entry from this machine replaces it, or an untuned re-put could
    // never heal it. Not so an entry from elsewhere (a claim) over one measured here, even with
    // its cubin gone: the measurement and its config stay, the runtime recompiles that config on
    // next use (resolve.cpp, from_store) and heals the entry with replace_if_current. Otherwise
    // deleting one blob would let any bundle displace a local measurement.
    outcome = Outcome::replaced_cubin_missing;
    result = entry;
    merge_lists(result, cur.entry);
  } else if (beats(entry, cur.entry)) {
    outcome = replaced_because(entry, cur.entry);
    result = entry;
    merge_lists(result, cur.entry);
  } else {
    outcome = !measured_over_unmeasured ? Outcome::kept : cur_cubin_gone ? Outcome::kept_local_cubin_missing : Outcome::kept_local;
    result = cur.entry;
    merge_lists(result, entry);
    if (result.to_json() == cur.entry.to_json()) return outcome;  // nothing new: no write
  }
  atomic_write(root / "tmp", path, index_text(fp, result));
  return outcome;
}

// Store::replace_if_current.
bool replace_locked_if(const fs::path& root, const DeviceFingerprint& fp, const Entry& entry_in, const std::string& expected_sha) {
  const Entry entry = checked_for_write(entry_in);
  const std::string id = fp.id();
  const fs::path path = index_path(root, id, entry.problem_key);
  KeyLock lock(lock_path(root, id, entry.problem_key));  // its directories are created by open_cache_dir, as atomic_write's
  const IndexRead cur = read_index(path, entry.problem_key, id);
  if (cur.status == IndexRead::newer) return false;
  Entry result = entry;
  if (cur.status == IndexRead::ok && cur.fingerprint == fp) {
    if (cur.entry.cubin_sha256 != expected_sha) return false;  // replaced meanwhile: leave the newer write alone
    merge_lists(result, cur.entry);
  }
  atomic_write(root / "tmp", path, index_text(fp, result));
  return true;
}

// Lowercase hex of a 32-byte SHA-256 digest: the form of every digest in index files and names.
std::string digest_hex(const unsigned char* md) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned k = 0; k < 32; ++k) {
    out[2 * k] = digits[md[k] >> 4];
    out[2 * k + 1] = digits[md[k] & 15];
  }
  return out;
}

}  // namespace detail

using namespace detail;  // the store's internals: files.hpp, store_internal.hpp

// ---- public: hashing, JSON ----------------------------------------------------------------------

std::string sha256_hex(const void* data, std::size_t size) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, size, md, &len, EVP_sha256(), nullptr) != 1 || len != 32)
    fail("cache: OpenSSL's EVP_Digest(SHA-256) failed; check the OpenSSL installation (libcrypto)");
  return digest_hex(md);
}

std::string DeviceFingerprint::id() const {
  const std::string c = canonical(to_json());
  return sha256_hex(c.data(), c.size()).substr(0, 16);
}

nlohmann::json DeviceFingerprint::to_json() const {
  return {{"gpu_name", gpu_name},
          {"cc_major", cc_major},
          {"cc_minor", cc_minor},
          {"sm_count", sm_count},
          {"driver_version", driver_version},
          {"nvrtc_version", nvrtc_version},
          {"codegen_version", codegen_version},
          {"compile_options", compile_options}};
}

DeviceFingerprint DeviceFingerprint::from_json(const nlohmann::json& j) {
  constexpr const char* what = "device fingerprint";
  DeviceFingerprint f;
  f.gpu_name = get_string(j, "gpu_name", what);
  f.cc_major = get_int(j, "cc_major", what);
  f.cc_minor = get_int(j, "cc_minor", what);
  f.sm_count = get_int(j, "sm_count", what);
  f.driver_version = get_int(j, "driver_version", what);
  f.nvrtc_version = get_string(j, "nvrtc_version", what);
  f.codegen_version = get_int(j, "codegen_version", what);
  f.compile_options = get_string(j, "compile_options", what);
  return f;
}

bool Entry::measured_here() const { return origin == kOriginLocal && tuned && measured(*this); }

nlohmann::json Entry::to_json() const {
  json prov = json::array();
  for (const Provenance& p : provenance) prov.push_back({{"host", p.host}, {"time_utc", p.time_utc}, {"sigjit_version", p.sigjit_version}});
  json rej = json::array();
  for (const Rejected& r : rejected) rej.push_back({{"config", r.config}, {"reason", r.reason}});
  json j = json::object();
  j["problem_key"] = problem_key;
  j["spec"] = spec;
  j["config"] = config;
  j["kernel_name"] = kernel_name;
  j["tuned"] = tuned;
  j["median_ms"] = median_ms;
  j["spread"] = spread;
  j["tflops"] = tflops;
  j["tuned_shape"] = tuned_shape;
  j["cubin_sha256"] = cubin_sha256;
  j["provenance"] = std::move(prov);
  j["rejected"] = std::move(rej);
  j["origin"] = origin;
  return j;
}

Entry Entry::from_json(const nlohmann::json& j) {
  constexpr const char* what = "cache entry";
  Entry e;
  e.problem_key = get_string(j, "problem_key", what);
  e.spec = field(j, "spec", what);
  e.config = get_string(j, "config", what);
  e.kernel_name = get_string(j, "kernel_name", what);
  e.tuned = get_bool(j, "tuned", what);
  e.median_ms = get_double(j, "median_ms", what);
  e.spread = get_double(j, "spread", what);
  e.tflops = get_double(j, "tflops", what);
  e.tuned_shape = get_string(j, "tuned_shape", what);
  e.cubin_sha256 = get_string(j, "cubin_sha256", what);
  for (const json& p : get_array(j, "provenance", what))
    e.provenance.push_back({get_string(p, "host", "cache entry provenance"), get_string(p, "time_utc", "cache entry provenance"),
                            get_string(p, "sigjit_version", "cache entry provenance")});
  for (const json& r : get_array(j, "rejected", what))
    e.rejected.push_back({get_string(r, "config", "cache entry rejected config"), get_string(r, "reason", "cache entry rejected config")});
  // Absent before index format 2 (and in bundles of older versions): nothing proves where it was measured.
  e.origin = j.contains("origin") ? get_string(j, "origin", what) : std::string(kOriginUnknown);
  return e;
}

}  // namespace sigjit::cache
