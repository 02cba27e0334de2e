/* osseg quantize: post-training static quantization of an fp32 ONNX model
 * into a QDQ ONNX model (QuantizeLinear/DequantizeLinear pairs, the format
 * ONNX Runtime's quantize_static and NNCF write), which osseg runs with
 * --precision int8 and ONNX Runtime runs as it is.
 *
 *   fp32 model + calibration inputs (already preprocessed as the model
 *   expects them)
 *     -> the fp32 engine runs every input, observing every tensor a Conv
 *        reads, and under the ort placement (below) every tensor an Add,
 *        Concat, MaxPool or nearest Resize reads (osseg_engine_options.observe):
 *        min/max, then a histogram
 *     -> per tensor a uint8 scale and zero point by the chosen method;
 *        weights per output channel, symmetric int8 (scale = max|w| / 127)
 *     -> a QuantizeLinear -> DequantizeLinear pair in front of every
 *        quantized Conv input (and the placement's other points),
 *        DequantizeLinear of int8 initializers for its weights (bias
 *        stays float); every other node, initializer,
 *        input, output and metadata_props entry as it was, plus
 *        "osseg.quantized" (method, images, convs quantized).
 *
 * Convs that stay fp32: the ones the options name, those whose weights are
 * not a float initializer, and with fp32_auto the most sensitive ones:
 * each conv's sensitivity is the error of the model's logits when only it
 * is quantized (relative RMS against fp32, on the first few calibration
 * inputs; no other point of the placement quantized); then convs are kept
 * in fp32, most sensitive first, until the masks of the quantized model
 * (every point of the placement) agree with the fp32 model's on the
 * calibration inputs at a mean Dice of at least target_agreement (masks:
 * logit > logit(threshold) per class at the model's output resolution;
 * Dice of two empty masks = 1).
 *
 * The library never prints and never reads the environment: engine
 * messages go to the log callback, progress to the progress callback. */
#ifndef OSSEG_QUANTIZE_H
#define OSSEG_QUANTIZE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"
#include "osseg_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How an activation's range [lo, hi] is chosen from its calibration values:
 *   minmax:     the smallest and largest value seen (ONNX Runtime's default);
 *   percentile: the values at `percentile` % and 100 - `percentile` % of the
 *               histogram (ignores rare outliers);
 *   mse:        the range, shrunk from min/max towards 0, that minimises the
 *               expected squared error of quantizing the histogram
 *               (rounding inside, clipping outside);
 *   entropy:    the same candidates, minimising the KL divergence between
 *               the histogram and its quantized version (TensorRT's method).
 * The range always contains 0 (exactly representable, for zero padding). */
enum osseg_calib_method {
  OSSEG_CALIB_MINMAX = 0,
  OSSEG_CALIB_PERCENTILE = 1,
  OSSEG_CALIB_MSE = 2,
  OSSEG_CALIB_ENTROPY = 3,
};
/* "minmax", "percentile", "mse", "entropy"; parse: 0 or OSSEG_EINVAL. */
const char *osseg_calib_method_name(enum osseg_calib_method m);
int osseg_calib_method_parse(const char *s, enum osseg_calib_method *out);

/* Where the QuantizeLinear -> DequantizeLinear pairs go:
 *   convs: in front of every quantized Conv's input only; every other
 *          operator computes in float. The fewest quantization points:
 *          the best fidelity, and what osseg runs fastest per point.
 *   ort:   also on both inputs of every Add of two computed tensors, on
 *          every Concat input (each on its own grid), on the input of every
 *          MaxPool and nearest Resize, and again on their output on the
 *          input's grid (they only select values: none changes); each
 *          tensor once, read by all its quantized readers. That is where
 *          ONNX Runtime's quantize_static puts them (it also quantizes a
 *          linear Resize, which computes new values: here it stays float,
 *          so a model's upsampled logits are not quantized):
 *          ONNX Runtime runs such a file in 8 bits nearly throughout (on
 *          UNet++ R50 @1024 ~1.6x faster than the convs placement), osseg
 *          a few per cent faster and in ~20 % less memory. More points:
 *          check the agreement. It suits convolutional networks; where
 *          the adds join float matmuls (SegFormer) their quantization
 *          costs accuracy and time. */
enum osseg_qdq_placement {
  OSSEG_QDQ_CONVS = 0,
  OSSEG_QDQ_ORT = 1,
};
/* "convs", "ort"; parse: 0 or OSSEG_EINVAL. */
const char *osseg_qdq_placement_name(enum osseg_qdq_placement p);
int osseg_qdq_placement_parse(const char *s, enum osseg_qdq_placement *out);

/* Progress: stage is a short phrase ("calibrating", "histograms",
 * "sensitivity", "keeping fp32", "checking"); done of total steps. */
typedef void (*osseg_quantize_progress_fn)(void *ctx, const char *stage, size_t done, size_t total);

struct osseg_quantize_options {
  enum osseg_calib_method method; /* default minmax */
  double percentile;              /* percentile method: 90 < p <= 100; default 99.999 */
  enum osseg_qdq_placement placement; /* default convs */
  /* Convs (node names) kept in fp32 whatever happens; a name the model has
   * no Conv of is an error. */
  const char *const *fp32_layers;
  size_t nfp32_layers;
  int fp32_auto;                  /* 1: keep the most sensitive convs in fp32 (above) */
  double target_agreement;        /* fp32_auto's goal, mean Dice in (0, 1]; default 0.995 */
  size_t sensitivity_inputs;      /* inputs the sensitivity is measured on; default 4 */
  /* Probability threshold per output channel for the masks (NULL: 0.5). */
  const float *thresholds;
  size_t nthresholds;
  /* How the quantized model is run to measure agreement: int8 (default
   * where osseg runs int8 natively, else fp32, which computes the QDQ
   * model's quantization exactly in float). */
  enum osseg_precision eval_precision; /* AUTO = that default */
  struct osseg_engine_options engine;  /* threads, limits, log (precision ignored) */
  osseg_quantize_progress_fn progress; /* NULL: none */
  void *progress_ctx;
  const _Atomic int *cancel;           /* non-zero: stop with OSSEG_ECANCELED */
};
void osseg_quantize_options_default(struct osseg_quantize_options *o);

/* What happened to one Conv of the model. */
struct osseg_quantize_conv {
  char *name;        /* the Conv node */
  char *input;       /* the tensor it reads */
  int quantized;     /* 1: int8 in the written model */
  const char *why;   /* not quantized: "named in fp32_layers", "sensitive",
                        "weights are not a float initializer", ...; NULL if
                        quantized */
  double sensitivity; /* relative logit error with only this conv quantized
                         (fp32_auto; -1 when not measured) */
  float lo, hi;      /* the input's calibrated range (min/max seen, before
                        the method narrows it) */
  float scale;       /* the input's quantization: uint8, */
  int zero_point;    /* (q = round(x / scale) + zero_point) */
};

struct osseg_quantize_report {
  size_t inputs;              /* calibration inputs used */
  size_t convs, quantized;    /* Convs in the model; quantized ones */
  enum osseg_qdq_placement placement;
  size_t other_points;        /* tensors quantized only for other readers
                                 than the quantized convs (ort placement) */
  struct osseg_quantize_conv *conv; /* convs entries, in file order */
  double agreement;           /* mean Dice of the written model's masks against
                                 fp32's on the calibration inputs */
  double agreement_all;       /* the same with every eligible conv quantized
                                 (fp32_auto only; else = agreement) */
  enum osseg_precision eval_precision; /* how the agreement was measured */
  double seconds;             /* wall time of osseg_quantize */
};
void osseg_quantize_report_free(struct osseg_quantize_report *r);

/* Quantizes the ONNX model in onnx[0..size) (its default-domain opset must
 * be 13 or later: per-channel DequantizeLinear). inputs: ninputs tensors of
 * the model's input shape (float32 NCHW, osseg_model_input_elems values
 * each), preprocessed as the model expects. *out gets the QDQ model's bytes
 * (osseg__free them), *report (if not NULL) what was done. Errors name the
 * node or tensor: OSSEG_EINVAL (options), OSSEG_EUNSUPPORTED (opset, no
 * Conv to quantize), OSSEG_EPARSE, the engine's load and run errors,
 * OSSEG_ECANCELED. */
int osseg_quantize(const void *onnx, size_t size, const float *const *inputs, size_t ninputs,
                   const struct osseg_quantize_options *o, void **out, size_t *out_size,
                   struct osseg_quantize_report *report, struct osseg_diag *diag);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_QUANTIZE_H */
