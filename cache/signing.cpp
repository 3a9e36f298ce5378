// Ed25519 keys and entry signatures (design: cache/signing.hpp). Every cryptographic step is an
// OpenSSL 3 EVP call; this file only reads files (bounded), builds the signed byte string and
// maps OpenSSL's results to sigjit::Error or a log line.
#include "cache/signing.hpp"

#include "base/env.hpp"
#include "base/posix_file.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

namespace sigjit::cache {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& message) { throw Error(message); }

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

// A string that may come from another machine, fit for a message: at most `keep` bytes, every
// byte outside printable ASCII shown as '?', so that no control character reaches a terminal.
std::string printable(std::string_view s, std::size_t keep = 80) {
  std::string out(s.substr(0, keep));
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
  if (s.size() > keep) out += fmt::format("... ({} bytes)", s.size());
  return out;
}

// OpenSSL's error queue as one line (and emptied, so a later call does not report it again).
std::string openssl_error() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("no OpenSSL error recorded") : out;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// PEM readers call this for an encrypted key: refusing keeps OpenSSL from prompting on a
// terminal inside a training process. sigjit's keys are unencrypted (file mode 0600 protects them).
int refuse_passphrase(char*, int, int, void*) { return -1; }

// A std::string whose bytes are wiped when it goes away (PEM text of a private key).
struct SecretText {
  std::string bytes;
  ~SecretText() {
    if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
  }
};

// Reads a whole regular file of at most `limit` bytes (links followed: key files are often
// mounted secrets, which are links). O_NONBLOCK: a FIFO never blocks the reader.
std::string read_small_file(const fs::path& path, std::size_t limit, const char* what, struct stat* st_out = nullptr) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(fmt::format("{} '{}': {}; check the path", what, path.string(), errno_text(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(fmt::format("{} '{}': {}", what, path.string(), errno_text(errno)));
  if (!S_ISREG(st.st_mode)) fail(fmt::format("{} '{}' is not a regular file; give a PEM file", what, path.string()));
  if (static_cast<std::uint64_t>(st.st_size) > limit)
    fail(fmt::format("{} '{}' is {} bytes, over the limit of {} for a PEM key file; is it the right file?", what, path.string(), st.st_size,
                     limit));
  std::string out(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t done = 0;
  for (;;) {
    if (done == out.size()) {
      if (out.size() > limit) fail(fmt::format("{} '{}' grew past {} bytes while being read", what, path.string(), limit));
      out.resize(out.size() + 1024);
    }
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(fmt::format("{} '{}': {}", what, path.string(), errno_text(errno)));
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (done > limit) fail(fmt::format("{} '{}' grew past {} bytes while being read", what, path.string(), limit));
  out.resize(done);
  if (st_out != nullptr) *st_out = st;
  return out;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) fail("OpenSSL's RAND_bytes failed: " + openssl_error());
  return fmt::format("{:02x}", fmt::join(buf, ""));
}

// Writes `bytes` to a new file `path` with `mode`: a temp file in the same directory (O_EXCL,
// created with `mode`, fsynced), then link(2) onto `path`, which fails if `path` exists: the file
// appears complete or not at all, and nothing existing is ever replaced.
void write_new_file(const fs::path& path, const std::string& bytes, mode_t mode, const char* what) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const fs::path tmp = dir / fmt::format(".{}.tmp.{}.{}", path.filename().string(), ::getpid(), random_hex(8));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) fail(fmt::format("{} '{}': cannot create a file in '{}': {}", what, path.string(), dir.string(), errno_text(errno)));
  const bool ok = ::fchmod(fd, mode) == 0 && posix::write_all(fd, bytes.data(), bytes.size()) && ::fsync(fd) == 0;
  const int write_errno = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    fail(fmt::format("{} '{}': writing failed: {}", what, path.string(), errno_text(write_errno)));
  }
  const int linked = ::link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  ::unlink(tmp.c_str());
  if (linked != 0 && link_errno == EEXIST)
    fail(fmt::format("{} '{}' already exists; it is never overwritten: remove it or choose another name", what, path.string()));
  if (linked != 0) fail(fmt::format("{} '{}': {}", what, path.string(), errno_text(link_errno)));
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // best effort: the link survives a power loss
    ::close(dfd);
  }
}

bool is_ed25519(const EVP_PKEY* k) { return EVP_PKEY_is_a(k, "ED25519") == 1; }

std::string key_id_of(const EVP_PKEY* k) {
  unsigned char raw[64];
  std::size_t len = sizeof(raw);
  if (EVP_PKEY_get_raw_public_key(k, raw, &len) != 1 || len != 32) fail("OpenSSL cannot export an Ed25519 public key: " + openssl_error());
  return sha256_hex(raw, len);
}

std::string pem_of(EVP_PKEY* k, bool private_key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) fail("OpenSSL BIO_new failed: " + openssl_error());
  const int ok =
      private_key ? PEM_write_bio_PrivateKey(bio.get(), k, nullptr, nullptr, 0, nullptr, nullptr) : PEM_write_bio_PUBKEY(bio.get(), k);
  if (ok != 1) fail("OpenSSL cannot write a PEM key: " + openssl_error());
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, static_cast<std::size_t>(n));
  if (private_key) OPENSSL_cleanse(data, static_cast<std::size_t>(n));
  return out;
}

// ---- the signed byte string ------------------------------------------------------------------

void put_u32(std::string& out, std::size_t v) {
  if (v > 0xffffffffu) fail(fmt::format("a signed field of {} bytes is too long", v));
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_field(std::string& out, std::string_view name, std::string_view value) {
  put_u32(out, name.size());
  out.append(name);
  put_u32(out, value.size());
  out.append(value);
}

// Doubles by their bits: exact, and independent of any number formatting.
std::string double_bits(double v) { return fmt::format("{:016x}", std::bit_cast<std::uint64_t>(v)); }

}  // namespace

void EvpPkeyFree::operator()(evp_pkey_st* k) const { EVP_PKEY_free(k); }

bool is_key_id(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string key_id_short(const std::string& key_id) { return key_id.substr(0, 16); }

// ---- private keys --------------------------------------------------------------------------------

PrivateKey PrivateKey::load(const fs::path& pem_file) {
  constexpr const char* what = "signing key";
  struct stat st {};
  SecretText text{read_small_file(pem_file, kMaxPemBytes, what, &st)};
  if ((st.st_mode & 022) != 0)
    fail(fmt::format("{} '{}' is writable by group or others (mode {:04o}); anyone who can replace it signs for you: chmod 600 '{}'", what,
                     pem_file.string(), st.st_mode & 07777, pem_file.string()));
  BioPtr bio(BIO_new_mem_buf(text.bytes.data(), static_cast<int>(text.bytes.size())));
  if (!bio) fail("OpenSSL BIO_new_mem_buf failed: " + openssl_error());
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, nullptr));
  if (!key)
    fail(fmt::format("{} '{}' holds no readable unencrypted PEM private key ({}); make one with `sigjit keygen`", what, pem_file.string(),
                     openssl_error()));
  if (!is_ed25519(key.get()))
    fail(fmt::format("{} '{}' is not an Ed25519 key; sigjit signs with Ed25519 only: make one with `sigjit keygen`", what,
                     pem_file.string()));
  std::string id = key_id_of(key.get());
  return PrivateKey(std::move(key), std::move(id));
}

std::string PrivateKey::sign(std::string_view message) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  unsigned char sig[kEd25519SignatureBytes];
  std::size_t len = sizeof(sig);
  // Ed25519 hashes internally: no digest is named (nullptr), and the one-shot call is required.
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      len != sizeof(sig))
    fail("signing with key " + key_id_short(key_id_) + " failed: " + openssl_error());
  return std::string(reinterpret_cast<const char*>(sig), len);
}

KeyPairFiles generate_key_pair(const fs::path& private_pem, const fs::path& public_pem) {
  if (private_pem.empty() || public_pem.empty()) fail("keygen: the private and public key paths must not be empty");
  if (fs::absolute(private_pem).lexically_normal() == fs::absolute(public_pem).lexically_normal())
    fail(fmt::format("keygen: the private and public key paths are the same ('{}'); give two files", private_pem.string()));
  for (const fs::path& p : {private_pem, public_pem}) {
    std::error_code ec;
    if (fs::symlink_status(p, ec).type() != fs::file_type::not_found)
      fail(fmt::format("keygen: '{}' already exists; it is never overwritten: remove it or choose another name", p.string()));
  }
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) fail("keygen: OpenSSL cannot generate an Ed25519 key: " + openssl_error());
  KeyPairFiles out{private_pem, public_pem, key_id_of(key.get())};
  const std::string public_text = pem_of(key.get(), false);
  {
    SecretText private_text{pem_of(key.get(), true)};
    write_new_file(private_pem, private_text.bytes, 0600, "keygen: private key");
  }
  try {
    write_new_file(public_pem, public_text, 0644, "keygen: public key");
  } catch (...) {
    ::unlink(private_pem.c_str());  // ours, written just now: no half pair is left behind
    throw;
  }
  return out;
}

// ---- trusted public keys --------------------------------------------------------------------------

TrustedKeys TrustedKeys::from_env() {
  const char* v = env::raw(kTrustedKeysEnv);
  return from_list(v == nullptr ? std::string_view() : std::string_view(v));
}

TrustedKeys TrustedKeys::from_list(std::string_view list, const char* what) {
  if (list.size() > kMaxTrustedKeysListBytes)
    fail(fmt::format("{} is {} bytes long, over the limit of {}; list PEM files or directories, ':'-separated", what, list.size(),
                     kMaxTrustedKeysListBytes));
  TrustedKeys trusted;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(':', start), list.size());
    const fs::path item(std::string(list.substr(start, end - start)));
    start = end + 1;
    if (item.empty()) continue;
    struct stat st {};
    if (::stat(item.c_str(), &st) != 0)
      fail(fmt::format("{}: '{}': {}; list PEM public key files or directories of *.pem files, ':'-separated", what, item.string(),
                       errno_text(errno)));
    if (!S_ISDIR(st.st_mode)) {
      trusted.add_file(item);
      continue;
    }
    std::vector<fs::path> files;
    std::size_t seen = 0;
    std::error_code ec;
    for (fs::directory_iterator it(item, ec), last; !ec && it != last; it.increment(ec)) {
      if (++seen > kMaxTrustedDirEntries)
        fail(fmt::format("{}: directory '{}' has more than {} entries; keep only the trusted *.pem files there", what, item.string(),
                         kMaxTrustedDirEntries));
      std::error_code type_ec;
      if (it->path().extension() == ".pem" && it->is_regular_file(type_ec)) files.push_back(it->path());
    }
    if (ec) fail(fmt::format("{}: directory '{}': {}", what, item.string(), ec.message()));
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) trusted.add_file(f);
  }
  return trusted;
}

void TrustedKeys::add_file(const fs::path& pem_file) {
  constexpr const char* what = "trusted key file";
  constexpr std::string_view kPublicKeyBegin = "-----BEGIN PUBLIC KEY-----";
  const std::string text = read_small_file(pem_file, kMaxPemBytes, what);
  if (text.find("PRIVATE KEY-----") != std::string::npos)
    fail(
        fmt::format("{} '{}' holds a private key; trust only public keys (`sigjit keygen` writes NAME.pub.pem), and keep private keys "
                    "on the nodes that sign",
                    what, pem_file.string()));
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) fail("OpenSSL BIO_new_mem_buf failed: " + openssl_error());
  int read = 0;
  std::vector<Key> found;  // added only when the whole file is good
  ERR_clear_error();
  while (EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, refuse_passphrase, nullptr)) {
    std::shared_ptr<EVP_PKEY> key(raw, EVP_PKEY_free);
    ++read;
    if (!is_ed25519(raw))
      fail(fmt::format("{} '{}': key {} is not an Ed25519 key; sigjit verifies Ed25519 only", what, pem_file.string(), read));
    std::string id = key_id_of(raw);
    if (trusts(id) || std::any_of(found.begin(), found.end(), [&](const Key& k) { return k.key_id == id; })) continue;
    if (keys_.size() + found.size() >= kMaxTrustedKeys)
      fail(fmt::format("{} '{}': more than {} trusted keys in all; keep only the keys in use (old and new while rotating)", what,
                       pem_file.string(), kMaxTrustedKeys));
    found.push_back(Key{std::move(id), pem_file, std::move(key)});
  }
  // The loop ends at the end of the text or at the first block it cannot read (OpenSSL's error
  // then differs by version): every "BEGIN PUBLIC KEY" block must have been read.
  const std::string detail = openssl_error();
  std::size_t blocks = 0;
  for (std::size_t at = text.find(kPublicKeyBegin); at != std::string::npos; at = text.find(kPublicKeyBegin, at + 1)) ++blocks;
  if (read == 0 || static_cast<std::size_t>(read) != blocks)
    fail(
        fmt::format("{} '{}' holds {} PEM public key ({} of {} blocks read: {}); give Ed25519 public keys as `sigjit keygen` writes them "
                    "(NAME.pub.pem)",
                    what, pem_file.string(), read == 0 ? "no" : "a damaged", read, blocks, detail));
  keys_.insert(keys_.end(), std::make_move_iterator(found.begin()), std::make_move_iterator(found.end()));
}

const TrustedKeys::Key* TrustedKeys::find(const std::string& key_id) const {
  for (const Key& k : keys_)
    if (k.key_id == key_id) return &k;
  return nullptr;
}

std::string TrustedKeys::verify(std::string_view message, std::string_view signature, const std::string& key_id) const {
  if (!is_key_id(key_id)) return "the signer's key id is malformed (expected 64 lower-case hex digits)";
  const Key* k = find(key_id);
  if (k == nullptr) {
    if (keys_.empty())
      return fmt::format("signed by key {}, but no key is trusted: set {} to the publishers' public key files", key_id_short(key_id),
                         kTrustedKeysEnv);
    std::vector<std::string> ids;
    for (const Key& t : keys_) ids.push_back(key_id_short(t.key_id));
    return fmt::format("signed by key {}, which is not in {} (trusted: {})", key_id_short(key_id), kTrustedKeysEnv, fmt::join(ids, ", "));
  }
  if (signature.size() != kEd25519SignatureBytes)
    return fmt::format("the signature is {} bytes, not the {} of an Ed25519 signature", signature.size(), kEd25519SignatureBytes);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  int rc = -1;
  if (ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, k->key.get()) == 1)
    rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(message.data()), message.size());
  ERR_clear_error();
  if (rc == 1) return {};
  return fmt::format("the signature by key {} ({}) does not match the entry and cubin: altered, or signed for something else",
                     key_id_short(key_id), k->source.string());
}

// ---- entries -----------------------------------------------------------------------------------

std::string entry_signing_message(const DeviceFingerprint& fp, const Entry& e, const std::string& cubin_sha256) {
  if (!is_key_id(cubin_sha256))
    fail(fmt::format("entry signature: cubin digest '{}' is not 64 lower-case hex digits", printable(cubin_sha256)));
  std::string spec;
  try {
    spec = e.spec.dump();  // strict: invalid UTF-8 throws (a replacement character would make two specs sign alike)
  } catch (const nlohmann::json::exception& ex) {
    fail(fmt::format("entry signature: the spec of {} cannot be serialized: {}", printable(e.problem_key, 200), ex.what()));
  }
  std::string m;
  m.reserve(1024 + spec.size() + e.problem_key.size() + fp.compile_options.size());
  m.append("sigjit entry signature v1");
  m.push_back('\0');
  put_field(m, "fp.gpu_name", fp.gpu_name);
  put_field(m, "fp.cc_major", std::to_string(fp.cc_major));
  put_field(m, "fp.cc_minor", std::to_string(fp.cc_minor));
  put_field(m, "fp.sm_count", std::to_string(fp.sm_count));
  put_field(m, "fp.driver_version", std::to_string(fp.driver_version));
  put_field(m, "fp.nvrtc_version", fp.nvrtc_version);
  put_field(m, "fp.codegen_version", std::to_string(fp.codegen_version));
  put_field(m, "fp.compile_options", fp.compile_options);
  put_field(m, "problem_key", e.problem_key);
  put_field(m, "spec", spec);
  put_field(m, "config", e.config);
  put_field(m, "kernel_name", e.kernel_name);
  put_field(m, "tuned", e.tuned ? "1" : "0");
  put_field(m, "median_ms", double_bits(e.median_ms));
  put_field(m, "spread", double_bits(e.spread));
  put_field(m, "tflops", double_bits(e.tflops));
  put_field(m, "tuned_shape", e.tuned_shape);
  put_field(m, "provenance", std::to_string(e.provenance.size()));
  for (const Provenance& p : e.provenance) {
    put_field(m, "provenance.host", p.host);
    put_field(m, "provenance.time_utc", p.time_utc);
    put_field(m, "provenance.sigjit_version", p.sigjit_version);
  }
  put_field(m, "cubin_sha256", cubin_sha256);
  return m;
}

EntrySignature sign_entry(const PrivateKey& key, const DeviceFingerprint& fp, const Entry& entry, const std::vector<char>& cubin) {
  const std::string digest = sha256_hex(cubin.data(), cubin.size());
  if (digest != entry.cubin_sha256)
    fail(fmt::format("sign_entry: {}: entry.cubin_sha256 '{}' is not the digest of the cubin given ({}); sign the cubin the entry names",
                     printable(entry.problem_key, 200), printable(entry.cubin_sha256), digest));
  return EntrySignature{key.key_id(), key.sign(entry_signing_message(fp, entry, digest))};
}

std::string verify_entry(const TrustedKeys& trusted, const DeviceFingerprint& fp, const Entry& entry, const std::vector<char>& cubin,
                         const EntrySignature& sig) {
  return verify_entry(trusted, fp, entry, std::string_view(cubin.data(), cubin.size()), sig);
}

std::string verify_entry(const TrustedKeys& trusted, const DeviceFingerprint& fp, const Entry& entry, std::string_view cubin,
                         const EntrySignature& sig) {
  try {
    const std::string digest = sha256_hex(cubin.data(), cubin.size());
    if (digest != entry.cubin_sha256)
      return fmt::format("the cubin's SHA-256 is {}, not {} as the entry says", digest, printable(entry.cubin_sha256));
    return trusted.verify(entry_signing_message(fp, entry, digest), sig.signature, sig.key_id);
  } catch (const std::exception& ex) {
    return ex.what();
  }
}

}  // namespace sigjit::cache
