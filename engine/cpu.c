/* What this CPU's oneDNN offers for bf16: the public query and the tag of
 * its native kernels' implementation names. */
#include "engine_internal.h"

int osseg_engine_bf16_native(const char **isa) {
  dnnl_cpu_isa_t i = dnnl_get_effective_cpu_isa();
  if (isa) {
    *isa = (i & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx ? "avx512_core_amx"
           : (i & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16 ? "avx512_core_bf16"
           : (i & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ? "avx512_core"
           : (i & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2 ? "avx2"
                                                            : "older";
  }
  /* avx512_core_amx contains the avx512_core_bf16 bits */
  return (i & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

const char *osseg__bf16_kernel_tag(void) {
  dnnl_cpu_isa_t i = dnnl_get_effective_cpu_isa();
  if ((i & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx) return "amx";
  if ((i & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16)
    return "avx512_core_bf16";
  return NULL;
}

int osseg__int8_native(void) {
  dnnl_cpu_isa_t i = dnnl_get_effective_cpu_isa();
  return (i & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
         (i & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
}

int osseg_engine_int8_native(void) { return osseg__int8_native(); }
