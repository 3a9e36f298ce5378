// sigjit-bench: forward and backward throughput on TritonSigmoid's grid (16384 tokens per batch,
// hidden 2048, heads = 2048 / head_dim), bf16 (or --dtype fp8: e4m3 Q, K, V, bf16 O; rows labelled
// sigjit-fp8). TFLOPS counted as TritonSigmoid counts them:
// forward 4*H*D*sum(Lq*Lk) over valid tokens only, halved when causal; backward (timed alone)
// 2.5x that. Each timed call is bracketed by CUDA events and preceded by a 256 MB L2 flush; the
// median of --reps calls after --warmup is reported. The backward is the default fast path (fused
// kernel, dQ atomics into the library's workspace, convert), or with --deterministic the
// two-kernel path: its rows say "sigjit-det" in the CSV's implementation column and "det" in the
// table, so both modes can share one CSV.
#include <sigjit/sigjit.hpp>

#include <CLI/CLI.hpp>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <vector>

namespace {

#define BENCH_CUDA(call)                                                                                   \
  do {                                                                                                     \
    const cudaError_t e_ = (call);                                                                         \
    if (e_ != cudaSuccess) throw std::runtime_error(fmt::format("{} failed: {}", #call, cudaGetErrorString(e_))); \
  } while (0)

struct Point {
  int head_dim, seq_len, pad_percent;
  bool causal;
  sigjit::Layout layout;
};

// Same rule as bench/grid.py: lengths spread so the mean padding is pad_percent.
std::vector<int> seq_lengths(int seq_len, int batch, int pad_percent) {
  std::vector<int> out;
  for (int b = 0; b < batch; ++b) {
    const int cut = static_cast<int>(2.0 * pad_percent / 100.0 * seq_len * (b + 0.5) / batch);
    out.push_back(std::max(1, seq_len - cut));
  }
  return out;
}

struct DeviceMem {
  void* p = nullptr;
  explicit DeviceMem(size_t bytes) { BENCH_CUDA(cudaMalloc(&p, bytes)); }
  ~DeviceMem() { cudaFree(p); }
  DeviceMem(const DeviceMem&) = delete;
  DeviceMem& operator=(const DeviceMem&) = delete;
};

void fill_random(void* dst, size_t elems, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<uint16_t> host(elems);
  for (auto& h : host) {
    float f = dist(rng);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    h = static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);  // bf16, round to nearest even
  }
  BENCH_CUDA(cudaMemcpy(dst, host.data(), elems * 2, cudaMemcpyHostToDevice));
}

// Random e4m3 bytes of moderate magnitude (exponents 2^-2..2^1, both signs), never NaN: FP8 timing
// inputs (the accuracy tests quantize real values; the rate does not depend on them).
void fill_random_e4m3(void* dst, size_t elems, std::mt19937& rng) {
  std::vector<uint8_t> host(elems);
  for (auto& b : host) b = static_cast<uint8_t>((rng() & 0x80) | (0x28 + rng() % 24));
  BENCH_CUDA(cudaMemcpy(dst, host.data(), elems, cudaMemcpyHostToDevice));
}

struct Result {
  double median_ms, min_ms, max_ms, tflops;
};

Result run_point(const Point& pt, bool backward, bool deterministic, bool fp8, bool quantize, int warmup, int reps, sigjit::SigmoidMode mode, DeviceMem& flush) {
  const int batch = std::max(1, 16384 / pt.seq_len), heads = 2048 / pt.head_dim, D = pt.head_dim;
  const std::vector<int> lens = seq_lengths(pt.seq_len, batch, pt.pad_percent);
  std::mt19937 rng(1234);
  sigjit::AttentionArgs a;
  a.head_dim = D;
  a.heads_q = heads;
  a.causal = pt.causal;
  a.sigmoid = mode;
  a.layout = pt.layout;
  a.batch = batch;
  a.dtype = fp8 ? sigjit::DType::fp8_e4m3 : sigjit::DType::bf16;
  std::vector<int> cu{0};
  for (int l : lens) cu.push_back(cu.back() + l);
  const bool varlen = pt.layout == sigjit::Layout::varlen;
  const size_t rows = varlen ? cu.back() : static_cast<size_t>(batch) * pt.seq_len;
  const size_t elems = rows * heads * D;
  const size_t in_bytes = fp8 ? 1 : 2;
  DeviceMem q(elems * in_bytes), k(elems * in_bytes), v(elems * in_bytes), o(elems * 2), lq(cu.size() * 4);
  for (DeviceMem* t : {&q, &k, &v}) fp8 ? fill_random_e4m3(t->p, elems, rng) : fill_random(t->p, elems, rng);
  // Gradient buffers only when timing the backward (dO random, dQ/dK/dV written by the call).
  const size_t grad_bytes = backward ? elems * 2 : 16;
  DeviceMem dout(grad_bytes), dq(grad_bytes), dk(grad_bytes), dv(grad_bytes);
  if (backward) fill_random(dout.p, elems, rng);
  sigjit::Gradients g;
  g.dout = dout.p, g.dq = dq.p, g.dk = dk.p, g.dv = dv.p;
  sigjit::BackwardOptions bwd_options;
  bwd_options.deterministic = deterministic;
  sigjit::ForwardOptions fwd_options;
  fwd_options.fp8 = quantize;  // bf16 inputs quantized on the fly: the quantization is timed with the forward
  const auto call = [&] { backward ? sigjit::backward(a, g, nullptr, bwd_options) : sigjit::forward(a, nullptr, fwd_options); };
  a.q = q.p, a.k = k.p, a.v = v.p, a.o = o.p;
  a.seqlen_q = a.seqlen_k = pt.seq_len;
  if (pt.layout == sigjit::Layout::padded) {
    BENCH_CUDA(cudaMemcpy(lq.p, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
    a.seq_lens_q = a.seq_lens_k = static_cast<int32_t*>(lq.p);
    a.host_seq_lens_q = a.host_seq_lens_k = lens.data();
  } else if (varlen) {
    BENCH_CUDA(cudaMemcpy(lq.p, cu.data(), cu.size() * 4, cudaMemcpyHostToDevice));
    a.cu_seqlens_q = a.cu_seqlens_k = static_cast<int32_t*>(lq.p);
    a.host_cu_seqlens_q = a.host_cu_seqlens_k = cu.data();
    a.total_q = a.total_k = cu.back();
    a.seqlen_q = a.seqlen_k = *std::max_element(lens.begin(), lens.end());
  }
  double flop = 0;
  for (int l : lens) flop += 4.0 * heads * D * static_cast<double>(l) * l;
  if (pt.causal) flop /= 2;
  if (backward) flop *= 2.5;

  cudaEvent_t start, stop;
  BENCH_CUDA(cudaEventCreate(&start));
  BENCH_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) call();
  BENCH_CUDA(cudaDeviceSynchronize());
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    BENCH_CUDA(cudaMemsetAsync(flush.p, i & 0xff, 256 << 20));
    BENCH_CUDA(cudaEventRecord(start));
    call();
    BENCH_CUDA(cudaEventRecord(stop));
    BENCH_CUDA(cudaEventSynchronize(stop));
    float t = 0;
    BENCH_CUDA(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  BENCH_CUDA(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  return {med, ms.front(), ms.back(), flop / (med * 1e-3) / 1e12};
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t comma = s.find(',', pos);
    out.push_back(std::stoi(s.substr(pos, comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sigjit-bench: sigmoid-attention throughput on TritonSigmoid's grid"};
  std::string directions = "fwd", head_dims = "64,128", seqs = "512,1024,2048,4096,8192,16384", pads = "0,25,50", csv, layout_name = "auto", sigmoid = "fast", tiles;
  int warmup = 5, reps = 30;
  bool causal = false, deterministic = false;
  std::string dtype = "bf16";
  app.add_option("--direction", directions, "fwd, bwd or fwd,bwd (bwd is timed alone, FLOPs 2.5x forward)");
  app.add_flag("--deterministic", deterministic,
               "Time the deterministic backward (two kernels, no atomics) instead of the default fused one; its rows are "
               "labelled sigjit-det (CSV) and det (table)");
  app.add_option("--head-dim", head_dims, "Comma-separated head dims");
  app.add_option("--seq", seqs, "Comma-separated sequence lengths (buffer length L)");
  app.add_option("--pad", pads, "Comma-separated padding percentages");
  app.add_option("--layout", layout_name, "auto (dense at 0% padding, else padded), dense, padded or varlen");
  app.add_flag("--causal", causal, "Causal masking");
  app.add_option("--sigmoid", sigmoid, "fast or exact")->check(CLI::IsMember({"fast", "exact"}));
  app.add_option("--dtype", dtype,
                 "bf16, fp8 (forward only: e4m3 Q, K, V, bf16 O; rows labelled sigjit-fp8) or fp8q (bf16 Q, K, V quantized on the fly, "
                 "ForwardOptions::fp8, the quantization timed with the forward; rows labelled sigjit-fp8q)")
      ->check(CLI::IsMember({"bf16", "fp8", "fp8q"}));
  app.add_option("--warmup", warmup, "Untimed launches per point");
  app.add_option("--reps", reps, "Timed launches per point (median reported)");
  app.add_option("--csv", csv, "Append results to this CSV file");
  app.add_option("--tiles", tiles, "Semicolon-separated tile configs to sweep (sets SIGJIT_FORCE_TILE; default is the spec's own config), either family: e.g. m128n64w8s2;h128x128c2s2o, or hb128x64c2s2 for the sm90 fused backward (--direction bwd; sm90 configs need a CC 9.0 GPU)");
  CLI11_PARSE(app, argc, argv);
  try {
    DeviceMem flush(256 << 20);
    cudaDeviceProp prop{};
    BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::FILE* out = csv.empty() ? nullptr : std::fopen(csv.c_str(), "a");
    if (const char* trace = std::getenv("SIGJIT_TRACE_TILES"); trace != nullptr && *trace != '\0')
      fmt::print(stderr,
                 "sigjit-bench: SIGJIT_TRACE_TILES={}: each traced launch synchronizes and writes its trace, so the times below are not "
                 "the kernels'; read the trace with bench/tile_timeline.py\n",
                 trace);
    fmt::print("device: {}\n{:>4} {:>4} {:>6} {:>4} {:>7} {:>7} {:>16} {:>10} {:>10}\n", prop.name, "dir", "hd", "L", "pad", "layout", "causal", "tile", "ms", "TFLOPS");
    std::vector<std::string> dir_list;
    for (const char* d : {"fwd", "bwd"})
      if (directions.find(d) != std::string::npos) dir_list.emplace_back(d);
    if (dir_list.empty()) throw std::runtime_error("--direction: expected fwd, bwd or fwd,bwd, got '" + directions + "'");
    std::vector<std::string> tile_list{""};
    if (!tiles.empty()) {
      tile_list.clear();
      size_t pos = 0;
      while (pos <= tiles.size()) {
        const size_t semi = tiles.find(';', pos);
        const std::string tile = tiles.substr(pos, semi == std::string::npos ? std::string::npos : semi - pos);
        tile_list.push_back(tile == "default" ? std::string() : tile);  // "default": the spec's own config
        if (semi == std::string::npos) break;
        pos = semi + 1;
      }
    }
    for (const std::string& dir : dir_list)
    for (int hd : parse_list(head_dims))
      for (int L : parse_list(seqs))
        for (int pad : parse_list(pads))
          for (const std::string& tile : tile_list) {
            sigjit::Layout layout = pad == 0 ? sigjit::Layout::dense : sigjit::Layout::padded;
            if (layout_name == "dense") layout = sigjit::Layout::dense;
            if (layout_name == "padded") layout = sigjit::Layout::padded;
            if (layout_name == "varlen") layout = sigjit::Layout::varlen;
            if (layout == sigjit::Layout::dense && pad != 0) continue;
            if (tile.empty()) unsetenv("SIGJIT_FORCE_TILE");
            else setenv("SIGJIT_FORCE_TILE", tile.c_str(), 1);
            const char* lname = layout == sigjit::Layout::dense ? "dense" : layout == sigjit::Layout::padded ? "padded" : "varlen";
            try {
              const bool det = deterministic && dir == "bwd";
              const bool fp8 = dtype == "fp8", quantize = dtype == "fp8q";
              const Result r = run_point({hd, L, pad, causal, layout}, dir == "bwd", det, fp8, quantize, warmup, reps, sigmoid == "exact" ? sigjit::SigmoidMode::exact : sigjit::SigmoidMode::fast, flush);
              const std::string tile_label = (tile.empty() ? std::string("default") : tile) + (det ? " det" : "") + (fp8 ? " fp8" : quantize ? " fp8q" : "");
              fmt::print("{:>4} {:>4} {:>6} {:>4} {:>7} {:>7} {:>16} {:>10.4f} {:>10.1f}\n", dir, hd, L, pad, lname, causal, tile_label, r.median_ms, r.tflops);
              if (out) fmt::print(out, "{},{},{},{},{},{},{},{},{},{:.5f},{:.5f},{:.5f},{:.2f}\n", det ? "sigjit-det" : fp8 ? "sigjit-fp8" : quantize ? "sigjit-fp8q" : "sigjit", prop.name, hd, L, pad, lname, causal ? 1 : 0, tile.empty() ? "default" : tile, dir, r.median_ms, r.min_ms, r.max_ms, r.tflops);
            } catch (const sigjit::Error& e) {
              fmt::print("{:>4} {:>4} {:>6} {:>4} {:>7} {:>7} {:>16} error: {}\n", dir, hd, L, pad, lname, causal, tile, e.what());
            }
          }
    if (out) std::fclose(out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigjit-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
