/* Uses only the C API of an installed sigjit (sigjit.h, libsigjit.so): validates a call with an
   unsupported head_dim and checks the status code and sigjit_last_error(). */
#include <sigjit/sigjit.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  static unsigned char buffer[16];
  sigjit_attention_args args = sigjit_attention_args_default();
  args.batch = args.seqlen_q = args.seqlen_k = args.heads_q = 1;
  args.head_dim = 100; /* not one of 32, 64, 96, 128, 256 */
  args.q = args.k = args.v = buffer;
  args.o = buffer;
  const int status = sigjit_validate(&args);
  const char* message = sigjit_last_error();
  if (status != SIGJIT_ERROR_INVALID_ARGUMENT || message == NULL || strstr(message, "head_dim") == NULL) {
    fprintf(stderr, "consumer (C): FAIL: sigjit_validate returned %d: %s\n", status, message ? message : "(null)");
    return 1;
  }
  printf("consumer (C): ok: sigjit_validate returned SIGJIT_ERROR_INVALID_ARGUMENT: %s\n", message);
  if (strncmp(sigjit_version(), "sigjit ", 7) != 0) {
    fprintf(stderr, "consumer (C): FAIL: sigjit_version() = %s\n", sigjit_version());
    return 1;
  }
  printf("consumer (C): ok: %s\n", sigjit_version());
  return 0;
}
