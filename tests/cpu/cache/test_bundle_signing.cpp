// Signed bundles (bundle format 2, cache/bundle.cpp): export signs the entries made on this machine
// with sign_entry; import verifies each signed entry with verify_entry against the trusted keys and
// records provenance bundle:<key id>, refuses (never writes) an entry whose signature does not
// verify (altered cubin or field, untrusted key, a signature copied from another entry, malformed
// signature fields), refuses unsigned entries when signatures are required, and still imports a
// format-1 bundle written before signatures (tests/golden/bundle_v1.sjb) as it did. The source
// store is the golden store fixture (tests/golden/store_v2: 11 tuned entries of every family,
// measured here) plus one claim. CPU only; each test uses a fresh temp directory.
//
// tests/golden/bundle_v1.sjb is `sigjit export --all-devices` of tests/golden/store_v2 by the last
// sigjit that wrote format 1; it is never regenerated (it stands for bundles already in the field).
#include "cache/signing.hpp"
#include "cache/store.hpp"
#include "tests/common/cache_test_files.hpp"
#include "tests/common/scoped_env.hpp"

#include <sigjit/sigjit.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sigjit::cache::BundleSignature;
using sigjit::cache::Entry;
using sigjit::cache::ImportOptions;
using sigjit::cache::ImportReport;
using sigjit::cache::PrivateKey;
using sigjit::cache::Store;
using sigjit::cache::TrustedKeys;
using sigjit::test::read_text;
using sigjit::test::ScopedEnv;
using sigjit::test::test_fp;
using sigjit::test::write_text;
using ::testing::HasSubstr;

const fs::path kGolden = fs::path(SIGJIT_GOLDEN_DIR);
constexpr std::size_t kFixtureEntries = 11;  // tests/golden/store_v2 and bundle_v1.sjb

// The provenance hosts of an entry.
std::vector<std::string> hosts(const Entry& e) {
  std::vector<std::string> out;
  for (const auto& p : e.provenance) out.push_back(p.host);
  return out;
}

bool has_host(const Entry& e, const std::string& host) {
  const auto h = hosts(e);
  return std::find(h.begin(), h.end(), host) != h.end();
}

class BundleSigning : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("SIGJIT_CACHE_NO_FSYNC", "1", 1);
    std::string tmpl = (fs::temp_directory_path() / "sigjit_bundle_sig_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::copy(kGolden / "store_v2", dir_ / "src", fs::copy_options::recursive);
    Store src(dir_ / "src");
    // A claim (imported here earlier): exported, but never signed by this node.
    Entry claim = src.list().front().entry;
    claim.problem_key = "fwd_claim_key";
    claim.origin = sigjit::cache::kOriginImported;
    claim.cubin_sha256 = src.put_blob({'c', 'l', 'a', 'i', 'm'});
    src.put_entry(test_fp(), claim);
    a_ = sigjit::cache::generate_key_pair(dir_ / "a.pem", dir_ / "a.pub.pem");
    b_ = sigjit::cache::generate_key_pair(dir_ / "b.pem", dir_ / "b.pub.pem");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // The source store exported to NAME, signed with the key file (or unsigned).
  fs::path export_bundle(const std::string& name, const fs::path* key_file, sigjit::cache::ExportReport* out = nullptr) {
    const Store src(dir_ / "src", Store::Open::existing);
    const fs::path file = dir_ / name;
    std::optional<PrivateKey> key;
    if (key_file != nullptr) key.emplace(PrivateKey::load(*key_file));
    const auto r = src.export_bundle(file, src.list(), key ? &*key : nullptr);
    if (out != nullptr) *out = r;
    return file;
  }
  fs::path signed_by_a(const std::string& name = "a.sjb") {
    const fs::path k = a_.private_pem;
    return export_bundle(name, &k);
  }
  // Decodes a bundle, lets `edit` change it, and writes it back with a fresh checksum (a tamperer
  // can recompute the checksum: it only catches corruption).
  static void rewrite(const fs::path& file, const std::function<void(json&)>& edit) {
    const std::string text = read_text(file);
    json b = json::from_cbor(std::vector<std::uint8_t>(text.begin(), text.end()));
    b.erase("checksum");
    edit(b);
    const auto body = json::to_cbor(b);
    b["checksum"] = sigjit::cache::sha256_hex(body.data(), body.size());
    const auto bytes = json::to_cbor(b);
    write_text(file, std::string(bytes.begin(), bytes.end()));
  }
  // The bundle's position of the entry for `key`.
  static std::size_t position(const fs::path& file, const std::string& key) {
    const std::string text = read_text(file);
    const json b = json::from_cbor(std::vector<std::uint8_t>(text.begin(), text.end()));
    for (std::size_t i = 0; i < b["entries"].size(); ++i)
      if (b["entries"][i]["entry"]["problem_key"] == key) return i;
    ADD_FAILURE() << key << " is not in " << file;
    return 0;
  }
  ImportReport import_into(const fs::path& root, const fs::path& bundle, const TrustedKeys& trusted, bool require_signed = false) {
    ImportOptions o;
    o.trusted = &trusted;
    o.require_signed = require_signed;
    return Store(root, Store::Open::existing).import_bundle(bundle, nullptr, true, o);
  }
  TrustedKeys trust(const std::string& list) const { return TrustedKeys::from_list(list); }
  std::string a_pub() const { return a_.public_pem.string(); }
  std::string b_pub() const { return b_.public_pem.string(); }

  // One entry of a bundle signed by a, altered by `edit`, imported trusting a: that entry must be
  // refused as `status` (nothing of it written), and every other entry imported.
  // `edit` gets the bundle's entries and the victim's position.
  void expect_only_refused(const std::function<void(json&, std::size_t)>& edit, BundleSignature status, const std::string& reason) {
    const fs::path file = signed_by_a("t.sjb");
    const std::string victim = Store(dir_ / "src", Store::Open::existing).list()[3].entry.problem_key;
    const std::size_t n = position(file, victim);
    std::string victim_cubin;
    rewrite(file, [&](json& b) {
      edit(b["entries"], n);
      victim_cubin = b["entries"][n]["entry"]["cubin_sha256"].get<std::string>();
    });
    const fs::path root = dir_ / ("dst-" + std::to_string(++round_));
    const ImportReport r = import_into(root, file, trust(a_pub()));
    EXPECT_EQ(r.refused_signature, 1);
    EXPECT_EQ(r.added, static_cast<int>(kFixtureEntries));  // every other entry, the claim included
    ASSERT_EQ(r.items.size(), kFixtureEntries + 1);
    EXPECT_EQ(r.items[n].signature, status) << sigjit::cache::to_string(r.items[n].signature);
    EXPECT_THAT(r.items[n].refused, HasSubstr(reason));
    ASSERT_EQ(r.problems.size(), 1u);
    EXPECT_THAT(r.problems[0], HasSubstr("entry " + std::to_string(n)));
    EXPECT_THAT(r.problems[0], HasSubstr("refused"));
    EXPECT_THAT(r.problems[0], HasSubstr(reason));
    const Store dst(root, Store::Open::existing);
    EXPECT_FALSE(dst.lookup(test_fp(), victim)) << "a refused entry was written";
    if (victim_cubin.size() == 64) {
      EXPECT_FALSE(fs::exists(root / "blobs" / victim_cubin.substr(0, 2) / (victim_cubin + ".cubin")))
          << "a refused entry's cubin was written";
    }
  }

  fs::path dir_;
  sigjit::cache::KeyPairFiles a_, b_;
  int round_ = 0;
};

TEST_F(BundleSigning, SignedRoundTripRecordsBundleProvenance) {
  sigjit::cache::ExportReport er;
  const fs::path k = a_.private_pem;
  const fs::path file = export_bundle("a.sjb", &k, &er);
  EXPECT_EQ(er.exported, static_cast<int>(kFixtureEntries + 1));
  EXPECT_EQ(er.signed_entries, static_cast<int>(kFixtureEntries));
  EXPECT_EQ(er.unsigned_claims, 1);
  // On disk: format 2, each entry made here carries a's key id and a 64-byte signature; the claim none.
  const std::string text = read_text(file);
  const json b = json::from_cbor(std::vector<std::uint8_t>(text.begin(), text.end()));
  EXPECT_EQ(b["format_version"], 2);
  for (const json& item : b["entries"]) {
    if (item["entry"]["problem_key"] == "fwd_claim_key") {
      EXPECT_FALSE(item.contains("signature"));
      continue;
    }
    ASSERT_TRUE(item.contains("signature"));
    EXPECT_EQ(item["signature"]["key_id"], a_.key_id);
    EXPECT_EQ(item["signature"]["ed25519"].get_binary().size(), 64u);
  }

  const fs::path root = dir_ / "dst";
  const ImportReport r = import_into(root, file, trust(a_pub()));
  EXPECT_TRUE(r.problems.empty()) << r.problems.front();
  EXPECT_EQ(r.added, static_cast<int>(kFixtureEntries + 1));
  EXPECT_EQ(r.signed_trusted, static_cast<int>(kFixtureEntries));
  EXPECT_EQ(r.refused_signature, 0);
  const std::string provenance = "bundle:" + sigjit::cache::key_id_short(a_.key_id);
  const Store src(dir_ / "src", Store::Open::existing);
  const Store dst(root, Store::Open::existing);
  ASSERT_EQ(dst.list().size(), kFixtureEntries + 1);
  for (const auto& l : dst.list()) {
    SCOPED_TRACE(l.entry.problem_key);
    EXPECT_EQ(l.entry.origin, sigjit::cache::kOriginImported);  // signed or not, a claim
    const bool claim = l.entry.problem_key == "fwd_claim_key";
    EXPECT_EQ(has_host(l.entry, provenance), !claim) << ::testing::PrintToString(hosts(l.entry));
    EXPECT_EQ(dst.load_blob(l.entry.cubin_sha256), src.load_blob(l.entry.cubin_sha256));
  }
  for (const auto& it : r.items) {
    SCOPED_TRACE(it.problem_key);
    const bool claim = it.problem_key == "fwd_claim_key";
    EXPECT_EQ(it.signature, claim ? BundleSignature::none : BundleSignature::trusted);
    EXPECT_EQ(it.key_id, claim ? "" : a_.key_id);
    EXPECT_EQ(it.refused, "");
  }
}

TEST_F(BundleSigning, TamperedCubinBytesAreRefused) {
  // The bytes alone: the entry's digest no longer matches them.
  expect_only_refused([](json& e, std::size_t n) { e[n]["cubin"].get_binary()[10] ^= 0x01; }, BundleSignature::invalid,
                      "the cubin's SHA-256 is");
  // The bytes and the entry's digest together: the signature covers the digest.
  expect_only_refused(
      [](json& e, std::size_t n) {
        auto& bytes = e[n]["cubin"].get_binary();
        bytes.push_back(0x90);
        e[n]["entry"]["cubin_sha256"] = sigjit::cache::sha256_hex(bytes.data(), bytes.size());
      },
      BundleSignature::invalid, "does not match the entry and cubin");
}

TEST_F(BundleSigning, TamperedEntryFieldsAreRefused) {
  const std::vector<std::pair<const char*, std::function<void(json&)>>> edits = {
      {"median_ms", [](json& i) { i["entry"]["median_ms"] = 0.001; }},
      {"config", [](json& i) { i["entry"]["config"] = "m64n64w4s2"; }},
      {"tuned", [](json& i) { i["entry"]["tuned"] = false; }},
      {"provenance", [](json& i) {
         i["entry"]["provenance"].push_back({{"host", "trusted-lab"}, {"time_utc", "2026-12-01T00:00:00Z"}, {"sigjit_version", "0.1.0"}});
       }},
      {"spec", [](json& i) { i["entry"]["spec"]["head_dim"] = 256; }},
      {"fingerprint", [](json& i) { i["fingerprint"]["driver_version"] = 99999; }},
  };
  for (const auto& [what, edit] : edits) {
    SCOPED_TRACE(what);
    expect_only_refused([&](json& e, std::size_t n) { edit(e[n]); }, BundleSignature::invalid, "does not match the entry and cubin");
  }
}

TEST_F(BundleSigning, SignaturesByAnUntrustedKeyAreRefused) {
  const fs::path file = signed_by_a();
  for (const std::string& list : {b_pub(), std::string()}) {
    SCOPED_TRACE(list.empty() ? "no key trusted" : "only b trusted");
    const fs::path root = dir_ / ("dst-" + std::to_string(++round_));
    const ImportReport r = import_into(root, file, trust(list));
    EXPECT_EQ(r.refused_signature, static_cast<int>(kFixtureEntries));
    EXPECT_EQ(r.signed_trusted, 0);
    EXPECT_EQ(r.added, 1);  // the unsigned claim only
    ASSERT_EQ(r.problems.size(), kFixtureEntries);
    EXPECT_THAT(r.problems[0], HasSubstr(sigjit::cache::key_id_short(a_.key_id)));
    EXPECT_THAT(r.problems[0], HasSubstr(list.empty() ? "no key is trusted" : "not in SIGJIT_TRUSTED_KEYS"));
    for (const auto& it : r.items)
      if (it.problem_key != "fwd_claim_key") EXPECT_EQ(it.signature, BundleSignature::untrusted);
    const auto listed = Store(root, Store::Open::existing).list();
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].entry.problem_key, "fwd_claim_key");
  }
}

TEST_F(BundleSigning, ASignatureCopiedFromAnotherEntryIsRefused) {
  expect_only_refused(
      [](json& e, std::size_t n) {
        // The neighbouring entry's signature: by the same trusted key, valid for that entry and its cubin.
        const json& donor = e[n == 0 ? 1 : n - 1];
        ASSERT_TRUE(donor.contains("signature"));
        e[n]["signature"] = donor["signature"];
      },
      BundleSignature::invalid, "does not match the entry and cubin");
}

TEST_F(BundleSigning, MalformedSignatureFieldsAreBoundedAndRefused) {
  const std::vector<std::pair<const char*, std::function<void(json&)>>> edits = {
      {"key id too long", [](json& s) { s["key_id"] = s["key_id"].get<std::string>() + "0"; }},
      {"key id upper case", [](json& s) { s["key_id"] = std::string(64, 'A'); }},
      {"key id a number", [](json& s) { s["key_id"] = 7; }},
      {"key id 60 KB", [](json& s) { s["key_id"] = std::string(60000, 'a'); }},
      {"signature 63 bytes", [](json& s) { s["ed25519"].get_binary().pop_back(); }},
      {"signature 1 MB", [](json& s) { s["ed25519"] = json::binary(std::vector<std::uint8_t>(1u << 20, 7)); }},
      {"signature text", [](json& s) { s["ed25519"] = std::string(64, 'x'); }},
      {"an extra field", [](json& s) { s["note"] = "trust me"; }},
      {"no key id", [](json& s) { s.erase("key_id"); }},
      {"not an object", [](json& s) { s = json::array({1, 2}); }},
  };
  for (const auto& [what, edit] : edits) {
    SCOPED_TRACE(what);
    expect_only_refused([&](json& e, std::size_t n) { edit(e[n]["signature"]); }, BundleSignature::invalid, "signature");
  }
}

TEST_F(BundleSigning, RequireSignedRefusesUnsignedEntries) {
  // An unsigned format-2 bundle: every entry refused, nothing written, not even the layout.
  const fs::path file = export_bundle("unsigned.sjb", nullptr);
  const fs::path root = dir_ / "dst";
  ImportReport r = import_into(root, file, trust(a_pub()), true);
  EXPECT_EQ(r.refused_unsigned, static_cast<int>(kFixtureEntries + 1));
  EXPECT_EQ(r.added, 0);
  ASSERT_EQ(r.problems.size(), kFixtureEntries + 1);
  EXPECT_THAT(r.problems[0], HasSubstr("unsigned, and signed entries are required"));
  EXPECT_FALSE(fs::exists(root));
  // Without the requirement the same bundle imports as claims.
  r = import_into(root, file, trust(a_pub()));
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.added, static_cast<int>(kFixtureEntries + 1));

  // A signed bundle: its signed entries pass, its unsigned claim does not.
  const fs::path signed_file = signed_by_a();
  r = import_into(dir_ / "dst2", signed_file, trust(a_pub()), true);
  EXPECT_EQ(r.signed_trusted, static_cast<int>(kFixtureEntries));
  EXPECT_EQ(r.added, static_cast<int>(kFixtureEntries));
  EXPECT_EQ(r.refused_unsigned, 1);
  EXPECT_FALSE(Store(dir_ / "dst2", Store::Open::existing).lookup(test_fp(), "fwd_claim_key"));

  // Signatures cannot be smuggled into format 1 (which has none): such a bundle is unsigned.
  rewrite(signed_file, [](json& b) { b["format_version"] = 1; });
  r = import_into(dir_ / "dst3", signed_file, trust(a_pub()), true);
  EXPECT_EQ(r.refused_unsigned, static_cast<int>(kFixtureEntries + 1));
  EXPECT_EQ(r.signed_trusted, 0);
  EXPECT_THAT(r.problems[0], HasSubstr("format-1 bundle carries no signatures"));
  EXPECT_FALSE(fs::exists(dir_ / "dst3"));
}

TEST_F(BundleSigning, AFormatOneBundleStillImports) {
  const fs::path file = kGolden / "bundle_v1.sjb";
  ASSERT_TRUE(fs::is_regular_file(file)) << file << " is missing";
  // Unsigned bundles never read SIGJIT_TRUSTED_KEYS: one that cannot be used does not matter here.
  const ScopedEnv keys("SIGJIT_TRUSTED_KEYS", (dir_ / "no-such-key.pem").c_str());
  const fs::path root = dir_ / "dst";
  const ImportReport r = Store(root, Store::Open::existing).import_bundle(file, nullptr, true);
  EXPECT_TRUE(r.problems.empty()) << r.problems.front();
  EXPECT_EQ(r.added, static_cast<int>(kFixtureEntries));
  EXPECT_EQ(r.signed_trusted + r.refused_signature + r.refused_unsigned, 0);
  const Store src(dir_ / "src", Store::Open::existing);
  const Store dst(root, Store::Open::existing);
  ASSERT_EQ(dst.list().size(), kFixtureEntries);
  for (const auto& l : dst.list()) {
    SCOPED_TRACE(l.entry.problem_key);
    EXPECT_EQ(l.entry.origin, sigjit::cache::kOriginImported);
    const auto theirs = src.lookup(l.fingerprint, l.entry.problem_key);
    ASSERT_TRUE(theirs);
    EXPECT_EQ(l.entry.config, theirs->config);
    EXPECT_EQ(l.entry.median_ms, theirs->median_ms);
    EXPECT_EQ(hosts(l.entry), hosts(*theirs));  // no provenance record added: nothing was verified
    EXPECT_EQ(dst.load_blob(l.entry.cubin_sha256), src.load_blob(theirs->cubin_sha256));
  }
  for (const auto& it : r.items) EXPECT_EQ(it.signature, BundleSignature::none);
  // Required signatures: a format-1 bundle has none.
  const ImportReport strict = import_into(dir_ / "dst2", file, trust(a_pub()), true);
  EXPECT_EQ(strict.refused_unsigned, static_cast<int>(kFixtureEntries));
  EXPECT_FALSE(fs::exists(dir_ / "dst2"));
}

TEST_F(BundleSigning, KeyRotationTrustsOldAndNewKeys) {
  const fs::path kb = b_.private_pem;
  const fs::path by_a = signed_by_a(), by_b = export_bundle("b.sjb", &kb);
  // While rotating, both keys are trusted: a's and b's bundles import, each with its own provenance.
  const TrustedKeys both = trust(a_pub() + ":" + b_pub());
  const fs::path root = dir_ / "dst";
  ImportReport r = import_into(root, by_a, both);
  EXPECT_EQ(r.signed_trusted, static_cast<int>(kFixtureEntries));
  EXPECT_TRUE(r.problems.empty());
  r = import_into(root, by_b, both);
  EXPECT_EQ(r.signed_trusted, static_cast<int>(kFixtureEntries));
  EXPECT_TRUE(r.problems.empty());
  const std::string pa = "bundle:" + sigjit::cache::key_id_short(a_.key_id), pb = "bundle:" + sigjit::cache::key_id_short(b_.key_id);
  for (const auto& l : Store(root, Store::Open::existing).list()) {
    if (l.entry.problem_key == "fwd_claim_key") continue;
    SCOPED_TRACE(l.entry.problem_key);
    EXPECT_TRUE(has_host(l.entry, pa));  // the second import merged into the first: both vouched
    EXPECT_TRUE(has_host(l.entry, pb));
  }
  // One bundle with entries of both keys (a node re-keyed halfway through).
  rewrite(by_a, [&](json& b) {
    const std::string text = read_text(by_b);
    const json other = json::from_cbor(std::vector<std::uint8_t>(text.begin(), text.end()));
    b["entries"][0] = other["entries"][0];
  });
  r = import_into(dir_ / "mixed", by_a, both);
  EXPECT_EQ(r.signed_trusted, static_cast<int>(kFixtureEntries));
  EXPECT_EQ(r.items[0].key_id, b_.key_id);
  EXPECT_EQ(r.items[1].key_id, a_.key_id);
  // After the rotation the old key is dropped: its entries are refused.
  r = import_into(dir_ / "after", by_a, trust(b_pub()));
  EXPECT_EQ(r.refused_signature, static_cast<int>(kFixtureEntries - 1));
  EXPECT_EQ(r.signed_trusted, 1);
  EXPECT_EQ(r.items[0].signature, BundleSignature::trusted);
  EXPECT_EQ(r.items[1].signature, BundleSignature::untrusted);
}

TEST_F(BundleSigning, TrustedKeysComeFromTheEnvironmentByDefault) {
  const fs::path file = signed_by_a();
  {
    const ScopedEnv keys("SIGJIT_TRUSTED_KEYS", a_pub().c_str());
    const ImportReport r = Store(dir_ / "dst", Store::Open::existing).import_bundle(file, nullptr, true);
    EXPECT_EQ(r.signed_trusted, static_cast<int>(kFixtureEntries));
    EXPECT_TRUE(r.problems.empty());
  }
  {
    // A signed bundle needs the list: one that cannot be read fails the import, naming it, and writes nothing.
    const ScopedEnv keys("SIGJIT_TRUSTED_KEYS", (dir_ / "no-such-key.pem").c_str());
    try {
      Store(dir_ / "dst2", Store::Open::existing).import_bundle(file, nullptr, true);
      ADD_FAILURE() << "expected sigjit::Error";
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("SIGJIT_TRUSTED_KEYS"));
      EXPECT_THAT(e.what(), HasSubstr("no-such-key.pem"));
    }
    EXPECT_FALSE(fs::exists(dir_ / "dst2"));
  }
}

}  // namespace
