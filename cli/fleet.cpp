#include "cli/fleet.hpp"

#include "base/env.hpp"
#include "cache/counters.hpp"
#include "cache/remote.hpp"
#include "cache/signing.hpp"
#include "cache/store.hpp"
#include "problem/spec.hpp"
#include "tune/fleet.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

namespace sigjit::cli {

std::string config_write_text(bool w);

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Text from the cache, a bundle or the tier made safe for a terminal (controls escaped).
std::string clean(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  return out;
}

void print_json(const json& j) { fmt::print("{}\n", j.dump(2, ' ', true, json::error_handler_t::replace)); }

struct Options {
  std::string priv, pub, pattern, device;
  bool json = false;
  bool zero = false;
};
Options opts;
CLI::App *keygen_cmd, *push_cmd, *pull_cmd, *stats_cmd, *config_cmd, *clear_cmd;

// The tier from the environment, for a verb that needs it (sigjit::Error when not configured).
std::unique_ptr<cache::RemoteTier> tier_for(const char* verb, bool need_trusted) {
  std::optional<cache::RemoteConfig> config = cache::RemoteConfig::from_env();
  if (!config) throw Error(fmt::format("{}: {} is not set (redis://[user:password@]host:port[/db]); `sigjit config` shows the settings", verb,
                                       cache::kRemoteCacheEnv));
  cache::TrustedKeys trusted = cache::TrustedKeys::from_env();
  if (need_trusted && trusted.empty())
    throw Error(fmt::format("{}: {} names no key, so no entry of the tier could be verified; set it to the fleet's public key(s)", verb,
                            cache::kTrustedKeysEnv));
  return std::make_unique<cache::RemoteTier>(*std::move(config), std::move(trusted));
}

int run_keygen() {
  const cache::KeyPairFiles k = cache::generate_key_pair(opts.priv, opts.pub);
  if (opts.json)
    print_json({{"private", k.private_pem.string()}, {"public", k.public_pem.string()}, {"key_id", k.key_id}});
  else
    fmt::print("wrote {} (private, mode 0600: SIGJIT_SIGNING_KEY of tuning nodes) and {} (public: add it to SIGJIT_TRUSTED_KEYS)\nkey id {}\n",
               clean(k.private_pem.string()), clean(k.public_pem.string()), k.key_id);
  return 0;
}

int run_push() {
  auto tier = tier_for("push", false);
  if (!tier->writable()) throw Error(fmt::format("push: the tier is read-only; set {}=1 on tuning nodes", cache::kRemoteWriteEnv));
  const std::optional<std::string> key_file = env::text("SIGJIT_SIGNING_KEY");
  if (!key_file) throw Error("push: SIGJIT_SIGNING_KEY is not set (a private key file; `sigjit keygen` makes one): readers load only signed entries");
  const cache::PrivateKey key = cache::PrivateKey::load(*key_file);
  const cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);
  std::map<std::string, int> counts;
  json rows = json::array();
  for (const auto& l : store.list()) {
    const cache::Entry& e = l.entry;
    if (!opts.pattern.empty() && e.problem_key.find(opts.pattern) == std::string::npos) continue;
    std::string result;
    if (e.origin != cache::kOriginLocal || (e.tuned && !e.measured_here())) {
      result = "skipped (not made on this machine: a claim is never re-signed)";
    } else if (const auto cubin = store.load_blob(e.cubin_sha256); !cubin) {
      result = "skipped (its cubin is missing; `sigjit verify` lists it)";
    } else {
      result = tuner::to_string(tuner::publish_entry(*tier, key, l.fingerprint, e, *cubin));
    }
    ++counts[result];
    rows.push_back({{"problem_key", e.problem_key}, {"fingerprint_id", l.fingerprint.id()}, {"result", result}});
    if (!opts.json) fmt::print("  {} [{}]: {}\n", clean(e.problem_key), l.fingerprint.id(), result);
  }
  const int failed = counts["failed"];
  if (opts.json)
    print_json({{"server", tier->config().url()}, {"key_id", key.key_id()}, {"entries", rows}, {"failed", failed}});
  else
    fmt::print("pushed {} entries to {} signed by {}: {} published, {} kept the tier's, {} failed\n", rows.size(), tier->config().url(),
               cache::key_id_short(key.key_id()), counts["published"], counts[tuner::to_string(tuner::PublishResult::kept_theirs)], failed);
  return failed ? 1 : 0;
}

int run_pull() {
  auto tier = tier_for("pull", true);
  const auto keys = tier->scan_keys(cache::remote_key_pattern(nullptr));
  if (!keys) throw Error(fmt::format("pull: {} is unavailable", tier->config().url()));
  cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);  // created by the first write only
  int pulled = 0, rejected = 0, other_device = 0, absent = 0;
  json rows = json::array();
  for (const auto& k : *keys) {
    const auto raw = tier->get_raw(k);
    if (!raw) {
      ++absent;  // expired or deleted since the scan, or over the bound (logged)
      continue;
    }
    std::string result;
    try {
      const cache::RemoteRecord r = cache::decode_record(*raw, k, tier->trusted());
      if (!opts.device.empty() && r.fingerprint.gpu_name.find(opts.device) == std::string::npos && r.fingerprint.id() != opts.device) {
        ++other_device;
        continue;
      }
      if (const std::string why = tuner::remote_record_problem(r, r.entry.problem_key); !why.empty()) throw Error(why);
      tuner::write_through(store, r);
      ++pulled;
      result = "pulled";
      rows.push_back({{"key", k}, {"problem_key", r.entry.problem_key}, {"gpu", r.fingerprint.gpu_name}, {"result", result}});
    } catch (const std::exception& e) {
      ++rejected;
      result = fmt::format("rejected: {}", e.what());
      rows.push_back({{"key", k}, {"result", result}});
    }
    if (!opts.json) fmt::print("  {}: {}\n", clean(k), clean(result));
  }
  if (opts.json)
    print_json({{"server", tier->config().url()}, {"pulled", pulled}, {"rejected", rejected}, {"other_device", other_device}, {"entries", rows}});
  else
    fmt::print("pulled {} entries from {} into {} (claims: they never displace a measurement made here); {} rejected, {} of other devices, "
               "{} gone since the scan\n",
               pulled, tier->config().url(), clean(store.root().string()), rejected, other_device, absent);
  return rejected ? 1 : 0;
}

// The persisted lookup counters (cache/counters.hpp), by tier.
json counters_json(const cache::CounterReport& r) {
  json tiers = json::object();
  for (std::size_t i = 0; i < cache::kCounterCount; ++i) {
    const std::string name = cache::counter_name(static_cast<cache::Counter>(i));
    const std::size_t dot = name.find('.');
    tiers[name.substr(0, dot)][name.substr(dot + 1)] = r.totals[i];
  }
  return {{"tiers", tiers}, {"files", r.files}, {"problems", r.problems},
          {"zeroed_at", r.zeroed_at ? json(*r.zeroed_at) : json(nullptr)}};
}

void print_counters(const cache::CounterReport& r) {
  const auto& t = r.totals;
  const auto at = [&](cache::Counter c) { return t[static_cast<std::size_t>(c)]; };
  using C = cache::Counter;
  std::string since;
  if (r.zeroed_at) {
    const std::time_t z = static_cast<std::time_t>(*r.zeroed_at);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&z));
    since = fmt::format(" since {} (`sigjit stats --zero`)", buf);
  }
  fmt::print("lookups{} by the processes using this cache (saved every {} s and at exit):\n", since, cache::kFlushInterval.count());
  fmt::print("  in-process table: {} hits, {} misses\n", at(C::process_hit), at(C::process_miss));
  fmt::print("  local store:      {} hits, {} misses\n", at(C::local_hit), at(C::local_miss));
  fmt::print("  remote tier:      {} hits, {} misses, {} errors (timeouts, connections, refused commands), {} not asked (breaker open), "
             "{} records refused (signature, format, key, unusable)\n",
             at(C::remote_hit), at(C::remote_miss), at(C::remote_error), at(C::remote_unavailable), at(C::remote_refused));
  for (const auto& p : r.problems) fmt::print("  skipped {}\n", clean(p));
}

int run_zero() {
  const fs::path root = cache::Store::default_root();
  const int n = cache::zero_counters(root);
  if (opts.json)
    print_json({{"root", root.string()}, {"files_zeroed", n}});
  else
    fmt::print("zeroed the lookup counters of {} ({} files)\n", clean(root.string()), n);
  return 0;
}

int run_stats() {
  if (opts.zero) return run_zero();
  const cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);
  json local = {{"root", store.root().string()}, {"bytes", store.size_bytes()}};
  std::map<std::string, std::pair<std::string, int>> devices;
  std::map<std::string, int> origins;
  int tuned = 0, total = 0;
  for (const auto& l : store.list()) {
    auto& d = devices[l.fingerprint.id()];
    d.first = l.fingerprint.gpu_name;
    ++d.second;
    ++origins[l.entry.origin];
    tuned += l.entry.tuned;
    ++total;
  }
  local["entries"] = total;
  local["tuned"] = tuned;
  local["origins"] = origins;
  json devs = json::array();
  for (const auto& [id, d] : devices) devs.push_back({{"fingerprint_id", id}, {"gpu", d.first}, {"entries", d.second}});
  local["devices"] = devs;
  json remote = {{"configured", false}};
  if (std::optional<cache::RemoteConfig> config = cache::RemoteConfig::from_env()) {
    cache::RemoteTier tier(*config, cache::TrustedKeys{});
    const auto t0 = std::chrono::steady_clock::now();
    const auto keys = tier.scan_keys(cache::remote_key_pattern(nullptr));
    remote = {{"configured", true},
              {"server", config->url()},
              {"writable", config->write},
              {"reachable", keys.has_value()},
              {"entries", keys ? json(keys->size()) : json(nullptr)},
              {"scan_ms", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()}};
  }
  const cache::CounterReport counters = cache::read_counters(store.root());
  if (opts.json) {
    print_json({{"local", local}, {"remote", remote}, {"counters", counters_json(counters)}});
    return 0;
  }
  fmt::print("local store {}: {} entries ({} tuned), {:.1f} MB\n", clean(store.root().string()), total, tuned, store.size_bytes() / 1e6);
  for (const auto& [o, n] : origins) fmt::print("  origin {}: {}\n", clean(o), n);
  for (const auto& [id, d] : devices) fmt::print("  device {} {}: {} entries\n", id, clean(d.first), d.second);
  if (!remote["configured"].get<bool>())
    fmt::print("remote tier: not configured ({})\n", cache::kRemoteCacheEnv);
  else if (!remote["reachable"].get<bool>())
    fmt::print("remote tier {}: unreachable\n", remote["server"].get<std::string>());
  else
    fmt::print("remote tier {} ({}): {} entries\n", remote["server"].get<std::string>(), config_write_text(remote["writable"].get<bool>()),
               remote["entries"].get<std::size_t>());
  print_counters(counters);
  return 0;
}

int run_config() {
  json rows = json::array();
  for (const env::Switch& s : env::switches()) {
    const char* raw = env::raw(s.name);
    std::string value = raw ? raw : "";
    if (raw && s.name == cache::kRemoteCacheEnv) {  // never print a password
      try {
        value = cache::RemoteConfig::parse_url(value).url();
      } catch (const std::exception&) {
        value = "(not a valid redis:// URL)";
      }
    }
    rows.push_back({{"name", s.name}, {"set", raw != nullptr}, {"value", raw ? json(value) : json(nullptr)}, {"effect", s.effect},
                    {"changes_binary", s.changes_binary}});
  }
  if (opts.json) {
    print_json(rows);
    return 0;
  }
  for (const auto& r : rows)
    fmt::print("{:<40} {:<8} {}\n", r["name"].get<std::string>(), r["set"].get<bool>() ? "set" : "default",
               r["set"].get<bool>() ? clean(r["value"].get<std::string>()) : "(" + r["effect"].get<std::string>() + ")");
  fmt::print("cache directory in force: {}\n", clean(cache::Store::default_root().string()));
  return 0;
}

int run_clear() {
  cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);
  const int removed = store.prune({}, nullptr);  // refuses a directory without the cache marker
  const cache::GcReport r = store.gc(false, nullptr, 0);
  if (opts.json)
    print_json({{"entries_removed", removed}, {"blobs_removed", r.blobs_removed}, {"bytes_freed", r.bytes_freed}});
  else
    fmt::print("cleared {}: removed {} entries and {} cubins ({:.1f} MB)\n", clean(store.root().string()), removed, r.blobs_removed,
               r.bytes_freed / 1e6);
  return 0;
}

}  // namespace

std::string config_write_text(bool w) { return w ? "read-write" : "read-only"; }

void add_fleet_verbs(CLI::App& app) {
  keygen_cmd = app.add_subcommand("keygen", "Make an Ed25519 key pair for signing entries (never overwrites a file)");
  keygen_cmd->add_option("private", opts.priv, "Private key file to write (mode 0600)")->required();
  keygen_cmd->add_option("public", opts.pub, "Public key file to write")->required();
  keygen_cmd->add_flag("--json", opts.json, "JSON output");
  push_cmd = app.add_subcommand("push", "Sign this machine's entries (SIGJIT_SIGNING_KEY) and put them to the remote tier (SIGJIT_REMOTE_CACHE, "
                                        "SIGJIT_REMOTE_CACHE_WRITE=1)");
  push_cmd->add_option("pattern", opts.pattern, "Only problem keys containing this");
  push_cmd->add_flag("--json", opts.json, "JSON output");
  pull_cmd = app.add_subcommand("pull", "Copy the remote tier's entries signed by a key of SIGJIT_TRUSTED_KEYS into the local store (as claims)");
  pull_cmd->add_option("--device", opts.device, "Only entries whose GPU name contains this (or whose fingerprint id is this)");
  pull_cmd->add_flag("--json", opts.json, "JSON output");
  stats_cmd = app.add_subcommand("stats", "Entries per device and origin, sizes; the remote tier's reachability and entry count; "
                                          "lookup hits and misses per tier");
  stats_cmd->add_flag("--json", opts.json, "JSON output");
  stats_cmd->add_flag("--zero,-z", opts.zero, "Reset the lookup counters to zero");
  config_cmd = app.add_subcommand("config", "Every SIGJIT_* setting: its value in force, and whether it is set or the default");
  config_cmd->add_flag("--json", opts.json, "JSON output");
  clear_cmd = app.add_subcommand("clear", "Remove every entry and cubin of the local cache (a directory marked as a sigjit cache)");
  clear_cmd->add_flag("--json", opts.json, "JSON output");
}

std::optional<int> run_fleet_verb() {
  if (*keygen_cmd) return run_keygen();
  if (*push_cmd) return run_push();
  if (*pull_cmd) return run_pull();
  if (*stats_cmd) return run_stats();
  if (*config_cmd) return run_config();
  if (*clear_cmd) return run_clear();
  return std::nullopt;
}

// An entry's signature as import --list shows it.
std::string signature_text(const cache::BundleItem& it) {
  const std::string by = it.key_id.empty() ? "" : "signed by " + cache::key_id_short(it.key_id) + " ";
  switch (it.signature) {
    case cache::BundleSignature::none: return "unsigned";
    case cache::BundleSignature::trusted: return by + "(trusted)";
    case cache::BundleSignature::untrusted: return by + "(untrusted)";
    case cache::BundleSignature::invalid: return by + "(invalid)";
  }
  return "?";
}

int preview_import(const std::string& bundle, bool list, bool json_out, bool require_signed) {
  const cache::Store here(cache::Store::default_root(), cache::Store::Open::existing);
  char tmpl[] = "/tmp/sigjit-import-preview-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw Error("import: cannot make a temporary directory");
  const fs::path tmp = tmpl;
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{tmp};
  cache::Store scratch(tmp / "store");
  cache::ImportOptions options;
  options.require_signed = require_signed;
  const cache::ImportReport r = scratch.import_bundle(bundle, nullptr, true, options);
  json rows = json::array();
  int add = 0, merge = 0, keep_local = 0, refused = 0;
  std::map<std::string, int> signatures;
  std::set<std::pair<std::string, std::string>> counted;  // a bundle's duplicates merge into one entry
  for (std::size_t n = 0; n < r.items.size(); ++n) {
    const cache::BundleItem& it = r.items[n];
    ++signatures[cache::to_string(it.signature)];
    std::string action;
    if (!it.refused.empty()) {
      action = "refused: " + it.refused;
      ++refused;
    } else {
      const auto ours = here.lookup(it.fingerprint, it.problem_key);
      action = !ours ? "add" : ours->measured_here() ? "keep ours (measured here)" : "merge (keep the faster)";
      if (counted.emplace(it.fingerprint.id(), it.problem_key).second) (!ours ? add : ours->measured_here() ? keep_local : merge)++;
    }
    rows.push_back({{"index", n}, {"fingerprint_id", it.problem_key.empty() ? "" : it.fingerprint.id()}, {"gpu", it.fingerprint.gpu_name},
                    {"problem_key", it.problem_key}, {"config", it.config}, {"tuned", it.tuned}, {"median_ms", it.median_ms},
                    {"signature", cache::to_string(it.signature)}, {"key_id", it.key_id.empty() ? json(nullptr) : json(it.key_id)},
                    {"action", action}});
  }
  if (json_out) {
    print_json({{"entries", rows}, {"problems", r.problems}, {"signatures", signatures}, {"would_add", add}, {"would_merge", merge},
                {"would_keep_local", keep_local}, {"would_refuse", refused}});
  } else {
    for (std::size_t n = 0; n < rows.size(); ++n) {
      const auto& row = rows[n];
      const std::string& action = row["action"].get_ref<const std::string&>();
      fmt::print("  {:<16} {:<58} {:<16} {:>5} {:>9.4f}  {}{}\n", row["fingerprint_id"].get<std::string>(),
                 clean(row["problem_key"].get<std::string>()), clean(row["config"].get<std::string>()), row["tuned"].get<bool>() ? "yes" : "no",
                 row["median_ms"].get<double>(), signature_text(r.items[n]),
                 list && action.rfind("refused", 0) != 0 ? "" : "  " + clean(action));
    }
    for (const auto& p : r.problems) fmt::print(stderr, "  problem: {}\n", clean(p));
    if (list)
      fmt::print("{} entries in {}\n", rows.size(), clean(bundle));
    else
      fmt::print("dry run (nothing written): would add {}, merge {} by the usual rule, keep {} measured here{}; device fingerprints are "
                 "checked when importing for real\n",
                 add, merge, keep_local, refused ? fmt::format(", refuse {}", refused) : "");
    std::string sig_line;
    for (const auto& [status, count] : signatures) sig_line += fmt::format("{}{} {}", sig_line.empty() ? "" : ", ", count, status);
    if (!rows.empty()) fmt::print("signatures: {} (checked against {})\n", sig_line, cache::kTrustedKeysEnv);
  }
  return r.problems.empty() ? 0 : 1;
}

int preview_prune(const std::vector<std::string>& patterns, bool json_out) {
  const cache::Store store(cache::Store::default_root(), cache::Store::Open::existing);
  json rows = json::array();
  for (const auto& l : store.list()) {
    const bool hit = patterns.empty() ||
                     std::any_of(patterns.begin(), patterns.end(), [&](const auto& k) { return l.entry.problem_key.find(k) != std::string::npos; });
    if (!hit) continue;
    rows.push_back({{"fingerprint_id", l.fingerprint.id()}, {"problem_key", l.entry.problem_key}});
    if (!json_out) fmt::print("  would remove {} [{}]\n", clean(l.entry.problem_key), l.fingerprint.id());
  }
  if (json_out)
    print_json(rows);
  else
    fmt::print("dry run: would remove {} entries\n", rows.size());
  return 0;
}

}  // namespace sigjit::cli
