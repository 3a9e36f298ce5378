#include "tune/gpu.hpp"

#include "jit/remote_tier.hpp"
#include "tune/fleet.hpp"

#include "kernels/launch.hpp"
#include "cuda/check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <thread>

namespace sigjit::tuner {

using namespace sigjit::detail;  // the device, kernel table, launches and store glue this file drives

namespace {

class DeviceAlloc {
 public:
  explicit DeviceAlloc(std::size_t bytes) { SIGJIT_CHECK_CU(driver().cuMemAlloc(&ptr_, bytes ? bytes : 16)); }
  ~DeviceAlloc() { driver().cuMemFree(ptr_); }
  DeviceAlloc(const DeviceAlloc&) = delete;
  DeviceAlloc& operator=(const DeviceAlloc&) = delete;
  void* get() const { return reinterpret_cast<void*>(ptr_); }
  CUdeviceptr ptr() const { return ptr_; }

 private:
  CUdeviceptr ptr_ = 0;
};

// Random 16-bit floats in about [-2, 2): exponent/mantissa bits drawn directly, which is fast
// enough for the 64 MB tensors of a 16K-token problem.
// n random e4m3 codes of moderate magnitude (exponents 2^-2..2^1, both signs, never NaN), two per
// element of the returned vector: the FP8 forward's inputs.
std::vector<std::uint16_t> random_e4m3(std::size_t n, std::uint64_t seed) {
  std::vector<std::uint16_t> out((n + 1) / 2);
  std::mt19937_64 rng(seed);
  const auto code = [&] { return static_cast<std::uint16_t>((rng() & 0x80) | (0x28 + rng() % 24)); };
  for (auto& pair : out) pair = static_cast<std::uint16_t>(code() | (code() << 8));
  return out;
}

std::vector<std::uint16_t> random_halves(std::size_t n, bool bf16, std::uint64_t seed) {
  std::vector<std::uint16_t> out(n);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(static_cast<std::int64_t>(rng() >> 40) - (1LL << 23)) / static_cast<float>(1 << 22);
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if (bf16) {
      out[i] = static_cast<std::uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    } else {
      const _Float16 h = static_cast<_Float16>(f);
      std::memcpy(&out[i], &h, 2);
    }
  }
  return out;
}

float half_to_float(std::uint16_t h, bool bf16) {
  if (bf16) {
    const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  _Float16 x;
  std::memcpy(&x, &h, 2);
  return static_cast<float>(x);
}

// Runs body(i) for i in [0, n) on all cores; `per_thread` runs first on each worker (e.g. to make
// the CUDA context current there).
void parallel_for(std::size_t n, const std::function<void(std::size_t)>& body, const std::function<void()>& per_thread = {}) {
  std::atomic<std::size_t> next{0};
  const unsigned threads = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), static_cast<unsigned>(n)));
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      if (per_thread) per_thread();
      for (std::size_t i; (i = next++) < n;) body(i);
    });
  }
  for (auto& t : pool) t.join();
}

class GpuMeasurer final : public tuner::Measurer {
 public:
  GpuMeasurer(const DeviceInfo& dev, const KernelSpec& spec, const tuner::Shape& shape) : dev_(dev), spec_(spec) { build(shape); }

  tuner::Verdict check(const KernelSpec& spec, const TileConfig& config) override {
    try {
      if (baseline_.empty()) {
        std::vector<std::uint16_t> baseline;  // assigned only when complete, so a failed run leaves none
        run_once(default_config(spec), baseline);
        baseline_ = std::move(baseline);
      }
      run_once(config, candidate_out_);
      return compare(candidate_out_);
    } catch (const Error& e) {
      return {false, fmt::format("{}: {}", e.kind() == ErrorKind::compile ? "compile" : "launch", e.what())};
    }
  }

  void time(const KernelSpec& spec, const TileConfig& config, int reps, tuner::Samples& out) override {
    const LoadedKernel k = get_kernel(dev_.context, spec, config);
    if (spec.direction != Direction::forward) prepare_backward(config);
    CUevent start, stop;
    SIGJIT_CHECK_CU(driver().cuEventCreate(&start, CU_EVENT_DEFAULT));
    SIGJIT_CHECK_CU(driver().cuEventCreate(&stop, CU_EVENT_DEFAULT));
    for (int i = 0; i < reps; ++i) {
      SIGJIT_CHECK_CU(driver().cuMemsetD8Async(flush_ptr_->ptr(), static_cast<unsigned char>(i), kFlushBytes, nullptr));
      SIGJIT_CHECK_CU(driver().cuEventRecord(start, nullptr));
      launch_timed(k, config);
      SIGJIT_CHECK_CU(driver().cuEventRecord(stop, nullptr));
      SIGJIT_CHECK_CU(driver().cuEventSynchronize(stop));
      float ms = 0;
      SIGJIT_CHECK_CU(driver().cuEventElapsedTime(&ms, start, stop));
      out.ms.push_back(ms);
    }
    driver().cuEventDestroy(start);
    driver().cuEventDestroy(stop);
  }

  double flops() const { return flops_; }

 private:
  // Backward: the kernels that run with the one under test, loaded once per measurer.
  struct BackwardKernels {
    LoadedKernel fused, convert;
    TileConfig fused_config;
  };

  bool fused_path() const { return spec_.direction == Direction::backward_fused || spec_.direction == Direction::backward_dq_convert; }

  // Loads the fused-path partner of the kernel under test (the convert kernel for a fused
  // candidate, the default fused kernel for the convert kernel).
  BackwardKernels fused_partners(const TileConfig& config) {
    KernelSpec fused_spec = spec_;
    fused_spec.direction = Direction::backward_fused;
    const bool testing_convert = spec_.direction == Direction::backward_dq_convert;
    const TileConfig fused_config = testing_convert ? default_config(fused_spec) : config;
    return {get_kernel(dev_.context, fused_spec, fused_config), get_kernel(dev_.context, dq_convert_spec(spec_), dq_convert_config()), fused_config};
  }

  void prepare_backward(const TileConfig& config) {
    if (fused_path()) partners_ = fused_partners(config);
  }

  // One timed run: the forward kernel, one deterministic backward kernel, or the whole fast
  // path (zeroing, fused, convert: the workspace must start at zero every run).
  void launch_timed(const LoadedKernel& k, const TileConfig& config) {
    switch (spec_.direction) {
      case Direction::forward: return kernels::launch(problem_, spec_.direction, nullptr, k, config, dev_.sm_count, nullptr);
      case Direction::backward_dkdv:
      case Direction::backward_dq: return kernels::launch(problem_, spec_.direction, &bwd_params_, k, config, 0, nullptr);
      case Direction::backward_fused:
      case Direction::backward_dq_convert:
        return kernels::enqueue_fused_backward(problem_, bwd_params_, partners_.fused, partners_.fused_config, partners_.convert,
                                              dev_.sm_count, nullptr);
      case Direction::fp8_quantize: break;  // refused by tune_and_store and check_on_gpu
    }
  }

  // The tensors a run writes, in one vector: O, or the gradients the kernel under test writes.
  std::vector<std::pair<CUdeviceptr, std::size_t>> outputs() const {
    if (spec_.direction == Direction::forward) return {{o_->ptr(), o_elems_}};
    std::vector<std::pair<CUdeviceptr, std::size_t>> out;
    if (spec_.direction != Direction::backward_dkdv) out.push_back({dq_->ptr(), o_elems_});
    if (spec_.direction != Direction::backward_dq) out.push_back({dk_->ptr(), kv_elems_}), out.push_back({dv_->ptr(), kv_elems_});
    return out;
  }

  static constexpr std::size_t kFlushBytes = 256u << 20;  // > L2 of every current GPU

  void build(const tuner::Shape& shape) {
    AttentionArgs& a = args_;
    const bool bf16 = spec_.dtype == DType::bf16;
    a.dtype = spec_.dtype;
    a.layout = spec_.layout;
    a.head_dim = spec_.head_dim;
    a.batch = shape.batch;
    a.heads_q = shape.heads;
    a.heads_kv = std::max(1, shape.heads / std::max(1, spec_.gqa_ratio));
    a.causal = spec_.causal;
    a.causal_align = spec_.causal_align;  // the timed shapes have len_q == len_k: both diagonals do the same work
    a.bias_mode = spec_.bias_mode;
    a.bias = -3.0f;
    a.sigmoid = spec_.sigmoid;
    lens_ = shape.seq_lens;
    const int max_len = *std::max_element(lens_.begin(), lens_.end());
    std::vector<int> cu{0};
    for (int l : lens_) cu.push_back(cu.back() + l);
    const bool varlen = a.layout == Layout::varlen;
    a.seqlen_q = a.seqlen_k = max_len;
    const std::size_t rows = varlen ? static_cast<std::size_t>(cu.back()) : static_cast<std::size_t>(a.batch) * max_len;
    const std::size_t q_elems = rows * a.heads_q * a.head_dim, kv_elems = rows * a.heads_kv * a.head_dim;
    q_ = std::make_unique<DeviceAlloc>(q_elems * 2);
    k_ = std::make_unique<DeviceAlloc>(kv_elems * 2);
    v_ = std::make_unique<DeviceAlloc>(kv_elems * 2);
    o_ = std::make_unique<DeviceAlloc>(q_elems * 2);
    o_elems_ = q_elems;
    kv_elems_ = kv_elems;
    const bool fp8 = spec_.dtype == DType::fp8_e4m3;  // e4m3 inputs (bf16 output)
    upload(*q_, fp8 ? random_e4m3(q_elems, 1) : random_halves(q_elems, bf16, 1));
    upload(*k_, fp8 ? random_e4m3(kv_elems, 2) : random_halves(kv_elems, bf16, 2));
    upload(*v_, fp8 ? random_e4m3(kv_elems, 3) : random_halves(kv_elems, bf16, 3));
    a.q = q_->get(), a.k = k_->get(), a.v = v_->get(), a.o = o_->get();
    if (a.layout == Layout::padded) {
      lens_dev_ = std::make_unique<DeviceAlloc>(lens_.size() * 4);
      SIGJIT_CHECK_CU(driver().cuMemcpyHtoD(lens_dev_->ptr(), lens_.data(), lens_.size() * 4));
      a.seq_lens_q = a.seq_lens_k = static_cast<const std::int32_t*>(lens_dev_->get());
      a.host_seq_lens_q = a.host_seq_lens_k = lens_.data();
    } else if (varlen) {
      cu_ = cu;
      lens_dev_ = std::make_unique<DeviceAlloc>(cu_.size() * 4);
      SIGJIT_CHECK_CU(driver().cuMemcpyHtoD(lens_dev_->ptr(), cu_.data(), cu_.size() * 4));
      a.cu_seqlens_q = a.cu_seqlens_k = static_cast<const std::int32_t*>(lens_dev_->get());
      a.host_cu_seqlens_q = a.host_cu_seqlens_k = cu_.data();
      a.total_q = a.total_k = cu.back();
    }
    if (spec_.score_bias) {
      const std::size_t n = varlen ? static_cast<std::size_t>(cu.back()) : static_cast<std::size_t>(a.batch) * max_len;
      std::vector<float> sb(n);
      std::mt19937 rng(4);
      std::uniform_real_distribution<float> u(-1.f, 1.f);
      for (auto& x : sb) x = u(rng);
      score_bias_ = std::make_unique<DeviceAlloc>(n * 4);
      SIGJIT_CHECK_CU(driver().cuMemcpyHtoD(score_bias_->ptr(), sb.data(), n * 4));
      a.score_bias = static_cast<const float*>(score_bias_->get());
    }
    problem_ = resolve(a);
    flush_ptr_ = std::make_unique<DeviceAlloc>(kFlushBytes);
    flops_ = 0;
    for (int l : lens_) flops_ += 4.0 * a.heads_q * a.head_dim * static_cast<double>(l) * l;
    if (a.causal) flops_ /= 2;
    if (spec_.direction != Direction::forward) build_backward(q_elems, kv_elems);
  }

  // dO random, dQ/dK/dV written by the runs, the fast path's workspace. FLOPs: the GEMMs of
  // what is timed, in units of the forward's two: the fast path 5 (2.5x, the convention of the
  // benchmarks), the dK/dV kernel 4, the dQ kernel 3.
  void build_backward(std::size_t q_elems, std::size_t kv_elems) {
    const bool bf16 = spec_.dtype == DType::bf16;
    dout_ = std::make_unique<DeviceAlloc>(q_elems * 2);
    dq_ = std::make_unique<DeviceAlloc>(q_elems * 2);
    dk_ = std::make_unique<DeviceAlloc>(kv_elems * 2);
    dv_ = std::make_unique<DeviceAlloc>(kv_elems * 2);
    upload(*dout_, random_halves(q_elems, bf16, 5));
    Gradients g;
    g.dout = dout_->get(), g.dq = dq_->get(), g.dk = dk_->get(), g.dv = dv_->get();
    const Gradients resolved = resolve_gradients(problem_, g);
    workspace_ = std::make_unique<DeviceAlloc>(fused_path() ? kernels::fused_workspace_bytes(problem_) : 0);
    bwd_params_ = kernels::backward_params(problem_, resolved, fused_path() ? workspace_->get() : nullptr);
    flops_ *= spec_.direction == Direction::backward_dkdv ? 2.0 : spec_.direction == Direction::backward_dq ? 1.5 : 2.5;
  }

  void upload(DeviceAlloc& dst, const std::vector<std::uint16_t>& host) {
    SIGJIT_CHECK_CU(driver().cuMemcpyHtoD(dst.ptr(), host.data(), host.size() * 2));
  }

  // Fills `out` (reused across candidates: the padded gt8k outputs are hundreds of MB).
  void run_once(const TileConfig& config, std::vector<std::uint16_t>& out) {
    const LoadedKernel k = get_kernel(dev_.context, spec_, config);
    if (spec_.direction != Direction::forward) prepare_backward(config);
    const auto tensors = outputs();
    for (const auto& [ptr, elems] : tensors) SIGJIT_CHECK_CU(driver().cuMemsetD8(ptr, kPoisonBits & 0xFF, elems * 2));
    launch_timed(k, config);
    SIGJIT_CHECK_CU(driver().cuCtxSynchronize());
    std::size_t total = 0;
    for (const auto& t : tensors) total += t.second;
    out.resize(total);
    std::size_t at = 0;
    for (const auto& [ptr, elems] : tensors) {
      SIGJIT_CHECK_CU(driver().cuMemcpyDtoH(out.data() + at, ptr, elems * 2));
      at += elems;
    }
  }

  tuner::Verdict compare(const std::vector<std::uint16_t>& out) const {
    return compare_with_baseline(baseline_, out, spec_.dtype != DType::fp16);  // FP8 writes bf16
  }

  const DeviceInfo dev_;
  const KernelSpec spec_;
  AttentionArgs args_;
  Resolved problem_;
  std::vector<int> lens_, cu_;
  std::unique_ptr<DeviceAlloc> q_, k_, v_, o_, lens_dev_, score_bias_, flush_ptr_;
  std::unique_ptr<DeviceAlloc> dout_, dq_, dk_, dv_, workspace_;  // backward only
  SigjitBwdParams bwd_params_{};
  BackwardKernels partners_;
  std::size_t o_elems_ = 0, kv_elems_ = 0;
  std::vector<std::uint16_t> baseline_, candidate_out_;
  double flops_ = 0;
};

}  // namespace

tuner::Verdict compare_with_baseline(const std::vector<std::uint16_t>& baseline, const std::vector<std::uint16_t>& out, bool bf16) {
  if (out.size() != baseline.size()) {
    return {false, fmt::format("wrong output: {} elements, the baseline has {}", out.size(), baseline.size())};
  }
  // On all cores in fixed chunks summed in order (the same verdict on every machine): a serial
  // pass over a padded gt8k output took about a second per candidate, most of the single-cell
  // preset's tuning time (H100, 2026-11-23).
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  struct Partial {
    double err2 = 0, ref2 = 0;
    long unwritten = 0;
  };
  std::vector<Partial> parts((out.size() + kChunk - 1) / kChunk);
  parallel_for(parts.size(), [&](std::size_t c) {
    Partial& p = parts[c];
    for (std::size_t i = c * kChunk, end = std::min(out.size(), i + kChunk); i < end; ++i) {
      const bool ref_poison = baseline[i] == kPoisonBits, got_poison = out[i] == kPoisonBits;
      if (ref_poison != got_poison) ++p.unwritten;
      if (ref_poison || got_poison) continue;
      const double r = half_to_float(baseline[i], bf16), g = half_to_float(out[i], bf16);
      p.err2 += (g - r) * (g - r);
      p.ref2 += r * r;
    }
  });
  double err2 = 0, ref2 = 0;
  long unwritten = 0;
  for (const Partial& p : parts) err2 += p.err2, ref2 += p.ref2, unwritten += p.unwritten;
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  const double tol = bf16 ? 1e-2 : 2e-3;
  if (unwritten) return {false, fmt::format("wrong output: {} elements written differently from the baseline", unwritten)};
  if (!(rel <= tol)) return {false, fmt::format("wrong output: rel error {:.3g} > {:.3g} vs the default config", rel, tol)};
  return {};
}

std::vector<std::pair<TileConfig, std::string>> compile_in_parallel(const KernelSpec& spec, const std::vector<TileConfig>& configs,
                                                                    const tuner::Progress& progress, std::vector<CompiledKernel>* results) {
  std::vector<std::pair<TileConfig, std::string>> failures;
  if (results) results->assign(configs.size(), CompiledKernel{});
  std::mutex mutex;
  int done = 0;
  parallel_for(configs.size(), [&](std::size_t i) {
    std::string failure;
    try {
      CompiledKernel k = compile_kernel(spec, configs[i]);
      if (results) (*results)[i] = std::move(k);
    } catch (const Error& e) {
      failure = e.what();
    }
    std::lock_guard<std::mutex> lock(mutex);
    if (!failure.empty()) failures.emplace_back(configs[i], failure);
    ++done;
    if (progress) progress(done, static_cast<int>(configs.size()), fmt::format("compiled {}", configs[i].describe()));
  });
  return failures;
}

namespace {

// A tuned kernel's fixed-config partner (the fused backward's dQ convert, the FP8 forward's
// on-the-fly quantization), so that a process using the tuned cache compiles nothing. Its one
// config is stored as an untuned entry unless the store already has it.
void store_partner_kernel(const DeviceInfo& dev, const KernelSpec& spec) {
  cache::Store* store = default_store();
  if (!store || store->lookup(fingerprint_for(dev, spec), problem_key(spec))) return;
  get_kernel(dev.context, spec, dq_convert_config());  // the convert: loaded by the measurer already
  store_kernel(dev, spec, dq_convert_config(), kernel_image(dev.context, spec, dq_convert_config()), cache::Entry{});
}

}  // namespace

namespace {

void refuse_untunable(const KernelSpec& spec) {
  if (spec.direction == Direction::fp8_quantize)
    throw Error(fmt::format("{}: the FP8 quantization has one config and no tuner measurement; nothing to tune", spec.describe()));
}

}  // namespace

tuner::TuneResult tune_and_store(const DeviceInfo& dev, const KernelSpec& spec, const TuneOptions& options) {
  refuse_untunable(spec);
  const tuner::Shape shape = tuner::representative_shape(spec, options.user_lengths);
  const std::vector<TileConfig> candidates = candidate_configs(spec);  // the default among them
  // Compile and load every candidate on all cores first; the measurer then finds them loaded.
  std::mutex mutex;
  int done = 0;
  parallel_for(
      candidates.size(),
      [&](std::size_t i) {
        try {
          get_kernel(dev.context, spec, candidates[i]);
        } catch (const Error&) {
          // recorded as a rejection by the measurer's check()
        }
        std::lock_guard<std::mutex> lock(mutex);
        ++done;
        if (options.progress) options.progress(done, static_cast<int>(candidates.size()), "compiled " + candidates[i].describe());
      },
      [&] { driver().cuCtxSetCurrent(dev.context); });

  GpuMeasurer measurer(dev, spec, shape);
  tuner::TuneResult result = tuner::tune(spec, candidates, measurer, options.strategy, options.budget, options.progress);
  if (!result.best) {
    throw Error(fmt::format("tuning {}: every candidate was rejected (first: {})", spec.describe(),
                            result.all.empty() ? std::string("none") : result.all.front().verdict.reason));
  }
  cache::Entry entry;
  entry.tuned = true;
  entry.median_ms = result.best->samples.median();
  entry.spread = result.best->samples.spread();
  entry.tflops = measurer.flops() / (entry.median_ms * 1e-3) / 1e12;
  entry.tuned_shape = shape.describe();
  for (const auto& c : result.all) {
    if (!c.verdict.ok) entry.rejected.push_back({c.config.describe(), c.verdict.reason});
  }
  store_kernel(dev, spec, result.best->config, kernel_image(dev.context, spec, result.best->config), entry);
  if (spec.direction == Direction::backward_fused) store_partner_kernel(dev, dq_convert_spec(spec));
  if (spec.direction == Direction::forward && spec.dtype == DType::fp8_e4m3) store_partner_kernel(dev, fp8_quantize_spec(spec));
  return result;
}

tuner::Verdict check_on_gpu(const DeviceInfo& dev, const KernelSpec& spec, const TileConfig& config) {
  refuse_untunable(spec);
  try {
    GpuMeasurer measurer(dev, spec, tuner::representative_shape(spec));
    return measurer.check(spec, config);
  } catch (const Error& e) {
    return {false, e.what()};
  }
}

tuner::Samples measure_config(const DeviceInfo& dev, const KernelSpec& spec, const TileConfig& config, int reps) {
  GpuMeasurer measurer(dev, spec, tuner::representative_shape(spec));
  tuner::Samples warmup, samples;
  measurer.time(spec, config, 3, warmup);
  measurer.time(spec, config, reps, samples);
  return samples;
}

std::optional<ResolvedKernel> autotune_and_store(const Device& dev, const KernelSpec& spec) {
  try {
    // One node of a fleet tunes a (spec, bucket, device) (a lock in the writable remote tier, with
    // a TTL): another node's lock makes this process use the default now; the tuned entry reaches
    // it through the tier later (an untuned local entry asks the tier again, runtime/resolve.cpp).
    const FleetTuneLock fleet_lock(default_remote_tier(), fingerprint_for(dev, spec), problem_key(spec));
    if (!fleet_lock.held()) {
      std::fprintf(stderr, "sigjit: SIGJIT_AUTOTUNE=1: %s is being tuned by another node (remote tier lock); using the default meanwhile\n",
                   problem_key(spec).c_str());
      return std::nullopt;
    }
    std::fprintf(stderr, "sigjit: SIGJIT_AUTOTUNE=1: tuning %s\n", spec.describe().c_str());
    TuneOptions options;
    const tuner::TuneResult r = tune_and_store(dev, spec, options);
    const TileConfig c = r.best->config;
    return ResolvedKernel{get_kernel(dev.context, spec, c), c, "tuned"};
  } catch (const Error& e) {
    std::fprintf(stderr, "sigjit: autotune failed (%s); using the default config\n", e.what());
    return std::nullopt;
  }
}

std::optional<Device> find_device(std::string* why) {
  try {
    return current_device();
  } catch (const Error& e) {
    if (why) *why = e.what();
    return std::nullopt;
  }
}

cache::DeviceFingerprint fingerprint(const Device& dev, const KernelSpec& spec) { return fingerprint_for(dev, spec); }

}  // namespace sigjit::tuner
