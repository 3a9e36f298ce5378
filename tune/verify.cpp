#include "tune/verify.hpp"

namespace sigjit::tuner {

GpuCheckAction decide_gpu_check(const GpuCheckFacts& f) {
  if (!f.cached_cubin_ran) return GpuCheckAction::heal;  // missing, or did not load: replace it with a compile of its config
  if (!f.output_ok) return GpuCheckAction::heal;         // it loaded and ran but computed the wrong thing: never trust those bytes
  if (f.produced_here) return GpuCheckAction::keep;
  // A claim: re-time it here if its output was proven right, else replace its bytes with our
  // own compile of the same config (a default-config entry cannot be compared in-process).
  return f.output_compared ? GpuCheckAction::promote : GpuCheckAction::heal;
}

GpuVerification verify_on_gpu(cache::Store& store, const Device& dev, const KernelSpec& spec, const cache::Store::Listed& l) {
  const TileConfig config = TileConfig::parse(l.entry.config, "entry config");
  GpuCheckFacts facts;
  facts.produced_here = l.entry.origin == cache::kOriginLocal;  // produced here (a local untuned default too): not a claim
  facts.output_compared = config.describe() != default_config(spec).describe();
  detail::unload_kernel(dev.context, spec, config);  // a kernel of the same name loaded earlier is not the cached one
  if (const auto blob = store.load_blob(l.entry.cubin_sha256)) {
    bool recompiled = false;  // the cached cubin did not load
    detail::get_kernel(dev.context, spec, config, &*blob, [&](const CompiledKernel&) { recompiled = true; });
    facts.cached_cubin_ran = !recompiled;
  }
  Verdict verdict{false, "the cached cubin is missing or did not load"};
  if (facts.cached_cubin_ran) verdict = check_on_gpu(dev, spec, config);
  facts.output_ok = verdict.ok;
  GpuVerification v;
  v.action = decide_gpu_check(facts);
  switch (v.action) {
    case GpuCheckAction::keep: v.fine_as_found = true; break;
    case GpuCheckAction::promote: {
      const Samples s = measure_config(dev, spec, config, 20);
      cache::Entry e = l.entry;
      e.origin = cache::kOriginLocal;
      e.median_ms = s.median();
      e.spread = s.spread();
      e.tflops = 0;  // the claim's figure is not ours; `sigjit tune` measures it
      v.fine_as_found = true;
      v.claimed_ms = l.entry.median_ms;
      v.measured_ms = e.median_ms;
      v.stored = store.replace_if_current(l.fingerprint, e, l.entry.cubin_sha256);
      break;
    }
    case GpuCheckAction::heal:
      detail::unload_kernel(dev.context, spec, config);
      detail::get_kernel(dev.context, spec, config);  // a fresh compile of the config
      detail::heal_stored_kernel(dev, spec, config, detail::kernel_image(dev.context, spec, config), l.entry);
      v.fine_as_found = facts.cached_cubin_ran && verdict.ok;
      v.reason = !facts.cached_cubin_ran ? verdict.reason
                 : !verdict.ok           ? "wrong output from the cached cubin: " + verdict.reason
                                         : std::string("an imported default-config cubin cannot be compared in-process");
      break;
  }
  return v;
}

}  // namespace sigjit::tuner
