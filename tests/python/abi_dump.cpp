// Prints the C API structs' layout as the C compiler sees it (sizeof, offsetof of every field),
// one "struct.field offset" line each, so tests/python/test_binding_cpu.py can compare the ctypes
// mirrors in python/sigjit/_lib.py against the header itself, not against a copy of it.
#include <sigjit/sigjit.h>

#include <cstddef>
#include <cstdio>

#define FIELD(S, F) std::printf(#S "." #F " %zu\n", offsetof(S, F))

int main() {
  std::printf("sigjit_strides.sizeof %zu\n", sizeof(sigjit_strides));
  FIELD(sigjit_strides, batch);
  FIELD(sigjit_strides, token);
  FIELD(sigjit_strides, head);

  std::printf("sigjit_attention_args.sizeof %zu\n", sizeof(sigjit_attention_args));
  FIELD(sigjit_attention_args, struct_size);
  FIELD(sigjit_attention_args, dtype);
  FIELD(sigjit_attention_args, layout);
  FIELD(sigjit_attention_args, batch);
  FIELD(sigjit_attention_args, seqlen_q);
  FIELD(sigjit_attention_args, seqlen_k);
  FIELD(sigjit_attention_args, total_q);
  FIELD(sigjit_attention_args, total_k);
  FIELD(sigjit_attention_args, heads_q);
  FIELD(sigjit_attention_args, heads_kv);
  FIELD(sigjit_attention_args, head_dim);
  FIELD(sigjit_attention_args, q);
  FIELD(sigjit_attention_args, k);
  FIELD(sigjit_attention_args, v);
  FIELD(sigjit_attention_args, o);
  FIELD(sigjit_attention_args, q_strides);
  FIELD(sigjit_attention_args, k_strides);
  FIELD(sigjit_attention_args, v_strides);
  FIELD(sigjit_attention_args, o_strides);
  FIELD(sigjit_attention_args, seq_lens_q);
  FIELD(sigjit_attention_args, seq_lens_k);
  FIELD(sigjit_attention_args, cu_seqlens_q);
  FIELD(sigjit_attention_args, cu_seqlens_k);
  FIELD(sigjit_attention_args, host_seq_lens_q);
  FIELD(sigjit_attention_args, host_seq_lens_k);
  FIELD(sigjit_attention_args, host_cu_seqlens_q);
  FIELD(sigjit_attention_args, host_cu_seqlens_k);
  FIELD(sigjit_attention_args, validate_lengths);
  FIELD(sigjit_attention_args, causal);
  FIELD(sigjit_attention_args, has_scale);
  FIELD(sigjit_attention_args, scale);
  FIELD(sigjit_attention_args, bias_mode);
  FIELD(sigjit_attention_args, bias);
  FIELD(sigjit_attention_args, score_bias);
  FIELD(sigjit_attention_args, score_bias_stride);
  FIELD(sigjit_attention_args, sigmoid);
  FIELD(sigjit_attention_args, causal_align);
  FIELD(sigjit_attention_args, reserved0);
  FIELD(sigjit_attention_args, q_descale);
  FIELD(sigjit_attention_args, k_descale);
  FIELD(sigjit_attention_args, v_descale);
  FIELD(sigjit_attention_args, descale_stride_batch);
  FIELD(sigjit_attention_args, descale_stride_head);

  std::printf("sigjit_gradients.sizeof %zu\n", sizeof(sigjit_gradients));
  FIELD(sigjit_gradients, dout);
  FIELD(sigjit_gradients, dq);
  FIELD(sigjit_gradients, dk);
  FIELD(sigjit_gradients, dv);
  FIELD(sigjit_gradients, dout_strides);
  FIELD(sigjit_gradients, dq_strides);
  FIELD(sigjit_gradients, dk_strides);
  FIELD(sigjit_gradients, dv_strides);

  std::printf("sigjit_backward_options.sizeof %zu\n", sizeof(sigjit_backward_options));
  FIELD(sigjit_backward_options, struct_size);
  FIELD(sigjit_backward_options, deterministic);
  FIELD(sigjit_backward_options, workspace);
  FIELD(sigjit_backward_options, workspace_bytes);
  std::printf("sigjit_forward_options.sizeof %zu\n", sizeof(sigjit_forward_options));
  FIELD(sigjit_forward_options, struct_size);
  FIELD(sigjit_forward_options, fp8);
  FIELD(sigjit_forward_options, workspace);
  FIELD(sigjit_forward_options, workspace_bytes);
  std::printf("sigjit_prepare_options.sizeof %zu\n", sizeof(sigjit_prepare_options));
  FIELD(sigjit_prepare_options, struct_size);
  FIELD(sigjit_prepare_options, forward);
  FIELD(sigjit_prepare_options, backward);
  FIELD(sigjit_prepare_options, deterministic);
  FIELD(sigjit_prepare_options, fp8);

  // Enum sizes: ctypes mirrors them as c_int.
  std::printf("enum.sizeof %zu\n", sizeof(sigjit_layout));
  return 0;
}
