// Ed25519 signatures over kernel-store entries, for entries that come from another machine (the
// Redis tier, bundles): a reader loads such an entry only if its signature verifies against a key
// it trusts, so no node of a fleet can slip a bad cubin to the others.
//
// What: key pairs as PEM files (`sigjit keygen`), a private key to sign with (tuning nodes), the
// trusted public keys of SIGJIT_TRUSTED_KEYS (readers; several, so keys can rotate), and the
// canonical byte string signed for an entry (entry_signing_message): the entry's identifying
// fields, its claimed timings and the SHA-256 of its cubin. A signature over another cubin,
// another device fingerprint, another problem key or other timings does not verify.
// Why Ed25519: small keys and signatures (32 and 64 bytes), deterministic, no parameters to get
// wrong, and OpenSSL 3 (already linked for SHA-256) has it; every operation is an EVP call, no
// hand-written crypto. Cost: signing or verifying takes ~50-100 us plus the cubin's hash (~50 KB:
// ~30 us); loading a key is one bounded file read.
// Key ids: the lower-case hex SHA-256 of the raw 32-byte public key (key_id_short: its first 16
// digits, for log lines). A record names the key that signed it; only that key is tried.
#pragma once

#include "cache/store.hpp"

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace sigjit::cache {

// Bounds on what is read (checked before parsing), each violation a sigjit::Error naming the file.
inline constexpr std::size_t kMaxPemBytes = 16u << 10;              // an Ed25519 PEM file is ~120 bytes
inline constexpr std::size_t kMaxTrustedKeys = 64;                  // all of SIGJIT_TRUSTED_KEYS together
inline constexpr std::size_t kMaxTrustedDirEntries = 1024;          // names looked at in one listed directory
inline constexpr std::size_t kMaxTrustedKeysListBytes = 64u << 10;  // the SIGJIT_TRUSTED_KEYS value
inline constexpr std::size_t kEd25519SignatureBytes = 64;
inline constexpr const char* kTrustedKeysEnv = "SIGJIT_TRUSTED_KEYS";

// First 16 hex digits of a key id: enough to tell keys apart in a log line.
std::string key_id_short(const std::string& key_id);
// Whether `s` has the form of a key id (64 lower-case hex digits).
bool is_key_id(std::string_view s);

struct EvpPkeyFree {
  void operator()(evp_pkey_st* k) const;
};
using EvpPkeyPtr = std::unique_ptr<evp_pkey_st, EvpPkeyFree>;

// A private key to sign with (a tuning node's). Move-only; the key material stays in OpenSSL.
class PrivateKey {
 public:
  // Reads an Ed25519 private key (PKCS#8 PEM, unencrypted, as generate_key_pair writes it).
  // Refuses a file others can write (mode & 022), over kMaxPemBytes, or not a regular file.
  static PrivateKey load(const std::filesystem::path& pem_file);
  const std::string& key_id() const { return key_id_; }
  // The 64-byte Ed25519 signature of `message`.
  std::string sign(std::string_view message) const;

 private:
  PrivateKey(EvpPkeyPtr key, std::string key_id) : key_(std::move(key)), key_id_(std::move(key_id)) {}
  EvpPkeyPtr key_;
  std::string key_id_;
};

struct KeyPairFiles {
  std::filesystem::path private_pem;
  std::filesystem::path public_pem;
  std::string key_id;
};

// Generates an Ed25519 key pair and writes it: the private key (PKCS#8 PEM) with mode 0600 and
// the public key (SubjectPublicKeyInfo PEM) with mode 0644, each written to a temp file in the
// destination directory, fsynced and hard-linked into place, so that a file appears whole or not
// at all, and an existing file is never overwritten (sigjit::Error naming it; nothing written).
KeyPairFiles generate_key_pair(const std::filesystem::path& private_pem, const std::filesystem::path& public_pem);

// The public keys a reader trusts. Copyable (keys are shared, immutable).
class TrustedKeys {
 public:
  struct Key {
    std::string key_id;
    std::filesystem::path source;  // the PEM file it was read from
    std::shared_ptr<evp_pkey_st> key;
  };

  // From SIGJIT_TRUSTED_KEYS; unset or empty: no keys (every verification fails, saying so).
  static TrustedKeys from_env();
  // `list`: ':'-separated PEM files and/or directories (each directory's *.pem files, sorted,
  // not recursive; other names are ignored); empty components are skipped. A file may hold
  // several public keys (concatenated PEM blocks). `what` names the list in errors. Throws
  // sigjit::Error naming the file for a missing or unreadable path, a file without a public key
  // (or with a private one), a key that is not Ed25519, or more than kMaxTrustedKeys keys.
  static TrustedKeys from_list(std::string_view list, const char* what = kTrustedKeysEnv);
  // Adds the public keys of one PEM file (the same rules); a key already present is not repeated.
  void add_file(const std::filesystem::path& pem_file);

  bool empty() const { return keys_.empty(); }
  std::size_t size() const { return keys_.size(); }
  const std::vector<Key>& keys() const { return keys_; }
  bool trusts(const std::string& key_id) const { return find(key_id) != nullptr; }
  // "" when `signature` is a valid signature of `message` by the trusted key `key_id`; otherwise
  // why not, in words fit for a log line (untrusted key, malformed or wrong signature).
  std::string verify(std::string_view message, std::string_view signature, const std::string& key_id) const;

 private:
  const Key* find(const std::string& key_id) const;
  std::vector<Key> keys_;
};

// ---- what is signed for a store entry --------------------------------------------------------

// The signature of one entry, as records and bundles carry it.
struct EntrySignature {
  std::string key_id;     // 64 hex digits: who signed
  std::string signature;  // kEd25519SignatureBytes raw bytes
};

// The canonical byte string signed for `entry` on the device `fp` with a cubin of digest
// `cubin_sha256` (64 hex digits): a domain tag ("sigjit entry signature v1"), then each field as
// (name, value) pairs with 4-byte big-endian length prefixes, in a fixed order: every fingerprint
// field (GPU, compute capability, SMs, driver, NVRTC, codegen version, compile options with the
// templates' digest), problem_key (spec, bucket, arch), spec (its JSON, keys sorted), config,
// kernel_name, tuned, median_ms, spread, tflops (the doubles' IEEE-754 bit patterns in hex),
// tuned_shape, provenance records, and the cubin digest. Not signed: Entry::rejected (a
// diagnostic list, not carried by records) and Entry::origin (the reader's verdict, not a claim).
// Throws sigjit::Error if the spec cannot be serialized (invalid UTF-8) or the digest is malformed.
std::string entry_signing_message(const DeviceFingerprint& fp, const Entry& entry, const std::string& cubin_sha256);

// Signs `entry` with `cubin`: requires entry.cubin_sha256 to be the cubin's digest (sigjit::Error
// otherwise: the signer never vouches for bytes it does not hold).
EntrySignature sign_entry(const PrivateKey& key, const DeviceFingerprint& fp, const Entry& entry, const std::vector<char>& cubin);

// "" when `sig` verifies: `cubin` hashes to entry.cubin_sha256, and the signature over
// entry_signing_message(fp, entry, that digest) is by a trusted key. Otherwise why not (a line
// for the log); never throws for bad input.
std::string verify_entry(const TrustedKeys& trusted, const DeviceFingerprint& fp, const Entry& entry, const std::vector<char>& cubin,
                         const EntrySignature& sig);
// The same over cubin bytes held elsewhere (a bundle's CBOR byte string), without a copy.
std::string verify_entry(const TrustedKeys& trusted, const DeviceFingerprint& fp, const Entry& entry, std::string_view cubin,
                         const EntrySignature& sig);

}  // namespace sigjit::cache
