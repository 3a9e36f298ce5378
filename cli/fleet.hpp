// The CLI's fleet and cache-management verbs (keygen, push, pull, stats, config, clear) and the
// previews of import (--list, --dry-run) and prune (--dry-run); on the public cache:: and tuner::
// APIs only. main.cpp registers them (add_fleet_verbs) and runs the one parsed (run_fleet_verb).
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace sigjit::cli {

void add_fleet_verbs(CLI::App& app);
// The exit status of the fleet verb that was parsed, or nullopt when none was. Throws
// sigjit::Error for a failure (main prints it and exits 1).
std::optional<int> run_fleet_verb();

// import --list / --dry-run: what the bundle holds (each entry's signature: trusted, untrusted,
// invalid or unsigned), and what importing it would do here, without writing the cache (the
// bundle is read into a temporary store). Returns the exit status.
int preview_import(const std::string& bundle, bool list, bool json, bool require_signed);
// prune --dry-run: the entries the patterns would remove.
int preview_prune(const std::vector<std::string>& patterns, bool json);

}  // namespace sigjit::cli
