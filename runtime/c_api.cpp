// C API: translates the flat struct to AttentionArgs and every exception to a status code plus
// a thread-local message. No exception crosses the C boundary.
#include <sigjit/sigjit.h>
#include <sigjit/sigjit.hpp>

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>

namespace {

thread_local std::string g_last_error;

// sizeof(sigjit_attention_args) before causal_align was appended: the fields up to and including
// `sigmoid`, rounded up to the struct's alignment as the compiler rounds sizeof.
constexpr std::size_t kArgsSizeV1 = (offsetof(sigjit_attention_args, causal_align) + alignof(sigjit_attention_args) - 1) /
                                    alignof(sigjit_attention_args) * alignof(sigjit_attention_args);
// sizeof(sigjit_attention_args) before the FP8 descale factors were appended: up to reserved0.
constexpr std::size_t kArgsSizeV2 = offsetof(sigjit_attention_args, q_descale);
static_assert(kArgsSizeV1 < kArgsSizeV2 && kArgsSizeV2 < sizeof(sigjit_attention_args),
              "struct_size must tell the three versions of sigjit_attention_args apart");

sigjit::Strides to_cpp(const sigjit_strides& s) { return {s.batch, s.token, s.head}; }

// A C enum field read as the int the caller stored: loading an out-of-range value through the
// enum type is undefined in C++ (UBSan flags it). The scoped C++ enums hold any int, and
// validation then names the field and its allowed values.
template <class CEnum>
std::int32_t raw_enum(const CEnum& field) {
  static_assert(sizeof(CEnum) == sizeof(std::int32_t), "sigjit's C enums are int-sized");
  std::int32_t v;
  std::memcpy(&v, &field, sizeof v);
  return v;
}

sigjit::AttentionArgs to_cpp(const sigjit_attention_args& c) {
  sigjit::AttentionArgs a;
  a.dtype = static_cast<sigjit::DType>(raw_enum(c.dtype));
  a.layout = static_cast<sigjit::Layout>(raw_enum(c.layout));
  a.batch = c.batch, a.seqlen_q = c.seqlen_q, a.seqlen_k = c.seqlen_k, a.total_q = c.total_q, a.total_k = c.total_k;
  a.heads_q = c.heads_q, a.heads_kv = c.heads_kv, a.head_dim = c.head_dim;
  a.q = c.q, a.k = c.k, a.v = c.v, a.o = c.o;
  a.q_strides = to_cpp(c.q_strides), a.k_strides = to_cpp(c.k_strides), a.v_strides = to_cpp(c.v_strides), a.o_strides = to_cpp(c.o_strides);
  a.seq_lens_q = c.seq_lens_q, a.seq_lens_k = c.seq_lens_k, a.cu_seqlens_q = c.cu_seqlens_q, a.cu_seqlens_k = c.cu_seqlens_k;
  a.host_seq_lens_q = c.host_seq_lens_q, a.host_seq_lens_k = c.host_seq_lens_k;
  a.host_cu_seqlens_q = c.host_cu_seqlens_q, a.host_cu_seqlens_k = c.host_cu_seqlens_k;
  a.validate_lengths = c.validate_lengths != 0;
  a.causal = c.causal != 0;
  if (c.has_scale) a.scale = c.scale;
  a.bias_mode = static_cast<sigjit::BiasMode>(raw_enum(c.bias_mode));
  a.bias = c.bias;
  a.score_bias = c.score_bias;
  a.score_bias_stride = c.score_bias_stride;
  a.sigmoid = static_cast<sigjit::SigmoidMode>(raw_enum(c.sigmoid));
  a.causal_align = static_cast<sigjit::CausalAlign>(raw_enum(c.causal_align));
  a.q_descale = c.q_descale, a.k_descale = c.k_descale, a.v_descale = c.v_descale;
  a.descale_stride_batch = c.descale_stride_batch, a.descale_stride_head = c.descale_stride_head;
  return a;
}

// The caller's struct as this version's: a previous-version struct (struct_size kArgsSizeV1 or
// kArgsSizeV2) is read only as far as it reaches, the rest keeps sigjit_attention_args_default()'s
// values (causal_align bottom-right, no descale factors). Empty message when the size is one of the three.
std::string read_args(const sigjit_attention_args* in, sigjit_attention_args& out) {
  const auto size = static_cast<std::size_t>(in->struct_size);
  if (in->struct_size <= 0 || (size != sizeof(sigjit_attention_args) && size != kArgsSizeV2 && size != kArgsSizeV1)) {
    return "args.struct_size=" + std::to_string(in->struct_size) + ": does not match this library's sigjit_attention_args (" +
           std::to_string(sizeof(sigjit_attention_args)) + " bytes; " + std::to_string(kArgsSizeV2) + " before the FP8 descale factors, " +
           std::to_string(kArgsSizeV1) + " before causal_align); rebuild against the installed sigjit.h";
  }
  out = sigjit_attention_args_default();
  std::memcpy(&out, in, size == kArgsSizeV1 ? offsetof(sigjit_attention_args, causal_align) : std::min(size, sizeof(out)));
  out.struct_size = sizeof(sigjit_attention_args);
  if (size != kArgsSizeV1 && out.reserved0 != 0) return "args.reserved0: must be 0 (sigjit_attention_args_default() sets it)";
  return {};
}

template <class F>
sigjit_status guarded(const sigjit_attention_args* args, F&& body) {
  try {
    if (args == nullptr) {
      g_last_error = "args: null pointer; pass a sigjit_attention_args from sigjit_attention_args_default()";
      return SIGJIT_ERROR_INVALID_ARGUMENT;
    }
    sigjit_attention_args current;
    if (std::string why = read_args(args, current); !why.empty()) {
      g_last_error = std::move(why);
      return SIGJIT_ERROR_INVALID_ARGUMENT;
    }
    body(to_cpp(current));
    return SIGJIT_OK;
  } catch (const sigjit::Error& e) {
    g_last_error = e.what();
    switch (e.kind()) {
      case sigjit::ErrorKind::cuda: return SIGJIT_ERROR_CUDA;
      case sigjit::ErrorKind::compile: return SIGJIT_ERROR_COMPILE;
      case sigjit::ErrorKind::invalid_argument: break;
    }
    return SIGJIT_ERROR_INVALID_ARGUMENT;
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
    return SIGJIT_ERROR_INTERNAL;
  } catch (...) {
    g_last_error = "internal error: unknown exception";
    return SIGJIT_ERROR_INTERNAL;
  }
}

}  // namespace

extern "C" {

sigjit_attention_args sigjit_attention_args_default(void) {
  sigjit_attention_args a{};
  a.struct_size = sizeof(sigjit_attention_args);
  a.dtype = SIGJIT_BF16;
  a.layout = SIGJIT_DENSE;
  a.validate_lengths = 1;
  a.bias_mode = SIGJIT_BIAS_LOG_N;
  a.sigmoid = SIGJIT_SIGMOID_FAST;
  a.causal_align = SIGJIT_CAUSAL_BOTTOM_RIGHT;
  return a;
}

sigjit_status sigjit_validate(const sigjit_attention_args* args) {
  return guarded(args, [](const sigjit::AttentionArgs& a) { sigjit::validate(a); });
}

sigjit_forward_options sigjit_forward_options_default(void) {
  sigjit_forward_options o{};
  o.struct_size = sizeof(sigjit_forward_options);
  return o;
}

namespace {

// The C options as sigjit::ForwardOptions; false (with g_last_error set) for a struct of another
// version. (The field fp8 was reserved0, which had to be 0: every older caller means fp8 = 0.)
bool forward_options_from(const sigjit_forward_options* options, sigjit::ForwardOptions& out) {
  if (options == nullptr) return true;
  if (options->struct_size != static_cast<int32_t>(sizeof(sigjit_forward_options))) {
    g_last_error =
        "options.struct_size: does not match this library's sigjit_forward_options; initialise it with "
        "sigjit_forward_options_default() and rebuild against the installed sigjit.h";
    return false;
  }
  out.fp8 = options->fp8 != 0;
  out.workspace = options->workspace;
  out.workspace_bytes = options->workspace_bytes;
  return true;
}

}  // namespace

sigjit_status sigjit_forward_ex(const sigjit_attention_args* args, const sigjit_forward_options* options, struct CUstream_st* stream) {
  sigjit::ForwardOptions o;
  if (!forward_options_from(options, o)) return SIGJIT_ERROR_INVALID_ARGUMENT;
  return guarded(args, [&o, stream](const sigjit::AttentionArgs& a) { sigjit::forward(a, stream, o); });
}

sigjit_status sigjit_forward(const sigjit_attention_args* args, struct CUstream_st* stream) {
  return sigjit_forward_ex(args, nullptr, stream);
}

sigjit_status sigjit_forward_workspace_size(const sigjit_attention_args* args, size_t* bytes) {
  if (bytes == nullptr) {
    g_last_error = "bytes: null pointer; pass the address of a size_t to receive the workspace size";
    return SIGJIT_ERROR_INVALID_ARGUMENT;
  }
  *bytes = 0;
  return guarded(args, [bytes](const sigjit::AttentionArgs& a) { *bytes = sigjit::forward_workspace_size(a); });
}

sigjit_status sigjit_forward_workspace_size_ex(const sigjit_attention_args* args, const sigjit_forward_options* options, size_t* bytes) {
  if (bytes == nullptr) {
    g_last_error = "bytes: null pointer; pass the address of a size_t to receive the workspace size";
    return SIGJIT_ERROR_INVALID_ARGUMENT;
  }
  *bytes = 0;
  sigjit::ForwardOptions o;
  if (!forward_options_from(options, o)) return SIGJIT_ERROR_INVALID_ARGUMENT;
  return guarded(args, [bytes, &o](const sigjit::AttentionArgs& a) { *bytes = sigjit::forward_workspace_size(a, o); });
}

sigjit_backward_options sigjit_backward_options_default(void) {
  sigjit_backward_options o{};
  o.struct_size = sizeof(sigjit_backward_options);
  return o;
}

sigjit_status sigjit_backward_ex(const sigjit_attention_args* args, const sigjit_gradients* grads, const sigjit_backward_options* options,
                                 struct CUstream_st* stream) {
  if (grads == nullptr) {
    g_last_error = "grads: null pointer; pass a sigjit_gradients with dout, dq, dk and dv";
    return SIGJIT_ERROR_INVALID_ARGUMENT;
  }
  if (options != nullptr && options->struct_size != static_cast<int32_t>(sizeof(sigjit_backward_options))) {
    g_last_error = "options.struct_size: does not match this library's sigjit_backward_options; initialise it with "
                   "sigjit_backward_options_default() and rebuild against the installed sigjit.h";
    return SIGJIT_ERROR_INVALID_ARGUMENT;
  }
  return guarded(args, [grads, options, stream](const sigjit::AttentionArgs& a) {
    sigjit::Gradients g;
    g.dout = grads->dout, g.dq = grads->dq, g.dk = grads->dk, g.dv = grads->dv;
    g.dout_strides = to_cpp(grads->dout_strides), g.dq_strides = to_cpp(grads->dq_strides);
    g.dk_strides = to_cpp(grads->dk_strides), g.dv_strides = to_cpp(grads->dv_strides);
    sigjit::BackwardOptions o;
    if (options != nullptr) {
      o.deterministic = options->deterministic != 0;
      o.workspace = options->workspace;
      o.workspace_bytes = options->workspace_bytes;
    }
    sigjit::backward(a, g, stream, o);
  });
}

sigjit_status sigjit_backward(const sigjit_attention_args* args, const sigjit_gradients* grads, struct CUstream_st* stream) {
  return sigjit_backward_ex(args, grads, nullptr, stream);
}

sigjit_status sigjit_backward_workspace_size(const sigjit_attention_args* args, int32_t deterministic, size_t* bytes) {
  if (bytes == nullptr) {
    g_last_error = "bytes: null pointer; pass the address of a size_t to receive the workspace size";
    return SIGJIT_ERROR_INVALID_ARGUMENT;
  }
  *bytes = 0;
  return guarded(args, [deterministic, bytes](const sigjit::AttentionArgs& a) { *bytes = sigjit::backward_workspace_size(a, deterministic != 0); });
}

sigjit_prepare_options sigjit_prepare_options_default(void) {
  sigjit_prepare_options o{};
  o.struct_size = sizeof(sigjit_prepare_options);
  o.forward = 1;
  return o;
}

// sizeof(sigjit_prepare_options) before fp8 was appended.
constexpr std::int32_t kPrepareOptionsSizeV1 = offsetof(sigjit_prepare_options, fp8);

sigjit_status sigjit_prepare(const sigjit_attention_args* args, const sigjit_prepare_options* options) {
  const std::int32_t size = options != nullptr ? options->struct_size : static_cast<std::int32_t>(sizeof(sigjit_prepare_options));
  if (size != static_cast<std::int32_t>(sizeof(sigjit_prepare_options)) && size != kPrepareOptionsSizeV1) {
    g_last_error = "options.struct_size: does not match this library's sigjit_prepare_options; initialise it with "
                   "sigjit_prepare_options_default() and rebuild against the installed sigjit.h";
    return SIGJIT_ERROR_INVALID_ARGUMENT;
  }
  // Field by field: an older caller's struct ends before fp8, which must not be read.
  sigjit::PrepareOptions p;
  if (options != nullptr) {
    p.forward = options->forward != 0, p.backward = options->backward != 0, p.deterministic = options->deterministic != 0;
    p.fp8 = size > kPrepareOptionsSizeV1 && options->fp8 != 0;
  }
  return guarded(args, [p](const sigjit::AttentionArgs& a) { sigjit::prepare(a, p); });
}

sigjit_status sigjit_release_backward_workspaces(void) {
  const sigjit_attention_args unused = sigjit_attention_args_default();
  return guarded(&unused, [](const sigjit::AttentionArgs&) { sigjit::release_backward_workspaces(); });
}

const char* sigjit_last_error(void) { return g_last_error.c_str(); }

const char* sigjit_version(void) {
  static const std::string v = [] {
    try {
      return sigjit::version();
    } catch (...) {
      return std::string("sigjit (NVRTC unavailable)");
    }
  }();
  return v.c_str();
}

}  // extern "C"
