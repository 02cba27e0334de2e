/* osseg engine: ONNX CNN segmentation models on the CPU through oneDNN.
 *
 * Life cycle: osseg_model_load*() parses the ONNX file, translates it into
 * an own IR, infers shapes for the fixed input size, folds constants,
 * fuses, plans one activation arena and creates every oneDNN primitive.
 * After that osseg_model_run() only executes: no allocation per call.
 *
 * Threading: one inference executor per process. Every run, of any model
 * from any thread, is executed by one dedicated engine thread, started on
 * the first run and owning the OpenMP thread team oneDNN uses; before each
 * run it sets the team size to the model's `threads` option (0 = OpenMP's
 * default). Callers queue their run (first come, first served) and block
 * until it is done, so exactly one oneDNN graph runs at a time on one fixed
 * team of cores, whichever thread asks, while the callers' own work
 * (decoding, pre- and post-processing) proceeds on their threads. Models may
 * be shared by threads; loading, introspection and freeing happen on the
 * calling thread (a load runs oneDNN reorders and the Winograd weight
 * transform on that thread's own OpenMP team). Free a model only when no
 * run of it is queued or executing.
 *
 * Interruption: osseg_model_run_ctl() takes a cancel flag and a deadline.
 * They are checked before every step of the executed graph and inside the
 * engine's own long loops, so a run stops within about the longest single
 * oneDNN primitive of the model; a run still waiting in the queue leaves it
 * within ~5 ms. The model stays usable: the next run starts from scratch.
 *
 * Errors: functions return 0 or a negative OSSEG_E* code (osseg_base.h) and
 * write a human-readable message naming the node / op / attribute into
 * `diag` when it is non-NULL.
 */
#ifndef OSSEG_ENGINE_H
#define OSSEG_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"

#ifdef __cplusplus
extern "C" {
#endif

enum osseg_precision {
  OSSEG_PRECISION_FP32 = 0, /* default: matches PyTorch within 1e-4 relative */
  OSSEG_PRECISION_BF16 = 1, /* bf16 activations + weights with fp32
                               accumulation (AMX or AVX512_BF16), like
                               PyTorch's autocast; a few cheap nodes stay
                               fp32 (below) */
  OSSEG_PRECISION_BF16_MIXED = 2, /* bf16 for the low-resolution body only,
                                     fp32 from 1/8 of the output size up:
                                     closer to fp32, less bf16 speed-up */
  OSSEG_PRECISION_AUTO = 4, /* resolved at load to the fastest precision
                               that keeps its documented fidelity on this
                               CPU: int8 for a QDQ model where oneDNN has
                               VNNI or AMX int8 kernels, bf16 where it has
                               native bf16 (AMX or AVX512_BF16: measured
                               faster than fp32 for every model family on
                               both, see README), else fp32; the model's
                               stats report the precision chosen */
  OSSEG_PRECISION_INT8 = 3, /* quantized (QDQ) models only: convolutions
                               whose input and weights the file quantizes
                               run as int8 (u8/s8 x s8, int32 accumulation),
                               the rest as in fp32; other precisions run a
                               QDQ model's quantization as written, in float.
                               Needs int8 dot products (AVX512_VNNI,
                               AVX-VNNI, AMX; osseg_engine_int8_native):
                               without them oneDNN's sums saturate, and the
                               load is refused (OSSEG_EUNSUPPORTED) */
};                                /* input and output stay float32 */
/* What runs in fp32 under the bf16 modes, and why:
 *  - both: the input image and the nodes reading it (the stem conv: 3 input
 *    channels, ~1 % of the FLOPs). Rounding the image alone to bf16 flipped
 *    0.7 % of the UNet++ R18 @512 mask pixels.
 *  - both: global vectors ([N, C, 1, 1]): the squeeze-excitation path of
 *    EfficientNet (GlobalAveragePool, 1x1 convs, sigmoid) and the ASPP
 *    pooling branch. They are tiny, and an SE scale rounded to bf16 rescales
 *    every pixel of its channel by the same error; a bf16 map is multiplied
 *    by the fp32 vector directly.
 *  - bf16-mixed only: every CNN node (conv, upconv, resize, concat, pool,
 *    elementwise) whose output is at least 1/8 of the output's height and
 *    width (the option bf16_tail, in octaves, moves the cut-off). "Output" is the
 *    finest map the network computes: when the graph output is a Resize of
 *    the logits (DeepLabV3+ upsamples x4), the Resize's input.
 *  - both: the logits. The conv producing them reads bf16 and writes fp32
 *    (no extra cost), and a Resize of them to the output size (DeepLabV3+,
 *    SegFormer) runs in fp32.
 *  - transformer ops (SegFormer) run bf16 in both modes.
 * Mask (logit > 0) agreement with PyTorch fp32 on the random-weight
 * benchmark models (bench/ENGINE_RESULTS.md), next to PyTorch's own
 * torch.autocast("cpu", bfloat16) on the same weights:
 *                   autocast    bf16      bf16-mixed  (its FLOPs in fp32)
 *   UNet++ R18 @512   98.39 %   98.68 %    99.75 %        89 %
 *   UNet++ R50 @512   91.97 %   93.09 %       -           91 %
 *   UNet++ R50 @1024  91.67 %   91.78 %    99.29 %
 *   UNet effb0 @512   93.94 %   95.60 %    98.15 %        75 %
 *   DeepLabV3+ @512   82.34 %   85.42 %    99.996 %      100 %
 * These exports are harsh on purpose (many logits near 0); on trained
 * models (the demo UNet++ and SegFormer) bf16 and fp32 masks agree to a
 * mean Dice of 0.9995 and 0.9987. bf16 is the mode to use for speed on
 * CPUs with native bf16 (below); bf16-mixed buys accuracy with nearly all
 * of the bf16 speed-up, since the high-resolution levels hold most of a
 * UNet's FLOPs: it is for checking how much bf16 costs a model, not for
 * speed.
 * Speed: bf16 is faster than fp32 where the CPU has native bf16 (AMX or
 * AVX512_BF16). Measured with `osseg run-model --repeat 3` (medians, 2
 * threads) on an AMD EPYC Zen 4 (AVX512_BF16 and AVX512_VNNI, no AMX;
 * oneDNN ISA avx512_core_bf16), fp32 vs bf16:
 *   UNet++ ResNet-50  @1024   2867 ms   1905 ms
 *   UNet++ ResNet-18  @1024    888 ms    550 ms
 *   SegFormer-b0      @1024    224 ms    182 ms
 *   DeepLabV3+ R50    @512     171 ms     95 ms
 * Single convs there run ~2x fp32 in bf16; with AMX (Intel Sapphire
 * Rapids) 3-10x. Only without native bf16 (oneDNN's effective ISA below
 * avx512_core_bf16) is bf16 emulated, and slower than fp32. */

/* Whether this CPU runs bf16 natively: oneDNN's effective ISA is
 * avx512_core_bf16 or avx512_core_amx. Below that, bf16 is emulated and
 * slower than fp32; tools tell the user. Writes the ISA's name to *isa if
 * not NULL. */
int osseg_engine_bf16_native(const char **isa);
/* Whether oneDNN runs int8 convolutions on dot-product units here
 * (AVX512_VNNI, AVX-VNNI, AMX): where --precision auto picks int8 for a
 * QDQ model. */
int osseg_engine_int8_native(void);

/* Name "fp32"/"bf16"/"bf16-mixed"; parse returns 0 or OSSEG_EINVAL. */
const char *osseg_precision_name(enum osseg_precision p);
int osseg_precision_parse(const char *s, enum osseg_precision *out);

/* Calibration hook (osseg quantize): the values of chosen tensors during
 * every run. fn is called on the executor thread, after the tensor is
 * computed, with its values as float32 in logical (NCHW) row-major order:
 * n elements, valid only during the call. The observed tensors are named as
 * in the ONNX file, computed by the graph (not the input, not constants);
 * the fusions across them are not made, so observing changes speed, not
 * values. fp32 precision only. */
struct osseg_engine_observer {
  const char *const *tensors; /* count names, read during the load only */
  size_t count;               /* 0: none (at most 4096) */
  void (*fn)(void *ctx, size_t index, const float *data, size_t n);
  void *ctx;
};

struct osseg_engine_options {
  enum osseg_precision precision;
  int threads;              /* oneDNN/OpenMP threads; 0 = OpenMP's default
                               (all online cores, or OMP_NUM_THREADS) */
  int64_t input_size;       /* 0 = from the model; else fixes symbolic H and W
                               (and must equal fixed ones) */
  uint64_t max_model_bytes; /* reject larger files before reading them */
  uint64_t max_tensor_bytes;/* cap for any single tensor (constant or
                               activation), checked before allocating */
  /* The engine never prints and never reads the environment: what it has
   * to say goes to `log` (fn NULL = dropped), one line per message:
   *   OSSEG_LOG_WARN, at load: a step that oneDNN runs on reference code
   *     ("node 'x' (Conv) runs on oneDNN 'ref:any'") and, under bf16, a
   *     convolution not on AMX;
   *   OSSEG_LOG_INFO, per run, only with `profile`: the profile table.
   * The callback runs on the loading thread during a load and on the
   * engine's executor thread during runs (see "Threading" above). */
  struct osseg_log log;
  int profile;              /* 1: every run logs a per-step table at
                               OSSEG_LOG_INFO: a header line "step kind node
                               op wall_ms cpu_ms gflop gflop/s impl", one
                               line per step (wall and process CPU ms; the
                               stream is waited on after each step, so runs
                               get slower) and "total N steps wall W ms cpu
                               C ms" */
  int bf16_tail;            /* bf16-mixed only: nodes whose output is at
                               least the output's size / 2^bf16_tail stay
                               fp32; default OSSEG_BF16_TAIL_DEFAULT (1/8);
                               -1 = no cut-off (the same as bf16); 0..30 */
  /* A/B switches for measurements and tests (results stay within the
   * stated tolerances, only speed changes): */
  int no_winograd;          /* 1: no own Winograd convs, oneDNN direct */
  int no_dwconv;            /* 1: no own depthwise conv loop (ops/conv_depthwise.c) */
  int no_upconv;            /* 1: keep Resize + Concat + Conv in the UNet
                               decoder instead of the phase-conv rewrite */
  int int8_upconv_min;      /* int8: the phase-conv rewrite applies to a conv
                               whose upsampled input has at least this many
                               channels (0: OSSEG_INT8_UPCONV_MIN_DEFAULT;
                               -1: never; below -1: invalid). It sums the
                               file's int8 weights in fours and stores them
                               in 8 bits again, so it computes the QDQ model
                               up to one weight rounding (-1 or no_upconv:
                               exactly) */
  struct osseg_engine_observer observe; /* none by default */
};
#define OSSEG_BF16_TAIL_DEFAULT 3
#define OSSEG_INT8_UPCONV_MIN_DEFAULT 128

/* fp32, all cores, size from model, 2 GiB model, 4 GiB tensor caps, no log,
 * no profile, bf16_tail OSSEG_BF16_TAIL_DEFAULT, own kernels on. */
void osseg_engine_options_default(struct osseg_engine_options *o);

struct osseg_model; /* opaque; loaded once, then run many times */

/* Loads an ONNX model file. *out is set only on success. Every message in
 * diag starts with "PATH: ", so callers print it as it is. */
int osseg_model_load(struct osseg_model **out, const char *path,
                     const struct osseg_engine_options *o, struct osseg_diag *diag);
/* Same from memory; `data` is only read during the call. */
int osseg_model_load_buffer(struct osseg_model **out, const void *data, size_t size,
                            const struct osseg_engine_options *o, struct osseg_diag *diag);
void osseg_model_free(struct osseg_model *m); /* NULL allowed */

/* ---- Introspection (valid while the model lives; strings owned by it) ---- */

#define OSSEG_MAX_RANK 8
struct osseg_tensor_info {
  const char *name;
  int rank;
  int64_t dims[OSSEG_MAX_RANK]; /* logical NCHW order, fully resolved */
};

/* The single model input (1,C,H,W) and single output (1,K,H',W'). */
const struct osseg_tensor_info *osseg_model_input(const struct osseg_model *m);
const struct osseg_tensor_info *osseg_model_output(const struct osseg_model *m);
/* Element counts of input / output (product of dims). */
size_t osseg_model_input_elems(const struct osseg_model *m);
size_t osseg_model_output_elems(const struct osseg_model *m);

/* ONNX metadata_props value for key, NULL if absent. */
const char *osseg_model_metadata(const struct osseg_model *m, const char *key);

struct osseg_model_stats {
  uint64_t params;        /* elements of float initializers used by compute */
  uint64_t flops;         /* 2 x MACs of conv/deconv + 1 per elementwise op */
  uint64_t arena_bytes;   /* planned activation arena */
  uint64_t weight_bytes;  /* reordered weights held by the model */
  uint64_t scratch_bytes; /* shared oneDNN scratchpad */
  int nodes_onnx;         /* nodes in the file */
  int steps;              /* executed steps after folding and fusion */
  int slow_steps;         /* of which oneDNN runs as reference or im2col +
                             gemm code (slow fallbacks; 0 for the smp
                             families on AVX-512 machines) */
  int winograd_convs;     /* 3x3 / 2x2 convs run by Winograd F(2x2, 3x3) /
                             F(2x2, 2x2) (fp32) */
  int int8_convs;         /* convs run in int8 (--precision int8, QDQ models) */
  enum osseg_precision precision;
  int threads;
  int opset;
};
void osseg_model_get_stats(const struct osseg_model *m, struct osseg_model_stats *st);

/* Op histogram of the ONNX file (before folding): n entries, sorted by
 * descending count. Returns the number of distinct op types. */
int osseg_model_op_count(const struct osseg_model *m);
void osseg_model_op_at(const struct osseg_model *m, int i, const char **op, int *count);

/* ---- The compiled steps: what runs, in which types, on which code ---- */

/* One executed step (in run order), as compiled at load. Strings are owned
 * by the model and fixed at load, so the query is cheap. */
struct osseg_step_info {
  const char *node;   /* the node it was compiled for (after fusion: the
                         fused node's name); "" for a step the engine adds
                         itself (the input and output reorders) */
  const char *op;     /* that node's op type (ONNX, or osseg.X for an op of
                         the graph passes); "reorder" for an added step */
  const char *kind;   /* oneDNN primitive kind ("convolution", "reorder",
                         "eltwise", ...), or "own" for the engine's loops */
  const char *impl;   /* oneDNN's implementation name ("brgconv:avx512_core_vnni",
                         "jit_int8:avx512_core_vnni", "ref:any"), or the
                         engine's loop ("own: winograd", "own: depthwise
                         conv", "own: bilinear resize", ...) */
  const char *src_type;     /* "f32", "bf16", "u8", "s8", "s32"; NULL when */
  const char *weights_type; /* the step has none (weights: convolutions, */
  const char *dst_type;     /* matmul) or the type is not known */
  const char *precision; /* "int8" when it reads or writes 8-bit data (an
                            int8 conv, a quantizing reorder), else "bf16"
                            when it reads or writes bf16, else "fp32" */
  int conv;           /* a convolution (oneDNN, or the own Winograd and
                         depthwise loops) */
  int slow;           /* runs on a slow fallback: oneDNN reference code, or
                         a conv as im2col + gemm; the steps counted in
                         osseg_model_stats.slow_steps and warned about */
};
/* osseg_model_stats.steps. */
int osseg_model_step_count(const struct osseg_model *m);
/* Step i (0 <= i < osseg_model_step_count()); 0, or OSSEG_EINVAL for an
 * index out of range or a NULL argument. */
int osseg_model_step_info(const struct osseg_model *m, int i, struct osseg_step_info *out);

/* ---- The op table: what the engine supports ---- */

#define OSSEG_OP_PREC_FP32 1u
#define OSSEG_OP_PREC_BF16 2u
struct osseg_op_info {
  const char *name;   /* ONNX op type, or osseg.X for an op the engine's
                         graph passes make */
  const char *domain; /* "ai.onnx" or "osseg" */
  const char *family; /* the engine file holding it: engine/ops/FAMILY.c */
  int since, until;   /* supported opsets of the ONNX domain (0: internal;
                         since > until: only made by the graph passes at
                         the opsets the loader reads, e.g. Gelu from Erf) */
  unsigned precisions; /* OSSEG_OP_PREC_* it runs in on activations */
  int runtime;        /* runs on activations (has a kernel) */
  int folds;          /* evaluated at load when its inputs are constants */
  int in_pattern;     /* accepted on activations only inside the pattern a
                         graph pass rewrites (Erf inside GELU) */
  int internal;       /* made by graph passes, never read from a file */
  int loader;         /* turned into a constant tensor by the loader (Constant) */
};
/* Entries of the op table, in table order (family by family). */
int osseg_engine_op_count(void);
int osseg_engine_op_info(int i, struct osseg_op_info *out);

/* What the op table says of an op type a model uses. */
enum osseg_op_support {
  OSSEG_OP_SUPPORTED,      /* in the table at the model's opset */
  OSSEG_OP_CONSTANTS_ONLY, /* only when its inputs are constants (shape maths);
                              the model fails to load if it runs on activations */
  OSSEG_OP_IN_PATTERN,     /* on activations only inside the pattern a graph
                              pass rewrites (Erf inside GELU) */
  OSSEG_OP_OTHER_OPSET,    /* in the table, not at the model's opset */
  OSSEG_OP_UNKNOWN,        /* not in the table */
  OSSEG_OP_OTHER_DOMAIN,   /* of a domain other than ai.onnx */
};
struct osseg_op_check {
  const char *name, *domain; /* domain "" = ai.onnx */
  int count;                 /* nodes of the main graph using it */
  enum osseg_op_support support;
  int since, until;          /* the table's opsets (OTHER_OPSET and better) */
  const char *family;        /* engine/ops/FAMILY.c, NULL when not in the table */
};
/* Checks every distinct op type of an ONNX file against the op table at the
 * file's opset, without loading the model, so that every op the engine
 * lacks is named, not only the first one a load would stop at. Calls fn
 * once per op type in order of first use; *opset is the file's ONNX opset
 * (-1: none). Returns 0 whatever the ops' support, or an error for a file
 * that cannot be read or parsed. */
int osseg_model_check_ops(const char *path, int *opset,
                          void (*fn)(void *ctx, const struct osseg_op_check *c), void *ctx,
                          struct osseg_diag *diag);

/* ---- Execution ---- */

/* How a run may be interrupted (both optional). */
struct osseg_run_control {
  const _Atomic int *cancel; /* non-zero (set by any thread): stop; NULL = none */
  uint64_t deadline_ns;      /* osseg_now_ns() clock; 0 = none */
};

/* Steps executed so far by all runs in this process (any thread; grows
 * while any inference makes progress). A service watchdog reads it to
 * tell a long inference from a stuck one. */
uint64_t osseg_engine_steps(void);

/* Runs one inference on the engine's executor thread and waits for it.
 * input: float32 NCHW, osseg_model_input_elems() values; output: float32
 * NCHW, osseg_model_output_elems() values; both caller-owned and contiguous,
 * and only touched until the call returns. ctl may be NULL (no interruption);
 * it is read during the call only. Returns 0; OSSEG_ECANCELED when the
 * cancel flag was seen, OSSEG_ETIMEDOUT when the deadline passed (queued or
 * running; the output is then incomplete); or another error. The log
 * callback (profile lines) runs on the executor thread. No allocation. */
int osseg_model_run_ctl(struct osseg_model *m, const float *input, float *output,
                        const struct osseg_run_control *ctl, struct osseg_diag *diag);
/* Inference runs of this process queued for or running on the executor
 * now (any thread's): a hint for work that would compete for the cores. */
int osseg_engine_inference_pending(void);
/* osseg_model_run_ctl() with ctl NULL. */
int osseg_model_run(struct osseg_model *m, const float *input, float *output,
                    struct osseg_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_ENGINE_H */
