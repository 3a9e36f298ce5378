#include "jit/remote_tier.hpp"

#include "base/env.hpp"
#include "cache/counters.hpp"
#include "jit/binaries.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <set>

namespace sigjit::detail {

namespace {

// One line per distinct message per process: a fleet's ranks must not flood their logs.
void log_once(const std::string& line) {
  static std::mutex mutex;
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (seen.size() > 4096 || !seen.insert(line).second) return;
  }
  std::fprintf(stderr, "sigjit: remote cache: %s\n", line.c_str());
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

cache::RemoteTier* default_remote_tier() {
  static std::once_flag once;
  static std::unique_ptr<cache::RemoteTier> tier;
  std::call_once(once, [] {
    if (env::flag("SIGJIT_DISABLE_CACHE")) return;
    try {
      std::optional<cache::RemoteConfig> config = cache::RemoteConfig::from_env();
      if (!config) return;
      cache::TrustedKeys trusted = cache::TrustedKeys::from_env();
      if (trusted.empty()) {
        std::fprintf(stderr,
                     "sigjit: remote cache %s disabled for this process: %s names no key, so no entry of it could be loaded; set it to "
                     "the fleet's public key(s) (`sigjit keygen`)\n",
                     config->url().c_str(), cache::kTrustedKeysEnv);
        return;
      }
      tier = std::make_unique<cache::RemoteTier>(*std::move(config), std::move(trusted));
      if (env::flag("SIGJIT_VERBOSE_CACHE"))
        std::fprintf(stderr, "sigjit: remote cache: %s (%s), %zu trusted key(s)\n", tier->config().url().c_str(),
                     tier->writable() ? "read-write" : "read-only", tier->trusted().size());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sigjit: remote cache disabled for this process: %s\n", e.what());
      tier.reset();
    }
  });
  return tier.get();
}

const cache::PrivateKey* default_signing_key() {
  static std::once_flag once;
  static std::optional<cache::PrivateKey> key;
  std::call_once(once, [] {
    cache::RemoteTier* tier = default_remote_tier();
    if (!tier || !tier->writable()) return;
    const std::optional<std::string> file = env::text("SIGJIT_SIGNING_KEY");
    if (!file) {
      std::fprintf(stderr, "sigjit: remote cache: %s=1 but SIGJIT_SIGNING_KEY is not set: nothing is published (readers load signed entries only)\n",
                   cache::kRemoteWriteEnv);
      return;
    }
    try {
      key.emplace(cache::PrivateKey::load(*file));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sigjit: remote cache: SIGJIT_SIGNING_KEY unusable, nothing is published: %s\n", e.what());
    }
  });
  return key ? &*key : nullptr;
}

std::string remote_record_problem(const cache::RemoteRecord& record, const std::string& key) {
  if (record.entry.problem_key != key) return "the record is for another problem";
  KernelSpec spec;
  try {
    spec = spec_from_json(record.entry.spec);
  } catch (const std::exception& e) {
    return fmt::format("its spec does not parse: {}", e.what());
  }
  if (problem_key(spec) != key) return "its spec is not the one of its problem key";
  if (!store_entry_usable(spec, record.entry))
    return "not usable by this library (a config or kernel name that does not match, or an untuned entry of another version's default)";
  return {};
}

cache::Entry write_through(cache::Store& store, const cache::RemoteRecord& record) {
  cache::Entry entry = record.entry;
  entry.origin = cache::kOriginImported;  // a claim, as a bundle's: never displaces a measurement made here
  entry.rejected.clear();
  entry.provenance.push_back({"remote:" + cache::key_id_short(record.signature.key_id), now_utc(), SIGJIT_VERSION});
  if (entry.provenance.size() > cache::kMaxProvenance) entry.provenance.erase(entry.provenance.begin());
  const std::string digest = store.put_blob(record.cubin);
  if (digest != entry.cubin_sha256) throw Error("remote cache: the stored cubin's digest is not the record's");  // decode_record checked it
  store.put_entry(record.fingerprint, entry, cache::MergePolicy::keep_faster);
  return entry;
}

std::optional<RemoteHit> fetch_remote(cache::RemoteTier& tier, cache::Store* store, const cache::DeviceFingerprint& fp,
                                      const KernelSpec& spec) {
  const std::string key = problem_key(spec);
  cache::RemoteOutcome outcome = cache::RemoteOutcome::miss;
  std::optional<cache::RemoteRecord> record = tier.get(fp, key, &outcome);
  if (!record) {
    cache::count(outcome == cache::RemoteOutcome::error         ? cache::Counter::remote_error
                 : outcome == cache::RemoteOutcome::unavailable ? cache::Counter::remote_unavailable
                 : outcome == cache::RemoteOutcome::rejected    ? cache::Counter::remote_refused
                                                                : cache::Counter::remote_miss);
    return std::nullopt;
  }
  if (const std::string why = remote_record_problem(*record, key); !why.empty()) {
    cache::count(cache::Counter::remote_refused);
    log_once(fmt::format("{}: not loaded (a miss): {}", key, why));
    return std::nullopt;
  }
  cache::count(cache::Counter::remote_hit);
  RemoteHit hit{record->entry, record->cubin};
  hit.entry.origin = cache::kOriginImported;
  if (store) {
    try {
      hit.entry = write_through(*store, *record);
    } catch (const std::exception& e) {
      log_once(fmt::format("{}: could not write the entry through to the local store: {}", key, e.what()));
    }
  }
  if (env::flag("SIGJIT_VERBOSE_CACHE"))
    std::fprintf(stderr, "sigjit: remote cache: %s: hit (%s, signed by %s)\n", key.c_str(), record->entry.config.c_str(),
                 cache::key_id_short(record->signature.key_id).c_str());
  return hit;
}

std::optional<StoredKernel> lookup_stored(cache::Store* store, cache::RemoteTier* tier, const cache::DeviceFingerprint& fp,
                                          const KernelSpec& spec) {
  const std::string key = problem_key(spec);
  std::optional<cache::Entry> entry = store ? store->lookup(fp, key) : std::nullopt;
  if (entry && !store_entry_usable(spec, *entry)) entry.reset();
  bool remote = false;
  if (tier && (!entry || !entry->tuned)) {  // an untuned default here: the fleet may have tuned it
    if (std::optional<RemoteHit> hit = fetch_remote(*tier, store, fp, spec)) {
      if (!store) return StoredKernel{std::move(hit->entry), std::move(hit->cubin), true};
      remote = true;
      entry = store->lookup(fp, key);  // what the merge kept: a claim never displaces a measurement made here
      if (entry && !store_entry_usable(spec, *entry)) entry.reset();
    }
  }
  if (store) cache::count(entry && !remote ? cache::Counter::local_hit : cache::Counter::local_miss);
  if (!entry) return std::nullopt;
  return StoredKernel{*std::move(entry), std::nullopt, remote};
}

const char* to_string(PublishResult r) {
  switch (r) {
    case PublishResult::published: return "published";
    case PublishResult::kept_theirs: return "kept the tier's (as good or better)";
    case PublishResult::skipped: return "skipped";
    case PublishResult::failed: return "failed";
  }
  return "?";
}

PublishResult publish_entry(cache::RemoteTier& tier, const cache::PrivateKey& key, const cache::DeviceFingerprint& fp,
                            const cache::Entry& entry, const std::vector<char>& cubin) {
  if (!tier.writable()) return PublishResult::skipped;
  cache::RemoteRecord record;
  record.fingerprint = fp;
  record.entry = entry;
  record.entry.rejected.clear();
  record.entry.origin = cache::kOriginImported;  // not signed, not sent: the reader decides
  record.cubin = cubin;
  record.signature = cache::sign_entry(key, fp, record.entry, cubin);
  cache::PutMode mode = cache::PutMode::if_absent;
  if (entry.tuned) {
    // Compare first: a tuned entry replaces the tier's only when that one is absent, untuned or slower.
    if (const auto theirs = tier.get(fp, entry.problem_key); theirs && theirs->entry.tuned && theirs->entry.median_ms > 0 &&
                                                            theirs->entry.median_ms <= entry.median_ms)
      return PublishResult::kept_theirs;
    mode = cache::PutMode::replace;
  }
  switch (tier.put(record, mode)) {
    case cache::RemoteStatus::ok: return PublishResult::published;
    case cache::RemoteStatus::absent: return PublishResult::kept_theirs;
    case cache::RemoteStatus::read_only: return PublishResult::skipped;
    default: return PublishResult::failed;
  }
}

void publish_stored(cache::Store& store, const cache::DeviceFingerprint& fp, const std::string& key) {
  cache::RemoteTier* tier = default_remote_tier();
  const cache::PrivateKey* signing = tier ? default_signing_key() : nullptr;
  if (!tier || !signing) return;
  try {
    const std::optional<cache::Entry> entry = store.lookup(fp, key);
    if (!entry || entry->origin != cache::kOriginLocal) return;  // only what this machine made
    const auto cubin = store.load_blob(entry->cubin_sha256);
    if (!cubin) return;
    const PublishResult r = publish_entry(*tier, *signing, fp, *entry, *cubin);
    if (r == PublishResult::failed) log_once(fmt::format("{}: not published (the tier is unavailable or refused it)", key));
    if (env::flag("SIGJIT_VERBOSE_CACHE")) std::fprintf(stderr, "sigjit: remote cache: %s: %s\n", key.c_str(), to_string(r));
  } catch (const std::exception& e) {
    log_once(fmt::format("{}: not published: {}", key, e.what()));
  }
}

}  // namespace sigjit::detail
