/* sigjit C API: a flat, exception-free mirror of sigjit.hpp for FFI (ctypes, Rust, Julia...).
 * Every function returns SIGJIT_OK or an error code; sigjit_last_error() gives the message of
 * the last failure on the calling thread. */
#ifndef SIGJIT_SIGJIT_H
#define SIGJIT_SIGJIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

typedef enum { SIGJIT_OK = 0, SIGJIT_ERROR_INVALID_ARGUMENT = 1, SIGJIT_ERROR_CUDA = 2, SIGJIT_ERROR_COMPILE = 3, SIGJIT_ERROR_INTERNAL = 4 } sigjit_status;
/* SIGJIT_FP8_E4M3: Q, K, V float8_e4m3fn with descale factors, O bf16; forward only, Hopper. */
typedef enum { SIGJIT_BF16 = 0, SIGJIT_FP16 = 1, SIGJIT_FP8_E4M3 = 2 } sigjit_dtype;
typedef enum { SIGJIT_DENSE = 0, SIGJIT_PADDED = 1, SIGJIT_VARLEN = 2 } sigjit_layout;
typedef enum { SIGJIT_BIAS_LOG_N = 0, SIGJIT_BIAS_SCALAR = 1 } sigjit_bias_mode;
typedef enum { SIGJIT_SIGMOID_FAST = 0, SIGJIT_SIGMOID_EXACT = 1 } sigjit_sigmoid_mode;
/* Causal diagonal when a sequence's valid lengths differ: bottom-right, query i sees keys
 * j <= i + len_k - len_q (FlashAttention); top-left, j <= i (TritonSigmoid). */
typedef enum { SIGJIT_CAUSAL_BOTTOM_RIGHT = 0, SIGJIT_CAUSAL_TOP_LEFT = 1 } sigjit_causal_align;

typedef struct {
  int64_t batch, token, head; /* element strides; 0 = contiguous */
} sigjit_strides;

/* Field meanings as in sigjit::AttentionArgs. Initialise with sigjit_attention_args_default(). */
typedef struct {
  int32_t struct_size; /* sizeof(sigjit_attention_args), for ABI checks */
  sigjit_dtype dtype;
  sigjit_layout layout;
  int32_t batch, seqlen_q, seqlen_k, total_q, total_k, heads_q, heads_kv, head_dim;
  const void* q;
  const void* k;
  const void* v;
  void* o;
  sigjit_strides q_strides, k_strides, v_strides, o_strides;
  const int32_t* seq_lens_q;
  const int32_t* seq_lens_k;
  const int32_t* cu_seqlens_q;
  const int32_t* cu_seqlens_k;
  const int32_t* host_seq_lens_q;
  const int32_t* host_seq_lens_k;
  const int32_t* host_cu_seqlens_q;
  const int32_t* host_cu_seqlens_k;
  int32_t validate_lengths;
  int32_t causal;
  int32_t has_scale;
  float scale;
  sigjit_bias_mode bias_mode;
  float bias;
  const float* score_bias;
  int64_t score_bias_stride;
  sigjit_sigmoid_mode sigmoid;
  /* Added after the first release; a struct_size that ends before it (the previous
   * sizeof(sigjit_attention_args)) is accepted and means SIGJIT_CAUSAL_BOTTOM_RIGHT. */
  sigjit_causal_align causal_align; /* ignored unless causal */
  /* Must be 0. On LP64 the field above fits in what was the struct's tail padding, so without
   * this one struct_size could not tell the two versions apart. */
  int32_t reserved0;
  /* Added with SIGJIT_FP8_E4M3; a struct_size that ends before them (either earlier
   * sizeof(sigjit_attention_args)) is accepted and means no descale factors. Meanings as in
   * sigjit::AttentionArgs: device float arrays read at [b * descale_stride_batch + h_kv *
   * descale_stride_head], NULL = 1. */
  const float* q_descale;
  const float* k_descale;
  const float* v_descale;
  int64_t descale_stride_batch, descale_stride_head;
} sigjit_attention_args;

/* Gradients for sigjit_backward (field meanings as in sigjit::Gradients). */
typedef struct {
  const void* dout;
  void* dq;
  void* dk;
  void* dv;
  sigjit_strides dout_strides, dq_strides, dk_strides, dv_strides;
} sigjit_gradients;

/* Options of sigjit_backward_ex (field meanings as in sigjit::BackwardOptions). Initialise with
 * sigjit_backward_options_default(); fields may be added at the end in later versions, and
 * struct_size tells the library which version the caller was built against. */
typedef struct {
  int32_t struct_size;   /* sizeof(sigjit_backward_options), for ABI checks */
  int32_t deterministic; /* nonzero: bitwise identical gradients run to run (Hopper: the ordered dQ reduction) */
  void* workspace;       /* fp32 dQ workspace: NULL = managed by sigjit (one per context and stream), else 16-byte
                            aligned device memory of sigjit_backward_workspace_size() bytes or more */
  size_t workspace_bytes;
} sigjit_backward_options;

/* Options of sigjit_forward_ex (field meanings as in sigjit::ForwardOptions). Initialise with
 * sigjit_forward_options_default(); struct_size as in sigjit_backward_options. */
typedef struct {
  int32_t struct_size; /* sizeof(sigjit_forward_options), for ABI checks */
  int32_t fp8;         /* nonzero: bf16 q/k/v quantized on the fly to e4m3 for the FP8 forward (sigjit::ForwardOptions::fp8);
                          was reserved0, which had to be 0 */
  void* workspace;     /* the FP8 forward's V^T workspace (with fp8 also the quantized copies): NULL = managed by sigjit
                          (one per context and stream), else 16-byte aligned device memory of
                          sigjit_forward_workspace_size_ex() bytes or more */
  size_t workspace_bytes;
} sigjit_forward_options;

sigjit_attention_args sigjit_attention_args_default(void);
sigjit_backward_options sigjit_backward_options_default(void); /* fast path, sigjit-managed workspace */
sigjit_forward_options sigjit_forward_options_default(void);   /* sigjit-managed workspace */
sigjit_status sigjit_validate(const sigjit_attention_args* args);
/* sigjit_forward_ex with the default options. */
sigjit_status sigjit_forward(const sigjit_attention_args* args, struct CUstream_st* stream);
/* options: NULL means sigjit_forward_options_default(). */
sigjit_status sigjit_forward_ex(const sigjit_attention_args* args, const sigjit_forward_options* options, struct CUstream_st* stream);
/* *bytes = the workspace a forward with these args needs (as sigjit::forward_workspace_size: the
 * FP8 forward's V^T, 0 for 16-bit dtypes); validates args. */
sigjit_status sigjit_forward_workspace_size(const sigjit_attention_args* args, size_t* bytes);
/* The same for a call with these options (options.fp8: the quantized copies too); options: NULL
 * means sigjit_forward_options_default(). */
sigjit_status sigjit_forward_workspace_size_ex(const sigjit_attention_args* args, const sigjit_forward_options* options, size_t* bytes);
/* sigjit_backward_ex with the default options (the fast path, sigjit-managed workspace). */
sigjit_status sigjit_backward(const sigjit_attention_args* args, const sigjit_gradients* grads, struct CUstream_st* stream);
/* options: NULL means sigjit_backward_options_default(). */
sigjit_status sigjit_backward_ex(const sigjit_attention_args* args, const sigjit_gradients* grads, const sigjit_backward_options* options,
                                 struct CUstream_st* stream);
/* *bytes = the workspace size a call with these args and this deterministic flag needs (as
 * sigjit::backward_workspace_size: deterministic mode needs one on Hopper at head dims 64/128, else 0); validates args. */
sigjit_status sigjit_backward_workspace_size(const sigjit_attention_args* args, int32_t deterministic, size_t* bytes);
/* What sigjit_prepare loads (field meanings as in sigjit::PrepareOptions). Initialise with
 * sigjit_prepare_options_default() (forward only); struct_size as in sigjit_backward_options. */
typedef struct {
  int32_t struct_size;
  int32_t forward;       /* nonzero: the kernel sigjit_forward launches */
  int32_t backward;      /* nonzero: the kernels sigjit_backward_ex launches ... */
  int32_t deterministic; /* ... with this options.deterministic */
  /* Added with sigjit_forward_options.fp8; a struct_size that ends before it (the previous
   * sizeof(sigjit_prepare_options)) is accepted and means 0. */
  int32_t fp8; /* nonzero, with forward: the kernels sigjit_forward_ex launches with options.fp8 = 1 */
} sigjit_prepare_options;

sigjit_prepare_options sigjit_prepare_options_default(void);
/* Loads (cache or NVRTC) every kernel the calls named by options would launch for args, without
 * launching anything or reading the tensors: before capturing a CUDA graph. options: NULL means
 * sigjit_prepare_options_default(). */
sigjit_status sigjit_prepare(const sigjit_attention_args* args, const sigjit_prepare_options* options);
/* Frees the workspaces sigjit manages for the current context (synchronises it first). */
sigjit_status sigjit_release_backward_workspaces(void);
const char* sigjit_last_error(void);
const char* sigjit_version(void);

#ifdef __cplusplus
}
#endif
#endif
