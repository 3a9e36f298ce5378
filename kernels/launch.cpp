#include "kernels/launch.hpp"

#include "base/env.hpp"
#include "base/posix_file.hpp"
#include "cuda/check.hpp"
#include "kernels/family.hpp"
#include "kernels/registry.hpp"
#include "sigjit/sm90/bwd_schedule.h"
#include "sigjit/sm90/dq_stage_layout.h"
#include "sigjit/sm90/fp8_layout.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace sigjit::kernels {

namespace {

void set_strides(sigjit_i64& batch, sigjit_i64& token, sigjit_i64& head, const Strides& s) {
  batch = s.batch;
  token = s.token;
  head = s.head;
}

// The bytes are copied, so only the size must match; TMA needs the map 64-byte aligned (cuda.h
// of CUDA 13 declares 128, CUDA 12 declared 64).
static_assert(sizeof(SigjitTensorMap) == sizeof(CUtensorMap) && alignof(SigjitTensorMap) >= 64,
              "templates/sigjit/common/tensor_map.h must mirror cuda.h's CUtensorMap");

// cuTensorMapEncodeTiled's requirements (cuda.h): byte strides multiples of 16 and below 2^40.
bool tma_stride_ok(std::int64_t elems, int elem_bytes) {
  const std::int64_t bytes = elems * elem_bytes;
  return bytes > 0 && bytes % 16 == 0 && bytes < (std::int64_t{1} << 40);
}

// Byte strides for the map's three outer dimensions. A dimension of extent 1 is never stepped,
// so its stride is replaced by the packed one (its own may be anything the validation allowed).
std::array<cuuint64_t, 3> tma_byte_strides(const TmaTensor& t, int head_dim) {
  const int e = t.elem_bytes;
  const std::int64_t token = t.rows > 1 ? t.strides.token * e : std::int64_t{head_dim} * e;
  const std::int64_t head = t.heads > 1 ? t.strides.head * e : token * t.rows;
  const std::int64_t batch = t.batch > 1 ? t.strides.batch * e : head * t.heads;
  return {static_cast<cuuint64_t>(token), static_cast<cuuint64_t>(head), static_cast<cuuint64_t>(batch)};
}

std::string tma_tensor_unsuitable(const TmaTensor& t) {
  if (reinterpret_cast<std::uintptr_t>(t.base) % 16 != 0) return fmt::format("{} is not 16-byte aligned", t.name);
  if (t.rows > 1 && !tma_stride_ok(t.strides.token, t.elem_bytes)) return fmt::format("{}_strides.token={} is not a TMA stride", t.name, t.strides.token);
  if (t.heads > 1 && !tma_stride_ok(t.strides.head, t.elem_bytes)) return fmt::format("{}_strides.head={} is not a TMA stride", t.name, t.strides.head);
  if (t.batch > 1 && !tma_stride_ok(t.strides.batch, t.elem_bytes))
    return fmt::format("{}_strides.batch={} is not a TMA stride", t.name, t.strides.batch);
  if (t.rows > (std::int64_t{1} << 31) - 1) return fmt::format("{} has more rows than TMA's 32-bit coordinates address", t.name);
  return {};
}

}  // namespace

SigjitFwdParams forward_params(const detail::Resolved& r) {
  const AttentionArgs& a = r.args;
  SigjitFwdParams p{};
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.o = a.o;
  p.seq_lens_q = a.seq_lens_q;
  p.seq_lens_k = a.seq_lens_k;
  p.cu_seqlens_q = a.cu_seqlens_q;
  p.cu_seqlens_k = a.cu_seqlens_k;
  p.score_bias = a.score_bias;
  set_strides(p.q_stride_b, p.q_stride_l, p.q_stride_h, a.q_strides);
  set_strides(p.k_stride_b, p.k_stride_l, p.k_stride_h, a.k_strides);
  set_strides(p.v_stride_b, p.v_stride_l, p.v_stride_h, a.v_strides);
  set_strides(p.o_stride_b, p.o_stride_l, p.o_stride_h, a.o_strides);
  p.score_bias_stride_b = a.score_bias_stride;
  p.batch = a.batch;
  p.heads_q = a.heads_q;
  p.kv_group = a.heads_q / a.heads_kv;
  p.seqlen_q = a.seqlen_q;
  p.seqlen_k = a.seqlen_k;
  p.total_q = a.total_q;
  p.total_k = a.total_k;
  p.scale = r.scale;
  p.bias = a.bias;
  return p;
}

namespace {

// SIGJIT_TRACE_TILES: the launch's tile records, written as CSV (bench/tile_timeline.py). A launch
// that recorded nothing (another kernel of the same call) leaves the file as it is, so the file
// holds the last traced launch.
static_assert(sizeof(SigjitTileTrace) == 48, "templates/sigjit/common/params.h's SigjitTileTrace is read as 48-byte records");
constexpr size_t kTileTraceBytes = sizeof(SigjitTileTrace) * SIGJIT_TILE_TRACE_CAP;

void write_tile_trace(const detail::LoadedKernel& k, CUstream stream) {
  std::vector<SigjitTileTrace> records(SIGJIT_TILE_TRACE_CAP);
  SIGJIT_CHECK_CU(detail::driver().cuStreamSynchronize(stream));
  SIGJIT_CHECK_CU(detail::driver().cuMemcpyDtoH(records.data(), k.tile_trace, kTileTraceBytes));
  std::string csv = "tile,sm,cta,begin_ns,end_ns,reduced_ns,kv_ready_ns,steps_done_ns\n";
  for (size_t t = 0; t < records.size(); ++t) {
    const SigjitTileTrace& r = records[t];
    if (r.begin_ns != 0 || r.reduced_ns != 0)
      csv += fmt::format("{},{},{},{},{},{},{},{}\n", t, r.sm, r.cta, r.begin_ns, r.end_ns, r.reduced_ns, r.kv_ready_ns, r.steps_done_ns);
  }
  if (csv.find('\n') + 1 == csv.size()) return;
  write_trace_file(*env::text("SIGJIT_TRACE_TILES"), csv);
}

// One launch as the kernel asks: the dQ convert after a dQ writer may start early (handoff).
void launch_untraced(const Launch& l, unsigned grid_x, unsigned grid_y, unsigned grid_z, void* params) {
  void* kernel_args[] = {params};
  const bool handoff = l.part == Direction::backward_dq_convert && l.backward != nullptr && l.backward->dq_reduced != nullptr;
  if (!handoff) {
    SIGJIT_CHECK_CU(detail::driver().cuLaunchKernel(l.kernel.function, grid_x, grid_y, grid_z, l.kernel.threads, 1, 1, l.kernel.smem_bytes,
                                                    l.stream, kernel_args, nullptr));
    return;
  }
  CUlaunchAttribute early{};
  early.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  early.value.programmaticStreamSerializationAllowed = 1;
  CUlaunchConfig config{};
  config.gridDimX = grid_x, config.gridDimY = grid_y, config.gridDimZ = grid_z;
  config.blockDimX = static_cast<unsigned>(l.kernel.threads), config.blockDimY = config.blockDimZ = 1;
  config.sharedMemBytes = static_cast<unsigned>(l.kernel.smem_bytes);
  config.hStream = l.stream;
  config.attrs = &early;
  config.numAttrs = 1;
  SIGJIT_CHECK_CU(detail::driver().cuLaunchKernelEx(&config, l.kernel.function, kernel_args, nullptr));
}

}  // namespace

void write_trace_file(const std::string& path, const std::string& text) {
  auto refuse = [&](const std::string& why) {
    throw Error(fmt::format("SIGJIT_TRACE_TILES={}: {}; point it at a regular file in a writable directory", path, why));
  };
  // O_NONBLOCK: a FIFO without a reader fails at once instead of blocking the launch.
  const posix::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666));
  if (fd.get() < 0) refuse(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) refuse("not a regular file");
  if (::ftruncate(fd.get(), 0) != 0 || !posix::write_all(fd.get(), text.data(), text.size())) refuse(std::strerror(errno));
}

void launch_kernel(const Launch& l, unsigned grid_x, unsigned grid_y, unsigned grid_z, void* params) {
  if (l.kernel.tile_trace == 0) return launch_untraced(l, grid_x, grid_y, grid_z, params);
  SIGJIT_CHECK_CU(detail::driver().cuMemsetD8Async(l.kernel.tile_trace, 0, kTileTraceBytes, l.stream));
  launch_untraced(l, grid_x, grid_y, grid_z, params);
  write_tile_trace(l.kernel, l.stream);
}

std::vector<TmaTensor> tma_tensors(const detail::Resolved& r, const SigjitBwdParams* backward) {
  const AttentionArgs& a = r.args;
  const bool varlen = a.layout == Layout::varlen;
  const std::int64_t rows_q = varlen ? a.total_q : a.seqlen_q, rows_k = varlen ? a.total_k : a.seqlen_k;
  const std::int64_t batch = varlen ? 1 : a.batch;
  const int bytes = a.dtype == DType::fp8_e4m3 ? 1 : 2;
  std::vector<TmaTensor> t{{"q", a.q, a.q_strides, rows_q, a.heads_q, batch, bytes},
                           {"k", a.k, a.k_strides, rows_k, a.heads_kv, batch, bytes},
                           {"v", a.v, a.v_strides, rows_k, a.heads_kv, batch, bytes}};
  if (backward) {
    t.push_back(
        {"dout", backward->dout, Strides{backward->do_stride_b, backward->do_stride_l, backward->do_stride_h}, rows_q, a.heads_q, batch});
  }
  return t;
}

std::string tma_unsuitable(const detail::Resolved& r, const SigjitBwdParams* backward) {
  const AttentionArgs& a = r.args;
  if (a.head_dim % 64 != 0) return fmt::format("head_dim={} is not a whole number of 128-byte rows", a.head_dim);
  for (const TmaTensor& t : tma_tensors(r, backward))
    if (std::string why = tma_tensor_unsuitable(t); !why.empty()) return why;
  return {};
}

namespace {

// One 4-D tiled map with a 128-byte swizzle (the box's rows span 128 bytes; 64-byte rows take
// the 64-byte swizzle), zero fill out of bounds, copied into the parameter block's slot; a driver
// refusal names the tensor.
void encode_swizzled_map(SigjitTensorMap& dst, const char* name, const void* base, CUtensorMapDataType type, const cuuint64_t (&dims)[4],
                         const std::array<cuuint64_t, 3>& strides, cuuint32_t box_cols, cuuint32_t box_rows,
                         CUtensorMapSwizzle swizzle = CU_TENSOR_MAP_SWIZZLE_128B) {
  CUtensorMap map{};
  const cuuint32_t box[4] = {box_cols, box_rows, 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUresult st = detail::driver().cuTensorMapEncodeTiled(&map, type, 4, const_cast<void*>(base), dims, strides.data(), box, element_strides,
                                                              CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                                              CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (st != CUDA_SUCCESS) {
    throw Error(fmt::format("{}: cuTensorMapEncodeTiled failed ({}) for dims [{}, {}, {}, {}], byte strides [{}, {}, {}]", name,
                            detail::cu_error_text(st), dims[0], dims[1], dims[2], dims[3], strides[0], strides[1], strides[2]),
                ErrorKind::cuda);
  }
  static_assert(sizeof(dst) == sizeof(map), "SigjitTensorMap must be a CUtensorMap's 128 bytes");
  std::memcpy(&dst, &map, sizeof(dst));
}

}  // namespace

void encode_tma_map(SigjitTensorMap& dst, const TmaTensor& t, const AttentionArgs& a, int box_rows) {
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(a.head_dim), static_cast<cuuint64_t>(t.rows), static_cast<cuuint64_t>(t.heads),
                              static_cast<cuuint64_t>(t.batch)};
  if (t.elem_bytes == 1) {  // FP8 Q and K: one box of whole head_dim-byte rows (sm90/fwd.cuh, FwdSm90Fp8Config)
    encode_swizzled_map(dst, t.name, t.base, CU_TENSOR_MAP_DATA_TYPE_UINT8, dims, tma_byte_strides(t, a.head_dim),
                        static_cast<cuuint32_t>(a.head_dim), static_cast<cuuint32_t>(box_rows),
                        a.head_dim == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B);
    return;
  }
  // One box is one 64-column (128-byte) block of box_rows rows: the 128B swizzle's span.
  encode_swizzled_map(dst, t.name, t.base, a.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, dims,
                      tma_byte_strides(t, a.head_dim), 64, static_cast<cuuint32_t>(box_rows));
}

Fp8VtLayout fp8_vt_layout(const detail::Resolved& r) {
  const AttentionArgs& a = r.args;
  const bool varlen = a.layout == Layout::varlen;
  Fp8VtLayout l;
  l.columns = kern::sm90::fp8_vt_columns(varlen, a.batch, varlen ? a.total_k : a.seqlen_k);
  l.slabs = varlen ? 1 : a.batch;
  const unsigned __int128 bytes = static_cast<unsigned __int128>(l.slabs) * a.heads_kv * a.head_dim * l.columns;
  if (bytes > (static_cast<unsigned __int128>(1) << 62)) {
    throw Error(fmt::format("the FP8 forward's V^T workspace would take {:.3g} B; split the batch", static_cast<double>(bytes)));
  }
  l.bytes = static_cast<std::size_t>(bytes);
  // A varlen sequence's columns run to the next one's origin: its length rounded up to 16 plus
  // at most 16 + 32 more, and the last one's up to 64 more (fp8_vt_column0, fp8_vt_columns).
  const std::int64_t span = varlen ? static_cast<std::int64_t>(a.seqlen_k) + 96 : l.columns;
  l.prologue_blocks = std::max<std::int64_t>(1, (span + 63) / 64);
  return l;
}

Fp8QuantizeLayout fp8_quantize_layout(const detail::Resolved& r) {
  const AttentionArgs& a = r.args;
  const bool varlen = a.layout == Layout::varlen;
  const unsigned __int128 rows_q = varlen ? a.total_q : static_cast<unsigned __int128>(a.batch) * a.seqlen_q;
  const unsigned __int128 rows_k = varlen ? a.total_k : static_cast<unsigned __int128>(a.batch) * a.seqlen_k;
  const auto aligned = [](unsigned __int128 bytes) { return (bytes + 255) / 256 * 256; };
  Fp8QuantizeLayout l;
  l.factors = 3 * static_cast<std::size_t>(a.batch) * a.heads_kv;
  unsigned __int128 at = 0;
  const auto place = [&](std::size_t& offset, unsigned __int128 bytes) {
    offset = static_cast<std::size_t>(at);
    at += aligned(bytes);
  };
  place(l.q8, rows_q * a.heads_q * a.head_dim);
  place(l.k8, rows_k * a.heads_kv * a.head_dim);
  place(l.v8, rows_k * a.heads_kv * a.head_dim);
  place(l.amax, l.factors * sizeof(float));
  place(l.descale, l.factors * sizeof(float));
  l.vt = static_cast<std::size_t>(at);
  at += fp8_vt_layout(r).bytes;
  if (at > (static_cast<unsigned __int128>(1) << 62)) {
    throw Error(fmt::format("fp8=true: the quantized copies of q, k and v would take {:.3g} B; split the batch", static_cast<double>(at)));
  }
  l.bytes = static_cast<std::size_t>(at);
  return l;
}

SigjitQuantizeParams fp8_quantize_params(const detail::Resolved& r, unsigned char* workspace, const Fp8QuantizeLayout& layout) {
  SigjitQuantizeParams qp{};
  qp.src = forward_params(r);
  qp.q8 = workspace + layout.q8;
  qp.k8 = workspace + layout.k8;
  qp.v8 = workspace + layout.v8;
  qp.amax = reinterpret_cast<float*>(workspace + layout.amax);
  qp.descale = reinterpret_cast<float*>(workspace + layout.descale);
  qp.heads_kv = r.args.heads_kv;
  return qp;
}

void enqueue_varlen_tail_zero(const detail::Resolved& r, const SigjitBwdParams& params, const detail::LoadedKernel& convert,
                              CUstream stream) {
  const AttentionArgs& a = r.args;
  if (a.layout != Layout::varlen || (a.total_q == 0 && a.total_k == 0)) return;
  if (convert.prologue == nullptr) throw Error("the varlen dQ convert module has no tail zeroing entry (<name>_tail)", ErrorKind::cuda);
  constexpr unsigned kCtasPerHead = 8;  // strides over any tail; an empty one costs a load per CTA
  SigjitBwdParams copy = params;
  void* args[] = {&copy};
  SIGJIT_CHECK_CU(detail::driver().cuLaunchKernel(convert.prologue, kCtasPerHead, static_cast<unsigned>(a.heads_q), 1,
                                                  static_cast<unsigned>(convert.threads), 1, 1, 0, stream, args, nullptr));
}

void enqueue_fp8_quantize(const detail::Resolved& r, const SigjitQuantizeParams& params, const detail::LoadedKernel& kernel,
                          CUstream stream) {
  const AttentionArgs& a = r.args;
  if (kernel.prologue == nullptr) throw Error("the FP8 quantization module has no amax entry (<name>_amax)", ErrorKind::cuda);
  const int rows_per_cta = dq_convert_config().get<Sm80Tile>().block_m;
  const unsigned grid_x = static_cast<unsigned>((std::max(a.seqlen_q, a.seqlen_k) + rows_per_cta - 1) / rows_per_cta);
  const unsigned grid_y = static_cast<unsigned>(a.heads_q + 2 * a.heads_kv);
  if (grid_x == 0 || a.batch == 0) return;
  SIGJIT_CHECK_CU(detail::driver().cuMemsetD8Async(reinterpret_cast<CUdeviceptr>(params.amax), 0,
                                                   3 * static_cast<std::size_t>(a.batch) * a.heads_kv * sizeof(float), stream));
  SigjitQuantizeParams copy = params;
  void* args[] = {&copy};
  for (CUfunction f : {kernel.prologue, kernel.function}) {
    SIGJIT_CHECK_CU(detail::driver().cuLaunchKernel(f, grid_x, grid_y, static_cast<unsigned>(a.batch),
                                                    static_cast<unsigned>(kernel.threads), 1, 1, 0, stream, args, nullptr));
  }
}

void encode_fp8_vt_map(SigjitTensorMap& dst, void* vt, const Fp8VtLayout& layout, const AttentionArgs& a) {
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(layout.columns), static_cast<cuuint64_t>(a.head_dim), static_cast<cuuint64_t>(a.heads_kv),
                              static_cast<cuuint64_t>(layout.slabs)};
  const cuuint64_t row = static_cast<cuuint64_t>(layout.columns), head = row * a.head_dim;
  encode_swizzled_map(dst, "v (FP8 V^T workspace)", vt, CU_TENSOR_MAP_DATA_TYPE_UINT8, dims, {row, head, head * a.heads_kv}, 128,
                      static_cast<cuuint32_t>(a.head_dim));
}

void encode_dq_accum_map(SigjitTensorMap& dst, const SigjitBwdParams& bp, const AttentionArgs& a, int box_rows) {
  const bool varlen = a.layout == Layout::varlen;
  const std::int64_t rows = varlen ? a.total_q : a.seqlen_q, batch = varlen ? 1 : a.batch;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(a.head_dim), static_cast<cuuint64_t>(rows), static_cast<cuuint64_t>(a.heads_q),
                              static_cast<cuuint64_t>(batch)};
  // The workspace is dense and 16-byte aligned (check_workspace, backward_params): every stride
  // is a multiple of 16 bytes at head dims 64 and 128; a batch of one gets the whole tensor's size.
  const std::int64_t token = bp.dqa_stride_l * 4, head = bp.dqa_stride_h * 4;
  const std::array<cuuint64_t, 3> strides = {static_cast<cuuint64_t>(token), static_cast<cuuint64_t>(head),
                                             static_cast<cuuint64_t>(batch > 1 ? bp.dqa_stride_b * 4 : token * rows)};
  encode_swizzled_map(dst, "dq workspace", bp.dq_accum, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, dims, strides, kern::sm90::kDqStageBoxCols,
                      static_cast<cuuint32_t>(box_rows));
}

// ---- launches ------------------------------------------------------------------------------------

std::size_t dq_workspace_bytes(const detail::Resolved& r) {
  const AttentionArgs& a = r.args;
  const std::size_t rows =
      a.layout == Layout::varlen ? static_cast<std::size_t>(a.total_q) : static_cast<std::size_t>(a.batch) * a.seqlen_q;
  // 128 bits: the product must not wrap (to 0, which a 16-byte workspace would then satisfy).
  const unsigned __int128 bytes = static_cast<unsigned __int128>(rows) * a.heads_q * a.head_dim * sizeof(float);
  if (bytes > std::numeric_limits<std::int64_t>::max())
    throw Error(
        fmt::format("backward workspace: batch x seqlen_q x heads_q x head_dim x 4 B = {:.3g} B does not fit in memory; "
                    "the problem is too large",
                    static_cast<double>(bytes)));
  return static_cast<std::size_t>(bytes);
}

std::size_t per_sequence_counter_bytes(const detail::Resolved& r) {
  const std::size_t bytes = static_cast<std::size_t>(r.args.batch) * sizeof(int);
  return (bytes + 15) / 16 * 16;
}

std::size_t fused_counter_bytes(const detail::Resolved& r) { return kTileCounterBytes + 2 * per_sequence_counter_bytes(r); }

std::size_t fused_workspace_bytes(const detail::Resolved& r) {
  return r.args.batch == 0 ? 0 : dq_workspace_bytes(r) + fused_counter_bytes(r);
}

int* tile_counter(const detail::Resolved& r, const SigjitBwdParams& params) {
  if (params.dq_accum == nullptr)
    throw Error("sm90 persistent backward: launched without the workspace that holds its tile counter (internal)");
  return reinterpret_cast<int*>(reinterpret_cast<char*>(params.dq_accum) + dq_workspace_bytes(r));
}

DqCounters dq_counters(const detail::Resolved& r) {
  const AttentionArgs& a = r.args;
  DqCounters c;
  c.per_head = (a.seqlen_q + 63) / 64;
  const std::int64_t per_seq = std::int64_t{a.heads_q} * c.per_head;
  if (per_seq > std::numeric_limits<int>::max()) {
    throw Error(fmt::format("deterministic backward: heads_q={} x seqlen_q={} / 64 query blocks overflow the ordered dQ counters' index; "
                            "split the heads over calls",
                            a.heads_q, a.seqlen_q));
  }
  c.per_seq = static_cast<int>(per_seq);
  c.bytes = static_cast<std::size_t>(a.batch) * static_cast<std::size_t>(c.per_seq) * sizeof(int);
  return c;
}

SigjitBwdParams backward_params(const detail::Resolved& r, const Gradients& g, void* dq_accum) {
  const AttentionArgs& a = r.args;
  SigjitBwdParams bp{};
  bp.fwd = forward_params(r);
  bp.dout = g.dout;
  bp.dq = g.dq;
  bp.dk = g.dk;
  bp.dv = g.dv;
  bp.dq_accum = static_cast<float*>(dq_accum);
  const auto set_strides = [](sigjit_i64& batch, sigjit_i64& token, sigjit_i64& head, const Strides& s) {
    batch = s.batch, token = s.token, head = s.head;
  };
  set_strides(bp.do_stride_b, bp.do_stride_l, bp.do_stride_h, g.dout_strides);
  set_strides(bp.dq_stride_b, bp.dq_stride_l, bp.dq_stride_h, g.dq_strides);
  set_strides(bp.dk_stride_b, bp.dk_stride_l, bp.dk_stride_h, g.dk_strides);
  set_strides(bp.dv_stride_b, bp.dv_stride_l, bp.dv_stride_h, g.dv_strides);
  bp.dqa_stride_h = a.head_dim;
  bp.dqa_stride_l = static_cast<sigjit_i64>(a.heads_q) * a.head_dim;
  bp.dqa_stride_b = a.layout == Layout::varlen ? 0 : bp.dqa_stride_l * a.seqlen_q;
  return bp;
}

void launch(const detail::Resolved& r, Direction part, const SigjitBwdParams* backward, const detail::LoadedKernel& kernel,
            const TileConfig& config, int sm_count, CUstream stream, bool ordered_workspace, void* forward_workspace) {
  family_of(config).launch({r, part, backward, kernel, sm_count, stream, ordered_workspace, forward_workspace}, config);
}

namespace {

// Zeroes the dQ workspace's `bytes` of values before the reductions, and the `tail` bytes after
// them (the persistent kernel's counters): in the padded layout only the sequences' valid rows
// (the convert module's second entry; the other rows are never read), elsewhere all of it (a
// varlen workspace holds only valid rows) in one memset with the tail. params.dq_zeroed_in_kernel:
// only the tail (the persistent kernel zeroes the values).
void zero_dq_workspace(const detail::Resolved& r, const SigjitBwdParams& params, const detail::LoadedKernel& convert, std::size_t bytes,
                       std::size_t tail, CUstream stream) {
  const AttentionArgs& a = r.args;
  const auto base = reinterpret_cast<CUdeviceptr>(params.dq_accum);
  if (params.dq_zeroed_in_kernel != 0) {
    if (tail > 0) SIGJIT_CHECK_CU(detail::driver().cuMemsetD8Async(base + bytes, 0, tail, stream));
    return;
  }
  if (a.layout != Layout::padded) {
    if (bytes + tail > 0) SIGJIT_CHECK_CU(detail::driver().cuMemsetD8Async(base, 0, bytes + tail, stream));
    return;
  }
  if (tail > 0) SIGJIT_CHECK_CU(detail::driver().cuMemsetD8Async(base + bytes, 0, tail, stream));
  if (bytes == 0) return;
  if (convert.prologue == nullptr)
    throw Error("the padded dQ convert module has no workspace zeroing entry (<name>_zero)", ErrorKind::cuda);
  const int rows = dq_convert_config().get<Sm80Tile>().block_m;  // the zero kernel's rows per CTA
  const unsigned row_blocks = static_cast<unsigned>((a.seqlen_q + rows - 1) / rows);
  SigjitBwdParams copy = params;
  void* args[] = {&copy};
  SIGJIT_CHECK_CU(detail::driver().cuLaunchKernel(convert.prologue, row_blocks, static_cast<unsigned>(a.heads_q),
                                                  static_cast<unsigned>(a.batch), static_cast<unsigned>(convert.threads), 1, 1, 0, stream,
                                                  args, nullptr));
}

// A switch between the default and one alternative, for comparisons: true unless it names the
// alternative; any other value is an error naming both.
bool default_unless_switched(const char* name, const char* default_value, const char* alternative) {
  const std::optional<std::string> value = env::text(name);
  if (!value || *value == default_value) return true;
  if (*value == alternative) return false;
  throw Error(fmt::format("{}={}: expected {} or {}", name, *value, alternative, default_value));
}

// The Hopper fused kernel's wholly padded key blocks write the padded dQ rows' zeros
// (common/padded_rows.h) while the other CTAs compute, instead of the convert kernel after them:
// the default since the padded backward matrices passed with it (H100, 2026-12-06), where it cut
// the ragged batch's padded forward+backward by about 0.1 ms (bench/PROFILE-backward.md).
// SIGJIT_PADDED_DQ_ZERO=convert restores the convert kernel's zeros, for comparison.
bool fused_kernel_zeroes_padded_dq() { return default_unless_switched("SIGJIT_PADDED_DQ_ZERO", "fused", "convert"); }

// Both kernels read the choice from the same parameter block, so they always agree on it.
SigjitBwdParams with_padded_dq_zeroing(const detail::Resolved& r, SigjitBwdParams params, const TileConfig& fused_config) {
  const Sm90BwdTile* tile = fused_config.get_if<Sm90BwdTile>();
  params.dq_pad_zero_key_block = 0;
  if (r.args.layout == Layout::padded && tile != nullptr && fused_kernel_zeroes_padded_dq()) params.dq_pad_zero_key_block = tile->block_k();
  return params;
}

// Who zeroes the persistent fused kernel's (_wp) dQ workspace (common/params.h's
// dq_zeroed_in_kernel): its idle warps while it computes, every sequence at once (kernel, the
// default: it beat the memset, bench/PROFILE-backward.md); the same warps paced to the tiles
// handed out (paced, sm90/bwd_schedule.h: measured on an H100 on 2026-12-07 within ±2.6 % of
// kernel, no gain, so not the default); or a memset that runs alone before the kernel (memset),
// for comparison.
int persistent_dq_zeroing() {
  const std::optional<std::string> value = env::text("SIGJIT_BWD_DQ_ZERO");
  if (!value || *value == "kernel") return SIGJIT_DQ_ZERO_EAGER;
  if (*value == "paced") return SIGJIT_DQ_ZERO_PACED;
  if (*value == "memset") return SIGJIT_DQ_ZEROED_BEFORE;
  throw Error(fmt::format("SIGJIT_BWD_DQ_ZERO={}: expected kernel, paced or memset", *value));
}

// The convert kernel after a fused kernel with the dQ writer (_w, _wp) starts on the SMs its last
// wave frees and converts each sequence once its key tiles are counted done (common/params.h),
// instead of after the whole kernel: the default since the H100 run of 2026-12-07 (+5 % at hd 128
// causal L 1024 on _w, +0.2-1.4 % on _wp; bench/PROFILE-backward.md). SIGJIT_BWD_DQ_CONVERT=after
// restores the convert after the kernel, for comparison.
bool convert_overlaps_fused_kernel() { return default_unless_switched("SIGJIT_BWD_DQ_CONVERT", "overlap", "after"); }

// The fused kernel's passes beside its GEMMs: the persistent kernel's own dQ zeroing, and the
// writer tiles' handoff to the convert. (Without keys the fused kernel does not launch, and the
// memset zeroes what the convert reads.)
SigjitBwdParams with_fused_passes(const detail::Resolved& r, SigjitBwdParams params, const TileConfig& fused_config) {
  const Sm90BwdTile* tile = fused_config.get_if<Sm90BwdTile>();
  const bool launches = tile != nullptr && r.args.seqlen_k > 0 && r.args.batch > 0 && params.dq_accum != nullptr;
  params.dq_zeroed_in_kernel = launches && tile->persistent ? persistent_dq_zeroing() : SIGJIT_DQ_ZEROED_BEFORE;
  if (launches && tile->dq_writer && !tile->ordered_dq && convert_overlaps_fused_kernel()) {
    params.dq_reduced = tile_counter(r, params) + (kTileCounterBytes + per_sequence_counter_bytes(r)) / sizeof(int);
    params.dq_reduced_target = static_cast<int>(sched::bwd_tiles(r.args.seqlen_k, tile->block_k(), r.args.heads_kv, 1));
  }
  return params;
}

}  // namespace

void enqueue_fused_backward(const detail::Resolved& r, const SigjitBwdParams& params, const detail::LoadedKernel& fused,
                            const TileConfig& fused_config, const detail::LoadedKernel& convert, int sm_count, CUstream stream) {
  const SigjitBwdParams p = with_fused_passes(r, with_padded_dq_zeroing(r, params, fused_config), fused_config);
  const std::size_t bytes = dq_workspace_bytes(r);
  const Sm90BwdTile* tile = fused_config.get_if<Sm90BwdTile>();
  const bool counters = tile != nullptr && (tile->persistent || p.dq_reduced != nullptr);
  zero_dq_workspace(r, p, convert, bytes, counters ? fused_counter_bytes(r) : 0, stream);
  launch(r, Direction::backward_fused, &p, fused, fused_config, sm_count, stream);
  if (bytes > 0) launch(r, Direction::backward_dq_convert, &p, convert, dq_convert_config(), 0, stream);
}

void enqueue_ordered_backward(const detail::Resolved& r, const SigjitBwdParams& params, const detail::LoadedKernel& fused,
                              const TileConfig& fused_config, const detail::LoadedKernel& convert, CUstream stream) {
  // No query rows: no dQ and no counters, but the fused kernel still writes dK and dV (zeros).
  const SigjitBwdParams p = with_padded_dq_zeroing(r, params, fused_config);
  const std::size_t values = dq_workspace_bytes(r), counters = dq_counters(r).bytes;
  if (values > 0) zero_dq_workspace(r, p, convert, values, 0, stream);
  if (counters > 0) {
    SIGJIT_CHECK_CU(detail::driver().cuMemsetD8Async(reinterpret_cast<CUdeviceptr>(p.dq_accum) + values, 0, counters, stream));
  }
  launch(r, Direction::backward_fused, &p, fused, fused_config, 0, stream, /*ordered_workspace=*/true);
  if (values > 0) launch(r, Direction::backward_dq_convert, &p, convert, dq_convert_config(), 0, stream);
}

}  // namespace sigjit::kernels
