// Entry signatures (cache/signing.hpp): key generation (modes, atomic, never overwriting), key
// loading and its bounds, the trusted-key list (files, directories, rotation, refusals), the
// RFC 8032 known answer, and that a signature covers every field it claims to (device, versions,
// template digest, spec, bucket, config, timings, cubin). CPU only, no server; each test uses a
// fresh temp directory and takes milliseconds.
#include "cache/signing.hpp"
#include "tests/common/scoped_env.hpp"
#include "tests/common/cache_test_files.hpp"

#include <sigjit/sigjit.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sigjit::cache::DeviceFingerprint;
using sigjit::cache::Entry;
using sigjit::cache::EntrySignature;
using sigjit::cache::PrivateKey;
using sigjit::cache::TrustedKeys;
using sigjit::test::read_text;
using sigjit::test::test_fp;
using sigjit::test::write_text;
using ::testing::HasSubstr;

// RFC 8032, section 7.1, test 1: the secret key as PKCS#8 PEM, its public key, and the
// signature of the empty message.
constexpr const char* kRfcPrivatePem =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
constexpr const char* kRfcPublicPem =
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
constexpr const char* kRfcKeyId = "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9";  // sha256(raw public key)
constexpr const char* kRfcSignatureHex =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
// A P-256 public key: valid PEM, not Ed25519.
constexpr const char* kEcPublicPem =
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEA/JoI6+ugN/nq/Z7PLrS5azkz2Nl\n"
    "lNf6YNLNv0iw8Hqjpf9H1amID5YRSD2R8+e+NyW1nUObcpylXSoSrZaz9w==\n-----END PUBLIC KEY-----\n";

std::string hex(const std::string& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

using sigjit::test::ScopedEnv;

class Signing : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sigjit_signing_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // A fresh key pair NAME.pem / NAME.pub.pem in the temp directory.
  sigjit::cache::KeyPairFiles keys(const std::string& name) {
    return sigjit::cache::generate_key_pair(dir_ / (name + ".pem"), dir_ / (name + ".pub.pem"));
  }
  fs::path dir_;
};

std::vector<char> cubin_bytes(const std::string& tag) {
  std::vector<char> v(4096);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<char>((i * 131 + tag.size() * 7 + (i < tag.size() ? tag[i] : 0)) & 0xff);
  return v;
}

Entry test_entry(const std::vector<char>& cubin) {
  Entry e;
  e.problem_key = "fwd_bf16_d128_dense_nocausal_logn_nosb_fast_le2k_sm_90a";
  e.spec = {{"dtype", "bf16"}, {"head_dim", 128}, {"layout", "dense"}, {"bucket", "le2k"}, {"arch", "sm_90a"}};
  e.config = "h128x128c2s3o";
  e.kernel_name = "sigjit_fwd_bf16_d128_dense_nocausal_logn_nosb_fast_h128x128c2s3o_sm_90a";
  e.tuned = true;
  e.median_ms = 1.25;
  e.spread = 0.01;
  e.tflops = 700.5;
  e.tuned_shape = "B=8 L=2048 H=16";
  e.cubin_sha256 = sigjit::cache::sha256_hex(cubin.data(), cubin.size());
  e.provenance.push_back({"tuner-7", "2026-12-05T10:00:00Z", "0.1.0"});
  return e;
}

// ---- keys --------------------------------------------------------------------------------------

TEST_F(Signing, KeygenWritesPrivate0600Public0644AndTheIdOfTheKey) {
  const auto k = keys("node");
  struct stat st {};
  ASSERT_EQ(::stat(k.private_pem.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(k.public_pem.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_TRUE(sigjit::cache::is_key_id(k.key_id));
  EXPECT_THAT(read_text(k.private_pem), HasSubstr("BEGIN PRIVATE KEY"));
  EXPECT_THAT(read_text(k.public_pem), HasSubstr("BEGIN PUBLIC KEY"));
  EXPECT_EQ(PrivateKey::load(k.private_pem).key_id(), k.key_id);
  const TrustedKeys t = TrustedKeys::from_list(k.public_pem.string());
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.keys()[0].key_id, k.key_id);
  EXPECT_EQ(sigjit::cache::key_id_short(k.key_id), k.key_id.substr(0, 16));
  // Only the two key files remain: no temp file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 2);
}

TEST_F(Signing, KeygenNeverOverwritesAndLeavesNoHalfPair) {
  write_text(dir_ / "taken.pem", "precious");
  try {
    sigjit::cache::generate_key_pair(dir_ / "taken.pem", dir_ / "taken.pub.pem");
    FAIL() << "overwrote an existing private key file";
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("taken.pem"));
    EXPECT_THAT(e.what(), HasSubstr("never overwritten"));
  }
  EXPECT_EQ(read_text(dir_ / "taken.pem"), "precious");
  EXPECT_FALSE(fs::exists(dir_ / "taken.pub.pem"));
  // The public file exists: nothing is written, the private key included.
  write_text(dir_ / "b.pub.pem", "x");
  EXPECT_THROW(sigjit::cache::generate_key_pair(dir_ / "b.pem", dir_ / "b.pub.pem"), sigjit::Error);
  EXPECT_FALSE(fs::exists(dir_ / "b.pem"));
  EXPECT_THROW(sigjit::cache::generate_key_pair(dir_ / "same.pem", dir_ / "same.pem"), sigjit::Error);
  // Two key pairs differ.
  EXPECT_NE(keys("one").key_id, keys("two").key_id);
}

TEST_F(Signing, Rfc8032KnownAnswer) {
  write_text(dir_ / "rfc.pem", kRfcPrivatePem);
  fs::permissions(dir_ / "rfc.pem", fs::perms::owner_read | fs::perms::owner_write);
  const PrivateKey key = PrivateKey::load(dir_ / "rfc.pem");
  EXPECT_EQ(key.key_id(), kRfcKeyId);
  const std::string sig = key.sign("");
  EXPECT_EQ(hex(sig), kRfcSignatureHex);
  write_text(dir_ / "rfc.pub.pem", kRfcPublicPem);
  const TrustedKeys t = TrustedKeys::from_list((dir_ / "rfc.pub.pem").string());
  EXPECT_EQ(t.verify("", sig, kRfcKeyId), "");
  EXPECT_THAT(t.verify("x", sig, kRfcKeyId), HasSubstr("does not match"));
  std::string flipped = sig;
  flipped[10] ^= 1;
  EXPECT_THAT(t.verify("", flipped, kRfcKeyId), HasSubstr("does not match"));
  EXPECT_THAT(t.verify("", sig.substr(0, 63), kRfcKeyId), HasSubstr("63 bytes"));
}

TEST_F(Signing, PrivateKeyLoadRefusesWhatItMustNotUse) {
  const auto k = keys("node");
  // Writable by the group: anyone there could swap the key.
  fs::permissions(k.private_pem, fs::perms::group_write, fs::perm_options::add);
  try {
    PrivateKey::load(k.private_pem);
    FAIL() << "loaded a group-writable key";
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("chmod 600"));
    EXPECT_THAT(e.what(), HasSubstr(k.private_pem.string()));
  }
  EXPECT_THROW(PrivateKey::load(k.public_pem), sigjit::Error);          // a public key is not a private key
  EXPECT_THROW(PrivateKey::load(dir_ / "missing.pem"), sigjit::Error);  // absent
  write_text(dir_ / "big.pem", std::string(sigjit::cache::kMaxPemBytes + 1, 'A'));
  fs::permissions(dir_ / "big.pem", fs::perms::owner_read | fs::perms::owner_write);
  try {
    PrivateKey::load(dir_ / "big.pem");
    FAIL() << "read an over-long file";
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("over the limit"));
  }
  ASSERT_EQ(::mkfifo((dir_ / "fifo.pem").c_str(), 0600), 0);
  EXPECT_THROW(PrivateKey::load(dir_ / "fifo.pem"), sigjit::Error);  // refused at once, not read (it would block)
}

// ---- trusted keys --------------------------------------------------------------------------------

TEST_F(Signing, TrustedKeysFromFilesDirectoriesAndEnvironment) {
  const auto a = keys("a");
  const auto b = keys("b");
  fs::create_directories(dir_ / "trust");
  fs::copy_file(a.public_pem, dir_ / "trust" / "a.pem");
  fs::copy_file(b.public_pem, dir_ / "trust" / "b.pem");
  write_text(dir_ / "trust" / "README", "not a key: ignored (not *.pem)");
  const TrustedKeys from_dir = TrustedKeys::from_list((dir_ / "trust").string());
  ASSERT_EQ(from_dir.size(), 2u);
  EXPECT_TRUE(from_dir.trusts(a.key_id));
  EXPECT_TRUE(from_dir.trusts(b.key_id));
  // A file and a directory holding the same key, empty components: each key once.
  const TrustedKeys mixed = TrustedKeys::from_list("::" + a.public_pem.string() + ":" + (dir_ / "trust").string() + ":");
  EXPECT_EQ(mixed.size(), 2u);
  // Several keys in one file.
  write_text(dir_ / "bundle.pem", read_text(a.public_pem) + read_text(b.public_pem));
  EXPECT_EQ(TrustedKeys::from_list((dir_ / "bundle.pem").string()).size(), 2u);
  {
    ScopedEnv env(sigjit::cache::kTrustedKeysEnv, b.public_pem.string());
    const TrustedKeys t = TrustedKeys::from_env();
    EXPECT_EQ(t.size(), 1u);
    EXPECT_TRUE(t.trusts(b.key_id));
  }
  {
    ScopedEnv env(sigjit::cache::kTrustedKeysEnv, std::nullopt);
    EXPECT_TRUE(TrustedKeys::from_env().empty());
  }
}

TEST_F(Signing, TrustedKeysRefuseBadFilesNamingThem) {
  const auto a = keys("a");
  const auto expect_error = [&](const std::string& list, const std::string& needle) {
    try {
      TrustedKeys::from_list(list);
      ADD_FAILURE() << "accepted " << list;
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(needle)) << list;
    }
  };
  expect_error((dir_ / "nope.pem").string(), "nope.pem");
  expect_error(a.private_pem.string(), "holds a private key");
  write_text(dir_ / "junk.pem", "hello");
  expect_error((dir_ / "junk.pem").string(), "no PEM public key");
  write_text(dir_ / "ec.pem", kEcPublicPem);
  expect_error((dir_ / "ec.pem").string(), "not an Ed25519 key");
  // A good key followed by a damaged block.
  write_text(dir_ / "damaged.pem", read_text(a.public_pem) + "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n");
  expect_error((dir_ / "damaged.pem").string(), "damaged.pem");
  // More keys than the bound, in one file.
  std::string many;
  for (std::size_t i = 0; i <= sigjit::cache::kMaxTrustedKeys; ++i) many += read_text(keys("k" + std::to_string(i)).public_pem);
  write_text(dir_ / "many.pem", many);
  expect_error((dir_ / "many.pem").string(), "more than");
  expect_error(std::string(sigjit::cache::kMaxTrustedKeysListBytes + 1, 'x'), "over the limit");
}

TEST_F(Signing, EmptyOrWrongTrustSaysWhatToDo) {
  const TrustedKeys none;
  const std::string id(64, 'a');
  EXPECT_THAT(none.verify("m", std::string(64, '\0'), id), HasSubstr("no key is trusted"));
  const auto a = keys("a");
  const TrustedKeys t = TrustedKeys::from_list(a.public_pem.string());
  EXPECT_THAT(t.verify("m", std::string(64, '\0'), id), HasSubstr("not in SIGJIT_TRUSTED_KEYS"));
  EXPECT_THAT(t.verify("m", std::string(64, '\0'), "ABC"), HasSubstr("malformed"));
}

// ---- entries -------------------------------------------------------------------------------------

TEST_F(Signing, EntrySignatureVerifiesAndCoversEveryField) {
  const auto k = keys("tuner");
  const PrivateKey key = PrivateKey::load(k.private_pem);
  const TrustedKeys trusted = TrustedKeys::from_list(k.public_pem.string());
  const DeviceFingerprint fp = test_fp();
  const std::vector<char> cubin = cubin_bytes("winner");
  const Entry entry = test_entry(cubin);
  const EntrySignature sig = sigjit::cache::sign_entry(key, fp, entry, cubin);
  EXPECT_EQ(sig.key_id, k.key_id);
  EXPECT_EQ(sig.signature.size(), sigjit::cache::kEd25519SignatureBytes);
  EXPECT_EQ(sigjit::cache::verify_entry(trusted, fp, entry, cubin, sig), "");
  // Deterministic: the same entry gives the same message (and Ed25519 the same signature).
  EXPECT_EQ(sigjit::cache::entry_signing_message(fp, entry, entry.cubin_sha256),
            sigjit::cache::entry_signing_message(fp, Entry(entry), entry.cubin_sha256));
  EXPECT_EQ(sigjit::cache::sign_entry(key, fp, entry, cubin).signature, sig.signature);

  // Each change of what the entry claims breaks the signature.
  const std::vector<std::pair<std::string, std::function<void(DeviceFingerprint&, Entry&)>>> changes = {
      {"gpu", [](DeviceFingerprint& f, Entry&) { f.gpu_name = "NVIDIA H200"; }},
      {"sm count", [](DeviceFingerprint& f, Entry&) { f.sm_count = 114; }},
      {"driver", [](DeviceFingerprint& f, Entry&) { f.driver_version = 12050; }},
      {"nvrtc", [](DeviceFingerprint& f, Entry&) { f.nvrtc_version = "13.0.1"; }},
      {"codegen", [](DeviceFingerprint& f, Entry&) { f.codegen_version = 4; }},
      {"template digest", [](DeviceFingerprint& f, Entry&) { f.compile_options += " templates=0123"; }},
      {"problem key", [](DeviceFingerprint&, Entry& e) { e.problem_key = "fwd_bf16_d128_dense_nocausal_logn_nosb_fast_le8k_sm_90a"; }},
      {"spec bucket", [](DeviceFingerprint&, Entry& e) { e.spec["bucket"] = "le8k"; }},
      {"config", [](DeviceFingerprint&, Entry& e) { e.config = "h128x64c2s3o"; }},
      {"kernel name", [](DeviceFingerprint&, Entry& e) { e.kernel_name += "x"; }},
      {"tuned", [](DeviceFingerprint&, Entry& e) { e.tuned = false; }},
      {"median", [](DeviceFingerprint&, Entry& e) { e.median_ms = 0.25; }},
      {"spread", [](DeviceFingerprint&, Entry& e) { e.spread = 0.02; }},
      {"tflops", [](DeviceFingerprint&, Entry& e) { e.tflops = 900; }},
      {"tuned shape", [](DeviceFingerprint&, Entry& e) { e.tuned_shape = "B=1 L=2048 H=16"; }},
      {"provenance", [](DeviceFingerprint&, Entry& e) { e.provenance[0].host = "evil"; }},
      {"provenance added",
       [](DeviceFingerprint&, Entry& e) {
         e.provenance.push_back({"x", "y", "z"});
       }},
  };
  for (const auto& [name, change] : changes) {
    DeviceFingerprint f = fp;
    Entry e = entry;
    change(f, e);
    EXPECT_THAT(sigjit::cache::verify_entry(trusted, f, e, cubin, sig), HasSubstr("does not match")) << name;
  }
  // Not signed: the rejected list and the reader's origin verdict.
  Entry unsigned_fields = entry;
  unsigned_fields.rejected.push_back({"m64n64w4s2", "slower"});
  unsigned_fields.origin = sigjit::cache::kOriginImported;
  EXPECT_EQ(sigjit::cache::verify_entry(trusted, fp, unsigned_fields, cubin, sig), "");
}

TEST_F(Signing, SignatureOverAnotherCubinOrByAnotherKeyFails) {
  const auto k = keys("tuner");
  const auto other = keys("other");
  const PrivateKey key = PrivateKey::load(k.private_pem);
  const TrustedKeys trusted = TrustedKeys::from_list(k.public_pem.string());
  const DeviceFingerprint fp = test_fp();
  const std::vector<char> good = cubin_bytes("good");
  const std::vector<char> bad = cubin_bytes("bad");
  const Entry entry = test_entry(good);
  const EntrySignature sig = sigjit::cache::sign_entry(key, fp, entry, good);
  // The bytes alone swapped: the digest no longer matches the entry.
  EXPECT_THAT(sigjit::cache::verify_entry(trusted, fp, entry, bad, sig), HasSubstr("SHA-256"));
  // The bytes and the entry's digest swapped together: the signature no longer matches.
  Entry swapped = entry;
  swapped.cubin_sha256 = sigjit::cache::sha256_hex(bad.data(), bad.size());
  EXPECT_THAT(sigjit::cache::verify_entry(trusted, fp, swapped, bad, sig), HasSubstr("does not match"));
  // A valid signature by a key that is not trusted.
  const EntrySignature by_other = sigjit::cache::sign_entry(PrivateKey::load(other.private_pem), fp, entry, good);
  EXPECT_THAT(sigjit::cache::verify_entry(trusted, fp, entry, good, by_other), HasSubstr("not in SIGJIT_TRUSTED_KEYS"));
  // The signer never vouches for a cubin that is not the one the entry names.
  EXPECT_THROW(sigjit::cache::sign_entry(key, fp, entry, bad), sigjit::Error);
}

TEST_F(Signing, KeyRotationOldAndNewVerifyUntilTheOldIsRemoved) {
  const auto old_key = keys("old");
  const auto new_key = keys("new");
  const DeviceFingerprint fp = test_fp();
  const std::vector<char> cubin = cubin_bytes("c");
  const Entry entry = test_entry(cubin);
  const EntrySignature by_old = sigjit::cache::sign_entry(PrivateKey::load(old_key.private_pem), fp, entry, cubin);
  const EntrySignature by_new = sigjit::cache::sign_entry(PrivateKey::load(new_key.private_pem), fp, entry, cubin);
  const TrustedKeys both = TrustedKeys::from_list(old_key.public_pem.string() + ":" + new_key.public_pem.string());
  EXPECT_EQ(sigjit::cache::verify_entry(both, fp, entry, cubin, by_old), "");
  EXPECT_EQ(sigjit::cache::verify_entry(both, fp, entry, cubin, by_new), "");
  const TrustedKeys rotated = TrustedKeys::from_list(new_key.public_pem.string());
  EXPECT_THAT(sigjit::cache::verify_entry(rotated, fp, entry, cubin, by_old), HasSubstr("not in SIGJIT_TRUSTED_KEYS"));
  EXPECT_EQ(sigjit::cache::verify_entry(rotated, fp, entry, cubin, by_new), "");
  // A signature under one key id presented as the other's fails too.
  EXPECT_THAT(sigjit::cache::verify_entry(both, fp, entry, cubin, EntrySignature{new_key.key_id, by_old.signature}),
              HasSubstr("does not match"));
}

TEST_F(Signing, MessageRefusesWhatCannotBeSignedUnambiguously) {
  const DeviceFingerprint fp = test_fp();
  const std::vector<char> cubin = cubin_bytes("c");
  Entry e = test_entry(cubin);
  EXPECT_THROW(sigjit::cache::entry_signing_message(fp, e, "not-a-digest"), sigjit::Error);
  e.spec["name"] = std::string("\xff\xfe");  // invalid UTF-8: a replacement character would make two specs sign alike
  EXPECT_THROW(sigjit::cache::entry_signing_message(fp, e, e.cubin_sha256), sigjit::Error);
  // Length prefixes: moving a byte from one field to the next changes the message.
  Entry a = test_entry(cubin), b = test_entry(cubin);
  a.kernel_name = "ab";
  a.tuned_shape = "c";
  b.kernel_name = "a";
  b.tuned_shape = "bc";
  EXPECT_NE(sigjit::cache::entry_signing_message(fp, a, a.cubin_sha256), sigjit::cache::entry_signing_message(fp, b, b.cubin_sha256));
}

}  // namespace
