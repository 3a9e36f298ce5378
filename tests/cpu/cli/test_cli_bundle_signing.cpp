// `sigjit export --sign` / SIGJIT_SIGNING_KEY and `sigjit import` of signed bundles, end to end on
// a machine without a GPU: the key's source, claims left unsigned, import --list / --dry-run
// showing each entry's signature (text and --json), provenance bundle:<key id>, a tampered entry
// refused with its reason, --require-signed, and the help text. The store is the golden fixture
// tests/golden/store_v2 (11 entries measured here) plus one claim.
#include "cache/signing.hpp"
#include "cache/store.hpp"
#include "tests/common/cache_test_files.hpp"
#include "tests/common/run_command.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sigjit::cache::Entry;
using sigjit::cache::Store;
using sigjit::test::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kFixtureEntries = 11;

// export's summary of a signed bundle.
std::string fmt_signed(int n, const std::string& short_id) { return std::to_string(n) + " signed by key " + short_id; }

class CliBundleSigning : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sigjit_cli_bsig_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::copy(fs::path(SIGJIT_GOLDEN_DIR) / "store_v2", dir_ / "src", fs::copy_options::recursive);
    Store src(dir_ / "src");
    Entry claim = src.list().front().entry;
    claim.problem_key = "fwd_claim_key";
    claim.origin = sigjit::cache::kOriginImported;
    claim.cubin_sha256 = src.put_blob({'c', 'l', 'a', 'i', 'm'});
    src.put_entry(sigjit::test::test_fp(), claim);
    a_ = sigjit::cache::generate_key_pair(dir_ / "a.pem", dir_ / "a.pub.pem");
    b_ = sigjit::cache::generate_key_pair(dir_ / "b.pem", dir_ / "b.pub.pem");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // The CLI in the temp directory with a cache and extra environment; stdout and stderr unless `json_only`.
  CommandResult cli(const std::string& cache, const std::string& env, const std::string& args, bool json_only = false) const {
    return sigjit::test::run_command("cd '" + dir_.string() + "' && env -u SIGJIT_SIGNING_KEY -u SIGJIT_TRUSTED_KEYS SIGJIT_CACHE_DIR='" +
                                     (dir_ / cache).string() + "' " + env + " timeout 60 " + SIGJIT_CLI_PATH + " " + args +
                                     (json_only ? " 2>/dev/null" : " 2>&1"));
  }
  std::string short_a() const { return sigjit::cache::key_id_short(a_.key_id); }

  fs::path dir_;
  sigjit::cache::KeyPairFiles a_, b_;
};

TEST_F(CliBundleSigning, ExportSignsWithSignOrTheEnvironmentAndImportVerifies) {
  CommandResult r = cli("src", "", "export a.sjb --all-devices --sign a.pem");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr(fmt_signed(kFixtureEntries, short_a())));
  EXPECT_THAT(r.out, HasSubstr("1 claims unsigned"));
  // SIGJIT_SIGNING_KEY signs too; --sign overrides it.
  r = cli("src", "SIGJIT_SIGNING_KEY=b.pem", "export env.sjb --all-devices");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr(fmt_signed(kFixtureEntries, sigjit::cache::key_id_short(b_.key_id))));
  r = cli("src", "SIGJIT_SIGNING_KEY=b.pem", "export override.sjb --all-devices --sign a.pem");
  EXPECT_THAT(r.out, HasSubstr(fmt_signed(kFixtureEntries, short_a())));
  // No key: an unsigned bundle, as before.
  r = cli("src", "", "export plain.sjb --all-devices");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("signed")));

  // Import with a trusted: every signed entry gets provenance bundle:<a>.
  r = cli("dst", "SIGJIT_TRUSTED_KEYS=a.pub.pem", "import a.sjb --allow-foreign");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("added 12"));
  EXPECT_THAT(r.out, HasSubstr(std::to_string(kFixtureEntries) + " verified by a trusted key"));
  r = cli("dst", "", "show _sm_ --json", true);
  ASSERT_EQ(r.code, 0) << r.out;
  int with_provenance = 0;
  for (const json& e : json::parse(r.out))
    for (const json& p : e["entry"]["provenance"]) with_provenance += p["host"] == "bundle:" + short_a();
  EXPECT_EQ(with_provenance, kFixtureEntries);
}

TEST_F(CliBundleSigning, KeyProblemsFailTheExportAndWriteNothing) {
  CommandResult r = cli("src", "", "export x.sjb --all-devices --sign no-such.pem");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("--sign"));
  EXPECT_THAT(r.out, HasSubstr("no-such.pem"));
  r = cli("src", "SIGJIT_SIGNING_KEY=a.pub.pem", "export x.sjb --all-devices");  // a public key cannot sign
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("SIGJIT_SIGNING_KEY"));
  EXPECT_FALSE(fs::exists(dir_ / "x.sjb"));
}

TEST_F(CliBundleSigning, ListAndDryRunShowEachSignature) {
  ASSERT_EQ(cli("src", "", "export a.sjb --all-devices --sign a.pem").code, 0);
  // Trusted: text and JSON.
  CommandResult r = cli("dst", "SIGJIT_TRUSTED_KEYS=a.pub.pem", "import --list a.sjb");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("signed by " + short_a() + " (trusted)"));
  EXPECT_THAT(r.out, HasSubstr("unsigned"));  // the claim
  r = cli("dst", "SIGJIT_TRUSTED_KEYS=a.pub.pem", "import --list --json a.sjb", true);
  ASSERT_EQ(r.code, 0) << r.out;
  json j = json::parse(r.out);
  EXPECT_EQ(j["signatures"]["trusted"], kFixtureEntries);
  EXPECT_EQ(j["signatures"]["unsigned"], 1);
  for (const json& e : j["entries"]) {
    const bool claim = e["problem_key"] == "fwd_claim_key";
    EXPECT_EQ(e["signature"], claim ? "unsigned" : "trusted");
    EXPECT_EQ(e["key_id"], claim ? json(nullptr) : json(a_.key_id));
  }
  // Untrusted: shown, refused by the dry run with the reason, exit 1, nothing written.
  r = cli("dst", "SIGJIT_TRUSTED_KEYS=b.pub.pem", "import --dry-run a.sjb");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("signed by " + short_a() + " (untrusted)"));
  EXPECT_THAT(r.out, HasSubstr("not in SIGJIT_TRUSTED_KEYS"));
  EXPECT_THAT(r.out, HasSubstr("would add 1"));
  EXPECT_THAT(r.out, HasSubstr("refuse " + std::to_string(kFixtureEntries)));
  r = cli("dst", "SIGJIT_TRUSTED_KEYS=b.pub.pem", "import --dry-run --json a.sjb", true);
  j = json::parse(r.out);
  EXPECT_EQ(j["signatures"]["untrusted"], kFixtureEntries);
  EXPECT_EQ(j["would_refuse"], kFixtureEntries);
  EXPECT_FALSE(fs::exists(dir_ / "dst"));
  // Invalid: one entry's timing altered (checksum recomputed).
  const std::string text = sigjit::test::read_text(dir_ / "a.sjb");
  json b = json::from_cbor(std::vector<std::uint8_t>(text.begin(), text.end()));
  b.erase("checksum");
  b["entries"][2]["entry"]["median_ms"] = 0.0001;
  const auto body = json::to_cbor(b);
  b["checksum"] = sigjit::cache::sha256_hex(body.data(), body.size());
  const auto bytes = json::to_cbor(b);
  sigjit::test::write_text(dir_ / "t.sjb", std::string(bytes.begin(), bytes.end()));
  r = cli("dst", "SIGJIT_TRUSTED_KEYS=a.pub.pem", "import --list --json t.sjb", true);
  EXPECT_EQ(r.code, 1);
  j = json::parse(r.out);
  EXPECT_EQ(j["entries"][2]["signature"], "invalid");
  EXPECT_THAT(j["entries"][2]["action"].get<std::string>(), HasSubstr("does not match the entry and cubin"));
  EXPECT_EQ(j["signatures"]["trusted"], kFixtureEntries - 1);
  // A real import of it: that entry refused with its reason, the others imported.
  r = cli("dst", "SIGJIT_TRUSTED_KEYS=a.pub.pem", "import t.sjb --allow-foreign");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("entry 2 ("));
  EXPECT_THAT(r.out, HasSubstr("refused: invalid signature"));
  EXPECT_THAT(r.out, HasSubstr("added 11"));
}

TEST_F(CliBundleSigning, RequireSignedRefusesUnsignedBundles) {
  ASSERT_EQ(cli("src", "", "export plain.sjb --all-devices").code, 0);
  CommandResult r = cli("dst", "SIGJIT_TRUSTED_KEYS=a.pub.pem", "import plain.sjb --allow-foreign --require-signed");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("added 0"));
  EXPECT_THAT(r.out, HasSubstr("refused: unsigned, and signed entries are required"));
  EXPECT_FALSE(fs::exists(dir_ / "dst"));
  // The golden format-1 bundle: refused with --require-signed, imported without.
  const std::string old = (fs::path(SIGJIT_GOLDEN_DIR) / "bundle_v1.sjb").string();
  r = cli("dst", "", "import --dry-run --require-signed " + old);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("format-1 bundle carries no signatures"));
  r = cli("dst", "", "import --allow-foreign " + old);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("added 11"));
}

TEST_F(CliBundleSigning, HelpSaysHowSignedBundlesWork) {
  CommandResult r = cli("dst", "", "import --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--require-signed"));
  EXPECT_THAT(r.out, HasSubstr("SIGJIT_TRUSTED_KEYS"));
  EXPECT_THAT(r.out, HasSubstr("bundle:<key id>"));
  r = cli("dst", "", "export --help");
  EXPECT_THAT(r.out, HasSubstr("--sign"));
  EXPECT_THAT(r.out, HasSubstr("SIGJIT_SIGNING_KEY"));
}

}  // namespace
