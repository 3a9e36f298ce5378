// sigjit: JIT-compiled sigmoid attention for NVIDIA GPUs (C++ API).
//
//   O[b,i,h,:] = sum_j sigmoid(scale * <Q[b,i,h,:], K[b,j,g(h),:]> + bias_b + s[b,j]) * V[b,j,g(h),:]
//
// over the valid keys j of sequence b (when causal, j <= i + Lk - Lq bottom-right aligned, or
// j <= i top-left aligned: AttentionArgs::causal_align), accumulated in fp32.
// Kernels are generated per problem, compiled with NVRTC on first use and cached in-process;
// launches go to the caller's stream in the context current on the calling thread (the
// device's primary context if none is), so sigjit interoperates with the CUDA runtime and
// PyTorch. Every entry point validates its arguments first and throws sigjit::Error naming the
// offending argument; nothing is launched after a validation failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

struct CUstream_st;

namespace sigjit {

using Stream = CUstream_st*;  // a CUstream or cudaStream_t; nullptr is the legacy default stream

enum class ErrorKind {
  invalid_argument,  // the caller's arguments (the message names which)
  cuda,              // the CUDA driver: no device, a failed allocation, copy or launch
  compile,           // NVRTC rejected a generated kernel (the message holds its log)
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::invalid_argument) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// fp8_e4m3: Q, K and V in float8_e4m3fn with descale factors (AttentionArgs::q_descale...), O in
// bf16; forward only, Hopper (sm_90a), head dims 64 and 128: for inference.
enum class DType { bf16, fp16, fp8_e4m3 };
enum class Layout {
  dense,   // [B, L, H, D], arbitrary batch/token/head strides, last dim contiguous
  padded,  // dense plus seq_lens_q/seq_lens_k [B] (trailing padding); padded O rows are zeroed
  varlen,  // packed [total_tokens, H, D] plus cu_seqlens_q/cu_seqlens_k [B + 1]
};
enum class BiasMode {
  log_n,   // bias_b = -log(number of valid keys of sequence b): the default
  scalar,  // bias_b = AttentionArgs::bias for every sequence
};
// Where the causal mask's diagonal sits when a sequence's valid lengths differ (len_q != len_k);
// both rules give the ordinary lower triangle when they are equal.
enum class CausalAlign {
  bottom_right,  // query i sees keys j <= i + len_k - len_q (FlashAttention's rule): the default
  top_left,      // query i sees keys j <= i (and j < len_k) whatever the lengths (TritonSigmoid's rule)
};
enum class SigmoidMode {
  fast,   // 0.5 + 0.5 * tanh.approx(x / 2): max rel. error 9e-5 on [-5, 0], 9e-3 on [-10, -7], 0 below ~-15
  exact,  // 1 / (1 + ex2.approx(-x log2 e)): max rel. error below 2e-6 everywhere
};

// Element strides of a [B, L, H, D] tensor (varlen: batch unused, token = row of the packed
// buffer). Zero strides mean "contiguous for the given shape".
struct Strides {
  std::int64_t batch = 0;
  std::int64_t token = 0;
  std::int64_t head = 0;
};

struct AttentionArgs {
  DType dtype = DType::bf16;
  Layout layout = Layout::dense;
  int batch = 0;
  int seqlen_q = 0;  // dense/padded: buffer length; varlen: max_seqlen_q over the batch
  int seqlen_k = 0;  // dense/padded: buffer length; varlen: max_seqlen_k over the batch
  int total_q = 0;   // varlen only: rows of the packed Q/O buffers
  int total_k = 0;   // varlen only: rows of the packed K/V buffers
  int heads_q = 0;
  int heads_kv = 0;  // 0: same as heads_q. heads_q must be a multiple (GQA/MQA)
  int head_dim = 0;  // 32, 64, 96, 128 or 256

  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  Strides q_strides, k_strides, v_strides, o_strides;

  const std::int32_t* seq_lens_q = nullptr;   // padded: device [B]
  const std::int32_t* seq_lens_k = nullptr;   // padded: device [B]
  const std::int32_t* cu_seqlens_q = nullptr; // varlen: device [B + 1]
  const std::int32_t* cu_seqlens_k = nullptr; // varlen: device [B + 1]
  // Optional host copies of the four arrays above. When given they are validated without
  // touching the device; otherwise validate_lengths copies the device arrays (one stream synchronisation per call).
  const std::int32_t* host_seq_lens_q = nullptr;
  const std::int32_t* host_seq_lens_k = nullptr;
  const std::int32_t* host_cu_seqlens_q = nullptr;
  const std::int32_t* host_cu_seqlens_k = nullptr;
  // Check lengths against the buffers before launching. Kernels clamp lengths to the buffers
  // regardless, so an unchecked bad length can give wrong rows but never an out-of-bounds access.
  bool validate_lengths = true;

  bool causal = false;  // mask keys right of the diagonal; rows that see no key give zeros
  // The diagonal of a causal mask per sequence (len_q, len_k: its valid lengths): bottom_right,
  // query i sees keys j <= i + len_k - len_q; top_left, j <= i. Ignored unless causal.
  CausalAlign causal_align = CausalAlign::bottom_right;
  std::optional<float> scale;  // default 1 / sqrt(head_dim)
  BiasMode bias_mode = BiasMode::log_n;
  float bias = 0.0f;  // used when bias_mode == scalar
  const float* score_bias = nullptr;  // optional fp32 per-key bias s[B, seqlen_k] (varlen: [total_k])
  std::int64_t score_bias_stride = 0; // batch stride of score_bias in elements; 0: seqlen_k
  SigmoidMode sigmoid = SigmoidMode::fast;

  // dtype fp8_e4m3 only (FlashAttention-3's convention): Q, K and V hold e4m3 values that the
  // descale factors map back, S = q_descale * k_descale * (Q K^T) and O = v_descale * (P V). Each
  // is an optional device float array read at [b * descale_stride_batch + h_kv * descale_stride_head]
  // (h_kv: the key/value head; FlashAttention-3's [batch, heads_kv] tensors: strides heads_kv and 1;
  // one factor per tensor: both 0, the default). Null: 1. O is bf16.
  const float* q_descale = nullptr;
  const float* k_descale = nullptr;
  const float* v_descale = nullptr;
  std::int64_t descale_stride_batch = 0;
  std::int64_t descale_stride_head = 0;
};

// Checks every argument that can be checked without the device (and host length copies when
// given); throws Error on the first problem.
void validate(const AttentionArgs& args);

// Computes O (padded rows are zeros, and so are varlen rows past cu_seqlens_q[batch]).
// Asynchronous with respect to the host, except that a first call per kernel compiles it (about
// a second) and validate_lengths without host copies syncs the stream.
void forward(const AttentionArgs& args, Stream stream);

// What forward() may use besides the tensors.
struct ForwardOptions {
  // The FP8 forward's workspace (V transposed to e4m3 V^T, and with fp8 below the quantized
  // copies, written and read within the call): at least forward_workspace_size(args, options)
  // bytes, 16-byte aligned, device memory of the current context, not used by anything else until
  // the call's work on its stream has finished. Null: sigjit keeps one per (context, stream), as
  // for the backward; pass one to keep allocations out of a CUDA graph capture. 16-bit forwards
  // without fp8 need none and ignore it.
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  // bf16 Q, K and V through the FP8 forward (Hopper): quantized on the fly to e4m3 copies in the
  // workspace, one descale factor per (sequence, key/value head) = the largest magnitude of its
  // valid rows / 448 (a query head shares its GQA group's factor), then the FP8 forward on them;
  // O stays bf16. The arguments are a bf16 call's, with no descale factors. Costs two passes over
  // the inputs before the forward; relative error as bench/RESULTS-fp8.md states for the FP8 path.
  bool fp8 = false;
};

// Bytes of workspace forward(args) needs: the FP8 forward's V^T (heads_kv x head_dim x the keys
// rounded up per sequence, one byte each), 0 for 16-bit dtypes. Validates the arguments.
std::size_t forward_workspace_size(const AttentionArgs& args);
// The same for forward(args, stream, options): with options.fp8 also the e4m3 copies of Q, K and
// V (one byte an element) and the factors.
std::size_t forward_workspace_size(const AttentionArgs& args, const ForwardOptions& options);

void forward(const AttentionArgs& args, Stream stream, const ForwardOptions& options);

// Gradients of the forward described by AttentionArgs (whose `o` is not read and may be null).
// dO is laid out like O, dQ like Q, dK and dV like K and V, each with its own strides (zero:
// contiguous). The score bias is not trainable: it gets no gradient.
struct Gradients {
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  Strides dout_strides, dq_strides, dk_strides, dv_strides;
};

// How backward() runs. The default is the fast path: one kernel over key tiles computes dK and
// dV and adds dQ into an fp32 workspace with atomics, then a small kernel converts the
// workspace to dQ. dQ then differs from run to run in its last bits (the order of the adds
// varies); dK and dV do not.
struct BackwardOptions {
  // Bitwise identical gradients run to run. On Hopper at head dims 64 and 128: the fused kernel
  // with its key blocks adding into each dQ row block in a fixed order (counters in the
  // workspace), then the convert; 1.04-1.18x the default's time from L 4096
  // (bench/PROFILE-backward.md). Elsewhere: two kernels without atomics or workspace (one over
  // key tiles for dK/dV, one over query tiles for dQ), which compute S and dP twice (7 GEMMs per
  // score instead of 5).
  bool deterministic = false;
  // The fp32 dQ workspace: at least backward_workspace_size(args, deterministic) bytes, 16-byte
  // aligned, device memory of the current context, not used by anything else until the call's
  // work on its stream has finished. It is zeroed on the stream by every call. Null: sigjit
  // keeps one per (context, stream) itself, grown when too small and reused, never freed per call
  // (the driver frees it with the context); pass one to keep allocations out of a CUDA graph
  // capture. Deterministic mode uses it on Hopper at head dims 64 and 128 (the ordered dQ
  // reduction: values and counters); the two-kernel pair elsewhere ignores it.
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

// Bytes of dQ workspace a call needs for these arguments: 4 * head_dim * heads_q * (batch *
// seqlen_q, or total_q for varlen), plus the Hopper fused kernel's counters, 16 + 2 * (4 * batch
// rounded up to a multiple of 16) (0 for an empty batch); deterministic, the values plus 4 bytes per
// (sequence, query head, 64 buffer rows) for the ordered reduction's counters at head dims 64 and
// 128, else 0. Validates the arguments.
std::size_t backward_workspace_size(const AttentionArgs& args, bool deterministic = false);

// Computes dQ, dK and dV (dK/dV summed over the query heads of each GQA group; padded rows and
// keys get exactly zero, and so do varlen rows past cu_seqlens_q[batch] / cu_seqlens_k[batch]).
void backward(const AttentionArgs& args, const Gradients& grads, Stream stream, const BackwardOptions& options = {});

// What prepare() loads.
struct PrepareOptions {
  bool forward = true;         // the kernel forward(args) launches
  bool backward = false;       // the kernels backward(args, grads, stream, {deterministic}) launches,
  bool deterministic = false;  // for gradients laid out like the tensors they belong to (dO like O)
  bool fp8 = false;            // with forward: the kernels forward(args, stream, {.fp8 = true}) launches
};

// Loads every kernel that forward() (and, when asked, backward()) would launch for these
// arguments, from the in-process table, the kernel cache, or NVRTC, without launching anything or
// reading the tensors (only their pointers' alignment and strides, which pick the kernel). After
// it, a call with arguments of the same shape, layout and options compiles and loads nothing:
// call it before capturing a CUDA graph, or to take the first call's compile off the critical
// path. Lengths are not checked (no stream synchronisation). Validates like forward().
void prepare(const AttentionArgs& args, const PrepareOptions& options = {});

// Frees the workspaces backward() allocated for the current context (after synchronising the
// context); the next fast-path call allocates again. For memory pressure; never needed for
// correctness.
void release_backward_workspaces();

// Library and toolchain identification, e.g. for logs and cache keys.
std::string version();

}  // namespace sigjit
