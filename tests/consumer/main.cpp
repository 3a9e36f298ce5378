// Uses only the public headers of an installed sigjit and libsigjit.so (C++17): validates a call
// with an unsupported head_dim and checks that the sigjit::Error thrown inside the library is
// caught here as one (its typeinfo is exported), as an invalid argument naming head_dim. It also
// takes the address of every free function sigjit.hpp declares, so that one the library does not
// export (cmake/sigjit_c_api.map) fails this program's link.
#include <sigjit/sigjit.h>
#include <sigjit/sigjit.hpp>

#include <cstdio>
#include <string>

// Every free function of sigjit.hpp, each overload by its own type: the link needs all of them.
void (*const kForward)(const sigjit::AttentionArgs&, sigjit::Stream) = sigjit::forward;
void (*const kForwardWithOptions)(const sigjit::AttentionArgs&, sigjit::Stream, const sigjit::ForwardOptions&) = sigjit::forward;
std::size_t (*const kForwardWorkspace)(const sigjit::AttentionArgs&) = sigjit::forward_workspace_size;
std::size_t (*const kForwardWorkspaceWithOptions)(const sigjit::AttentionArgs&,
                                                  const sigjit::ForwardOptions&) = sigjit::forward_workspace_size;
const void* const kCppApi[] = {
    reinterpret_cast<const void*>(&sigjit::validate),
    reinterpret_cast<const void*>(kForward),
    reinterpret_cast<const void*>(kForwardWithOptions),
    reinterpret_cast<const void*>(kForwardWorkspace),
    reinterpret_cast<const void*>(kForwardWorkspaceWithOptions),
    reinterpret_cast<const void*>(&sigjit::backward),
    reinterpret_cast<const void*>(&sigjit::backward_workspace_size),
    reinterpret_cast<const void*>(&sigjit::prepare),
    reinterpret_cast<const void*>(&sigjit::release_backward_workspaces),
    reinterpret_cast<const void*>(&sigjit::version),
};

int main() {
  for (const void* f : kCppApi) {
    if (f == nullptr) {
      std::fprintf(stderr, "consumer: FAIL: a sigjit.hpp function resolved to null\n");
      return 1;
    }
  }
  alignas(16) static unsigned char buffer[16];
  sigjit::AttentionArgs args;
  args.batch = 1;
  args.seqlen_q = args.seqlen_k = 1;
  args.heads_q = 1;
  args.head_dim = 100;  // not one of 32, 64, 96, 128, 256
  args.q = args.k = args.v = buffer;
  args.o = buffer;
  try {
    sigjit::validate(args);
    std::fprintf(stderr, "consumer: FAIL: validate accepted head_dim=100\n");
    return 1;
  } catch (const sigjit::Error& e) {
    const std::string what = e.what();
    if (e.kind() != sigjit::ErrorKind::invalid_argument || what.find("head_dim") == std::string::npos) {
      std::fprintf(stderr, "consumer: FAIL: unexpected error (kind %d): %s\n", static_cast<int>(e.kind()), e.what());
      return 1;
    }
    std::printf("consumer: ok: sigjit::validate rejected the call: %s\n", e.what());
  }

  // The C API reports the same failure as a status code.
  sigjit_attention_args c = sigjit_attention_args_default();
  c.batch = c.seqlen_q = c.seqlen_k = c.heads_q = 1;
  c.head_dim = 100;
  c.q = c.k = c.v = buffer;
  c.o = buffer;
  if (sigjit_validate(&c) != SIGJIT_ERROR_INVALID_ARGUMENT || std::string(sigjit_last_error()).find("head_dim") == std::string::npos) {
    std::fprintf(stderr, "consumer: FAIL: sigjit_validate: %s\n", sigjit_last_error());
    return 1;
  }
  std::printf("consumer: ok: sigjit_validate returned SIGJIT_ERROR_INVALID_ARGUMENT\n");

  const std::string version = sigjit::version();
  if (version.rfind("sigjit ", 0) != 0) {
    std::fprintf(stderr, "consumer: FAIL: sigjit::version() = %s\n", version.c_str());
    return 1;
  }
  std::printf("consumer: ok: %s\n", version.c_str());
  return 0;
}
