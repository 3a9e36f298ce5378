// libFuzzer target: one value of the remote tier as a reader fetches it from Redis (cache/remote.cpp's
// decode_record: framing and its bounds, the signer's key id and trust, the meta JSON, the
// record's bounds, its binding to the key it was read from, the Ed25519 signature over the entry
// and the cubin's digest). Each input is decoded as given against the key its own meta names,
// against another key and under a small size bound. Then, when its meta parses, the record is
// re-signed with the harness's trusted key (its cubin digest fixed up) and re-encoded, so that
// mutations of the entry reach the checks behind the signature; what decodes must re-encode and
// decode to the same record. Only sigjit::Error may come out of the decoder: any other exception,
// a crash, a sanitizer report or a hang is a finding.
//
//   build:  setup.sh --test builds it in build/fuzz (clang: libFuzzer) and build/asan (gcc: replay)
//   run:    build/fuzz/fuzz_record -max_total_time=3600 CORPUS_DIR tests/fuzz/corpus/record
//   seeds:  tests/fuzz/corpus/record, records signed by the key below (and one by another key)
#include "cache/remote.hpp"
#include "cache/signing.hpp"
#include "tests/fuzz/fuzz_common.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <optional>
#include <string_view>

namespace {

using namespace sigjit_fuzz;
using sigjit::cache::RemoteRecord;

// A key for this harness only (its seeds are signed by it): never trusted anywhere else.
constexpr const char* kPrivatePem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEINUjqXMOwAm1d7azeXBlz9MbZ2nF5oC8OaRICXsOqJeC\n"
    "-----END PRIVATE KEY-----\n";
constexpr const char* kPublicPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEA3jSBmXe2fkZooA86NbpIVrWUUgUK8O/dHRvxMrACmDo=\n"
    "-----END PUBLIC KEY-----\n";

struct Keys {
  sigjit::cache::PrivateKey signer;
  sigjit::cache::TrustedKeys trusted;
};

const Keys& keys() {
  static const Keys k = [] {
    const fs::path priv = scratch() / "fuzz.pem", pub = scratch() / "fuzz.pub.pem";
    write_file(priv, reinterpret_cast<const std::uint8_t*>(kPrivatePem), std::string_view(kPrivatePem).size());
    write_file(pub, reinterpret_cast<const std::uint8_t*>(kPublicPem), std::string_view(kPublicPem).size());
    ::chmod(priv.c_str(), 0600);
    return Keys{sigjit::cache::PrivateKey::load(priv), sigjit::cache::TrustedKeys::from_list(pub.string())};
  }();
  return k;
}

// The record's meta section as the harness reads it (the decoder's framing, unchecked beyond
// what indexing needs): the fingerprint and entry, or nullopt.
std::optional<std::pair<sigjit::cache::DeviceFingerprint, sigjit::cache::Entry>> meta_of(std::string_view bytes, std::string_view* cubin) {
  const std::string_view magic(sigjit::cache::kRecordMagic);
  if (bytes.substr(0, magic.size()) != magic) return std::nullopt;
  std::size_t pos = magic.size();
  std::string_view sections[2];
  for (std::string_view& s : sections) {
    if (bytes.size() - pos < 4) return std::nullopt;
    std::size_t len = 0;
    for (int i = 0; i < 4; ++i) len = (len << 8) | static_cast<unsigned char>(bytes[pos + i]);
    pos += 4;
    if (len > bytes.size() - pos) return std::nullopt;
    s = bytes.substr(pos, len);
    pos += len;
  }
  *cubin = sections[1];
  json meta;
  if (!parse_shallow(reinterpret_cast<const std::uint8_t*>(sections[0].data()), sections[0].size(), false, meta) || !meta.is_object())
    return std::nullopt;
  try {
    return std::make_pair(sigjit::cache::DeviceFingerprint::from_json(meta.at("fingerprint")),
                          sigjit::cache::Entry::from_json(meta.at("entry")));
  } catch (const std::exception&) {  // the harness's own parse: not the decoder's
    return std::nullopt;
  }
}

std::optional<RemoteRecord> decode(std::string_view bytes, const std::string& key, std::size_t max_bytes) {
  try {
    return sigjit::cache::decode_record(bytes, key, keys().trusted, max_bytes);
  } catch (const sigjit::Error&) {
    return std::nullopt;
  }
}

void check_same(const RemoteRecord& a, const RemoteRecord& b) {
  if (!(a.fingerprint == b.fingerprint) || a.entry.to_json() != b.entry.to_json() || a.cubin != b.cubin ||
      a.signature.key_id != b.signature.key_id || a.signature.signature != b.signature.signature)
    std::abort();  // a record that decodes must survive encode and decode unchanged
}

// A decoded record re-encodes and decodes to itself.
void round_trip(const RemoteRecord& r, const std::string& key) {
  std::string again;
  try {
    again = sigjit::cache::encode_record(r);
  } catch (const sigjit::Error&) {
    std::abort();  // what the decoder accepted, the encoder must accept
  }
  const std::optional<RemoteRecord> back = decode(again, key, sigjit::cache::kMaxRemoteRecordBytes);
  if (!back) std::abort();
  check_same(r, *back);
}

std::string key_for(const sigjit::cache::DeviceFingerprint& fp, const std::string& problem_key) {
  try {
    return sigjit::cache::remote_key(fp, problem_key);
  } catch (const sigjit::Error&) {
    return std::string(sigjit::cache::kRemotePrefix) + "entry:" + std::string(64, '0') + ":fwd";
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::string_view cubin;
  const auto meta = meta_of(bytes, &cubin);
  const std::string key = meta ? key_for(meta->first, meta->second.problem_key) : key_for({}, "fwd");
  if (const auto r = decode(bytes, key, sigjit::cache::kMaxRemoteRecordBytes)) round_trip(*r, key);
  (void)decode(bytes, key + "x", sigjit::cache::kMaxRemoteRecordBytes);  // read from another key: refused
  (void)decode(bytes, key, 1024);

  if (!meta) return 0;
  RemoteRecord r;
  r.fingerprint = meta->first;
  r.entry = meta->second;
  r.cubin.assign(cubin.begin(), cubin.end());
  std::string fixed;
  try {
    r.entry.cubin_sha256 = sigjit::cache::sha256_hex(r.cubin.data(), r.cubin.size());
    r.signature = sigjit::cache::sign_entry(keys().signer, r.fingerprint, r.entry, r.cubin);
    fixed = sigjit::cache::encode_record(r);  // refuses what breaks the record's bounds: the first pass covered those
  } catch (const sigjit::Error&) {
    return 0;
  }
  const std::string fixed_key = key_for(r.fingerprint, r.entry.problem_key);
  const std::optional<RemoteRecord> back = decode(fixed, fixed_key, sigjit::cache::kMaxRemoteRecordBytes);
  if (!back) std::abort();  // signed by a trusted key, within bounds, read from its own key: it must load
  round_trip(*back, fixed_key);
  return 0;
}
