// The remote tier (cache/remote.hpp) on the kernel lookup path: the process's tier, built once
// from the environment; fetching a verified entry and writing it through to the local store; and
// publishing what this machine compiled or tuned (signed) when the tier is writable.
//
// Trust: a record comes back from RemoteTier::get only when its signature verifies against a key
// of SIGJIT_TRUSTED_KEYS and its cubin hashes to the signed digest; here it must also be usable
// for the spec (store_entry_usable: a valid config whose kernel name matches, tuned or today's
// default) and be for the problem asked. Anything else is a miss that is never written to the
// local store. A written-through entry's origin is kOriginImported (a claim: it never displaces
// an entry measured here; `sigjit verify --gpu` or SIGJIT_AUTOTUNE=1 re-measures it), with a
// provenance record whose host is "remote:<signer key id>" saying where it came from.
// Publishing (SIGJIT_REMOTE_CACHE_WRITE=1 and SIGJIT_SIGNING_KEY, a private key file): an untuned
// entry is put only if absent; a tuned one replaces the tier's entry only when that one is
// absent, untuned or slower (compared first; a race between two tuners of one key keeps the last
// writer, which is why tuning one key is locked fleet-wide, see tuning_lock).
#pragma once

#include "cache/remote.hpp"
#include "cache/signing.hpp"
#include "cache/store.hpp"
#include "problem/spec.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace sigjit::detail {

// The process's tier, or nullptr: SIGJIT_REMOTE_CACHE unset, or its configuration or
// SIGJIT_TRUSTED_KEYS unusable, or no key trusted (each disables the tier with one log line).
cache::RemoteTier* default_remote_tier();
// The key this process signs with, or nullptr: writes off, SIGJIT_SIGNING_KEY unset or unusable
// (logged once).
const cache::PrivateKey* default_signing_key();

struct RemoteHit {
  cache::Entry entry;  // as written to the local store (origin imported)
  std::vector<char> cubin;
};

// A record of the tier checked for this process: for `problem_key`, and usable for its own spec
// (spec_from_json of entry.spec; store_entry_usable). "" when fine, else why not.
std::string remote_record_problem(const cache::RemoteRecord& record, const std::string& problem_key);

// Writes a checked record through to `store` (blob, then entry merged with keep_faster: a claim
// never displaces a measurement made here). Returns the entry as written. Throws on I/O errors.
cache::Entry write_through(cache::Store& store, const cache::RemoteRecord& record);

// get, check, write through (when `store` is not null), counted (cache/counters.hpp). nullopt: a
// miss (absent, unavailable, rejected: logged by the tier; unusable: logged here once per key).
std::optional<RemoteHit> fetch_remote(cache::RemoteTier& tier, cache::Store* store, const cache::DeviceFingerprint& fp,
                                      const KernelSpec& spec);

// What the local store, then the remote tier, hold for `spec` (the runtime's order before tuning
// or compiling): the store's usable entry, unless it is untuned or absent and the tier has one (a
// verified record, written through to the store, whose merge decides what serves: a claim never
// displaces a measurement made here). Counts the local store's hit or miss and the tier's outcome
// (cache/counters.hpp). `store` or `tier` may be null (disabled, or the recheck under a compile
// lock, which asks the store only).
struct StoredKernel {
  cache::Entry entry;
  std::optional<std::vector<char>> cubin;  // set when there is no store: the record's own cubin
  bool remote = false;                     // fetched from the tier by this call
};
std::optional<StoredKernel> lookup_stored(cache::Store* store, cache::RemoteTier* tier, const cache::DeviceFingerprint& fp,
                                          const KernelSpec& spec);

enum class PublishResult { published, kept_theirs, skipped, failed };
const char* to_string(PublishResult r);
// Signs and puts one entry this machine made (see the header comment for the rule).
PublishResult publish_entry(cache::RemoteTier& tier, const cache::PrivateKey& key, const cache::DeviceFingerprint& fp,
                            const cache::Entry& entry, const std::vector<char>& cubin);
// publish_entry on the process's tier and key, if both exist and the store's entry of the key is
// this machine's (origin local); best effort, logged.
void publish_stored(cache::Store& store, const cache::DeviceFingerprint& fp, const std::string& problem_key);

}  // namespace sigjit::detail
