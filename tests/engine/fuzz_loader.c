/* libFuzzer target: the whole model load path (protobuf unpack, IR, shape
 * inference, folding, fusion, compile) on arbitrary bytes, then one run when
 * the model is small. Tight limits keep each input cheap. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "osseg_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct osseg_engine_options o;
  osseg_engine_options_default(&o);
  o.threads = 1;
  o.max_model_bytes = 1 << 20;
  o.max_tensor_bytes = 16 << 20;
  o.input_size = 0;
  struct osseg_model *m = NULL;
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (osseg_model_load_buffer(&m, data, size, &o, &diag) == 0) {
    size_t ni = osseg_model_input_elems(m), no = osseg_model_output_elems(m);
    if (ni <= (1u << 20) && no <= (1u << 20)) {
      float *in = calloc(ni ? ni : 1, sizeof(float)), *out = malloc((no ? no : 1) * sizeof(float));
      if (in && out) osseg_model_run(m, in, out, NULL);
      free(in);
      free(out);
    }
    osseg_model_free(m);
  }
  return 0;
}
