/* The quantizer's parts: the model being quantized and its QDQ writer
 * (qdq_model.c), activation statistics and range selection
 * (calibration.c), and the driver (quantize.c). */
#ifndef OSSEG_QUANTIZE_INTERNAL_H
#define OSSEG_QUANTIZE_INTERNAL_H

#include "osseg_quantize.h"

/* Bins of an activation's histogram (over its min/max range). */
#define OSSEG__CALIB_BINS 2048

/* One tensor a Conv reads: its statistics and, once chosen, its uint8
 * quantization. */
struct osseg__qact {
  const char *name; /* the model's tensor name (owned by the proto) */
  int is_input;     /* the graph input (the caller's tensor, not observed) */
  int used;         /* read by at least one eligible conv, or by another
                       quantized reader of the placement */
  int grid_of;      /* >= 0: the activation whose grid this one repeats (a
                       MaxPool's or nearest Resize's output; not observed);
                       -1: its own */
  float lo, hi;     /* min / max over the calibration inputs */
  double *hist;     /* OSSEG__CALIB_BINS counts over [lo, hi] (second pass) */
  float scale;
  int zero;
};

/* One Conv node. */
struct osseg__qconv {
  size_t node;      /* index in the graph's node list */
  char *name;       /* its name, or "Conv#i" for an unnamed node */
  int act;          /* index of its input in the activation list */
  int weight;       /* initializer index of its weights; -1: not eligible */
  const char *why;  /* why not eligible (weight < 0) */
  int64_t oc;       /* output channels */
  size_t per_oc;    /* weight values per output channel */
  int8_t *w8;       /* oc * per_oc quantized weights */
  float *wscale;    /* oc scales (max |w| / 127) */
  /* A BatchNormalization that alone reads the conv's output (an export
   * without BN folding): folded into the int8 weights and a new bias, the
   * BN node dropped, when the conv is quantized. */
  int bn;           /* its node index, -1: none */
  float *bias;      /* oc folded bias values (bn >= 0) */
};

/* Input k of node `node`, an operator other than Conv, reads activation
 * act dequantized (ort placement). */
struct osseg__qread {
  size_t node, input;
  int act;
};

struct osseg__qmodel {
  void *proto; /* Onnx__ModelProto, unpacked */
  struct osseg__qconv *conv;
  size_t nconv;
  struct osseg__qact *act;
  size_t nact;
  struct osseg__qread *read; /* in node order */
  size_t nread;
  int opset;
};

/* Parses the ONNX bytes, lists the Convs and the tensors they read (and
 * under the ort placement the other quantized reads and the pool and resize
 * outputs), and quantizes the weights of the eligible convs. */
int osseg__qmodel_parse(struct osseg__qmodel *qm, const void *data, size_t size,
                        enum osseg_qdq_placement placement, struct osseg_diag *diag);
void osseg__qmodel_free(struct osseg__qmodel *qm);
/* The QDQ model with conv i quantized where quantize[i] (its input's scale
 * and zero point from the activation list), and with others != 0 the other
 * reads of the placement quantized too; metadata_props gains
 * "osseg.quantized" = note (NULL: none). *out: osseg__malloc'ed bytes. */
int osseg__qmodel_write(const struct osseg__qmodel *qm, const unsigned char *quantize, int others,
                        const char *note, void **out, size_t *size, struct osseg_diag *diag);

/* calibration.c: values of one tensor into its min/max (pass 1) or its
 * histogram (pass 2, after min/max are final). */
void osseg__calib_minmax(struct osseg__qact *a, const float *x, size_t n);
void osseg__calib_hist(struct osseg__qact *a, const float *x, size_t n);
/* Chooses a's scale and zero point (uint8) by method from its statistics. */
void osseg__calib_choose(struct osseg__qact *a, enum osseg_calib_method method,
                         double percentile);

#endif
