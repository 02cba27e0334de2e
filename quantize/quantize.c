/* The quantizer's driver: calibration runs of the fp32 model, the ranges,
 * the sensitivity search of fp32_auto, the agreement check and the report. */
#include "quantize_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *osseg_calib_method_name(enum osseg_calib_method m) {
  return m == OSSEG_CALIB_PERCENTILE ? "percentile"
         : m == OSSEG_CALIB_MSE      ? "mse"
         : m == OSSEG_CALIB_ENTROPY  ? "entropy"
                                     : "minmax";
}

int osseg_calib_method_parse(const char *s, enum osseg_calib_method *out) {
  static const enum osseg_calib_method all[] = {OSSEG_CALIB_MINMAX, OSSEG_CALIB_PERCENTILE,
                                                OSSEG_CALIB_MSE, OSSEG_CALIB_ENTROPY};
  for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
    if (!strcmp(s, osseg_calib_method_name(all[i]))) {
      *out = all[i];
      return 0;
    }
  return OSSEG_EINVAL;
}

const char *osseg_qdq_placement_name(enum osseg_qdq_placement p) {
  return p == OSSEG_QDQ_ORT ? "ort" : "convs";
}

int osseg_qdq_placement_parse(const char *s, enum osseg_qdq_placement *out) {
  if (s && (!strcmp(s, "convs") || !strcmp(s, "ort"))) {
    *out = !strcmp(s, "ort") ? OSSEG_QDQ_ORT : OSSEG_QDQ_CONVS;
    return 0;
  }
  return OSSEG_EINVAL;
}

void osseg_quantize_options_default(struct osseg_quantize_options *o) {
  memset(o, 0, sizeof *o);
  o->method = OSSEG_CALIB_MINMAX;
  o->percentile = 99.999;
  o->target_agreement = 0.995;
  o->sensitivity_inputs = 4;
  o->eval_precision = OSSEG_PRECISION_AUTO;
  osseg_engine_options_default(&o->engine);
}

void osseg_quantize_report_free(struct osseg_quantize_report *r) {
  if (!r) return;
  for (size_t i = 0; r->conv && i < r->convs; i++) {
    osseg__free(r->conv[i].name);
    osseg__free(r->conv[i].input);
  }
  osseg__free(r->conv);
  memset(r, 0, sizeof *r);
}

/* ---- State of one quantization. */

struct quantizer {
  const struct osseg_quantize_options *o;
  struct osseg__qmodel qm;
  const float *const *inputs;
  size_t ninputs, in_elems;
  int64_t classes, plane; /* output channels; pixels per channel */
  float *thr;             /* logit threshold per class */
  uint64_t *masks;        /* fp32 masks, per input: classes * plane bits */
  size_t mask_words;      /* per input */
  float *logits;          /* fp32 logits of the sensitivity inputs */
  size_t nsens;
  float *out;             /* one output */
  int *obs_act;           /* observer index -> activation */
  int pass;               /* 1: min/max, 2: histograms */
  size_t step, steps;     /* progress within a stage */
  struct osseg_diag *diag;
};

static void progress(struct quantizer *q, const char *stage) {
  if (q->o->progress) q->o->progress(q->o->progress_ctx, stage, q->step, q->steps);
}

static int cancelled(const struct quantizer *q) {
  return q->o->cancel && atomic_load_explicit(q->o->cancel, memory_order_relaxed);
}

static void observe(void *ctx, size_t index, const float *data, size_t n) {
  struct quantizer *q = ctx;
  struct osseg__qact *a = &q->qm.act[q->obs_act[index]];
  if (q->pass == 1)
    osseg__calib_minmax(a, data, n);
  else
    osseg__calib_hist(a, data, n);
}

static void masks_of(const struct quantizer *q, const float *logits, uint64_t *bits) {
  memset(bits, 0, q->mask_words * sizeof *bits);
  for (int64_t c = 0; c < q->classes; c++) {
    const float *l = logits + c * q->plane, t = q->thr[c];
    size_t base = (size_t)(c * q->plane);
    for (int64_t i = 0; i < q->plane; i++)
      if (l[i] > t) bits[(base + (size_t)i) >> 6] |= 1ull << ((base + (size_t)i) & 63);
  }
}

/* Mean over classes of the Dice of two mask sets (two empty masks: 1). */
static double mean_dice(const struct quantizer *q, const uint64_t *a, const uint64_t *b) {
  double sum = 0;
  for (int64_t c = 0; c < q->classes; c++) {
    uint64_t inter = 0, na = 0, nb = 0;
    size_t lo = (size_t)(c * q->plane), hi = lo + (size_t)q->plane;
    for (size_t i = lo; i < hi;) {
      size_t w = i >> 6, bit = i & 63, take = 64 - bit;
      if (take > hi - i) take = hi - i;
      uint64_t m = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;
      uint64_t x = a[w] & m, y = b[w] & m;
      inter += (uint64_t)__builtin_popcountll(x & y);
      na += (uint64_t)__builtin_popcountll(x);
      nb += (uint64_t)__builtin_popcountll(y);
      i += take;
    }
    sum += na + nb ? 2.0 * (double)inter / (double)(na + nb) : 1.0;
  }
  return sum / (double)q->classes;
}

static int load(struct quantizer *q, const void *bytes, size_t size, enum osseg_precision p,
                const struct osseg_engine_observer *obs, struct osseg_model **m) {
  struct osseg_engine_options eo = q->o->engine;
  eo.precision = p;
  memset(&eo.observe, 0, sizeof eo.observe);
  if (obs) eo.observe = *obs;
  return osseg_model_load_buffer(m, bytes, size, &eo, q->diag);
}

static int run(struct quantizer *q, struct osseg_model *m, size_t i) {
  if (cancelled(q)) return osseg__fail(q->diag, OSSEG_ECANCELED, "cancelled");
  struct osseg_run_control ctl = {q->o->cancel, 0};
  return osseg_model_run_ctl(m, q->inputs[i], q->out, &ctl, q->diag);
}

/* The calibration passes over every input: min/max (and the fp32 masks and
 * the sensitivity inputs' logits), then the histograms. */
static int calibrate(struct quantizer *q, const void *onnx, size_t size) {
  struct osseg__qmodel *qm = &q->qm;
  const char **names = osseg__calloc(qm->nact + 1, sizeof *names);
  q->obs_act = osseg__calloc(qm->nact + 1, sizeof *q->obs_act);
  if (!names || !q->obs_act) {
    osseg__free(names);
    return osseg__fail(q->diag, OSSEG_ENOMEM, "out of memory");
  }
  size_t nobs = 0;
  for (size_t a = 0; a < qm->nact; a++)
    if (qm->act[a].used && !qm->act[a].is_input && qm->act[a].grid_of < 0)
      q->obs_act[nobs] = (int)a, names[nobs++] = qm->act[a].name;
  struct osseg_engine_observer obs = {names, nobs, observe, q};
  struct osseg_model *m = NULL;
  int err = load(q, onnx, size, OSSEG_PRECISION_FP32, &obs, &m);
  osseg__free(names);
  if (err) return err;
  const int passes = q->o->method == OSSEG_CALIB_MINMAX ? 1 : 2;
  q->steps = passes * q->ninputs;
  q->step = 0;
  for (q->pass = 1; !err && q->pass <= passes; q->pass++) {
    if (q->pass == 2)
      for (size_t a = 0; !err && a < qm->nact; a++)
        if (qm->act[a].used && qm->act[a].grid_of < 0 &&
            !(qm->act[a].hist = osseg__calloc(OSSEG__CALIB_BINS, sizeof(double))))
          err = osseg__fail(q->diag, OSSEG_ENOMEM, "out of memory");
    for (size_t i = 0; !err && i < q->ninputs; i++) {
      progress(q, q->pass == 1 ? "calibrating" : "histograms");
      for (size_t a = 0; a < qm->nact; a++) /* the graph input: the caller's tensor */
        if (qm->act[a].used && qm->act[a].is_input)
          (q->pass == 1 ? osseg__calib_minmax : osseg__calib_hist)(&qm->act[a], q->inputs[i],
                                                                     q->in_elems);
      if ((err = run(q, m, i))) break;
      if (q->pass == 1) {
        masks_of(q, q->out, q->masks + i * q->mask_words);
        if (i < q->nsens)
          memcpy(q->logits + i * (size_t)(q->classes * q->plane), q->out,
                 (size_t)(q->classes * q->plane) * sizeof(float));
      }
      q->step++;
    }
  }
  osseg_model_free(m);
  if (!err) {
    for (size_t a = 0; a < qm->nact; a++)
      if (qm->act[a].used && qm->act[a].grid_of < 0) /* the image keeps its whole range:
                                                        clipping it would clip the
                                                        brightest structures, the bones */
        osseg__calib_choose(&qm->act[a], qm->act[a].is_input ? OSSEG_CALIB_MINMAX : q->o->method,
                            q->o->percentile);
    for (size_t a = 0; a < qm->nact; a++) { /* selected values: their input's grid */
      struct osseg__qact *x = &qm->act[a];
      if (!x->used || x->grid_of < 0) continue;
      const struct osseg__qact *src = &qm->act[x->grid_of];
      x->lo = src->lo, x->hi = src->hi, x->scale = src->scale, x->zero = src->zero;
    }
  }
  return err;
}

/* Runs a QDQ model: the mean Dice of its masks against fp32's over the
 * first n inputs, or (rel_err != NULL) the relative RMS error of its logits
 * over the sensitivity inputs. */
static int evaluate(struct quantizer *q, const unsigned char *quantize, int others, size_t n,
                    double *agreement, double *rel_err, const char *stage) {
  void *bytes = NULL;
  size_t size = 0;
  int err = osseg__qmodel_write(&q->qm, quantize, others, NULL, &bytes, &size, q->diag);
  struct osseg_model *m = NULL;
  if (!err) err = load(q, bytes, size, q->o->eval_precision, NULL, &m);
  osseg__free(bytes);
  uint64_t *bits = err ? NULL : osseg__malloc(q->mask_words * sizeof *bits);
  if (!err && !bits) err = osseg__fail(q->diag, OSSEG_ENOMEM, "out of memory");
  double sum = 0, num = 0, den = 0;
  const size_t per = (size_t)(q->classes * q->plane);
  for (size_t i = 0; !err && i < n; i++) {
    if (stage) progress(q, stage);
    if ((err = run(q, m, i))) break;
    if (rel_err) {
      const float *ref = q->logits + i * per;
      for (size_t k = 0; k < per; k++) {
        double d = (double)q->out[k] - ref[k];
        num += d * d;
        den += (double)ref[k] * ref[k];
      }
    } else {
      masks_of(q, q->out, bits);
      sum += mean_dice(q, bits, q->masks + i * q->mask_words);
    }
    if (stage) q->step++;
  }
  osseg__free(bits);
  osseg_model_free(m);
  if (!err && agreement) *agreement = n ? sum / (double)n : 1;
  if (!err && rel_err) *rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
  return err;
}

struct ranked {
  size_t conv;
  double sens;
};

static int by_sensitivity(const void *x, const void *y) {
  const struct ranked *a = x, *b = y;
  if (a->sens != b->sens) return a->sens < b->sens ? 1 : -1;
  return a->conv < b->conv ? -1 : a->conv > b->conv;
}

/* fp32_auto: keeps the most sensitive convs in fp32 until the agreement
 * reaches the target. Updates quantize[], why[], sens[] and the report's
 * agreement fields. */
static int keep_sensitive(struct quantizer *q, unsigned char *quantize, const char **why,
                          double *sens, struct osseg_quantize_report *rep) {
  struct osseg__qmodel *qm = &q->qm;
  double agree;
  q->steps = q->ninputs, q->step = 0;
  int err = evaluate(q, quantize, 1, q->ninputs, &agree, NULL, "checking");
  if (err) return err;
  rep->agreement_all = rep->agreement = agree;
  if (agree >= q->o->target_agreement) return 0;
  size_t cand = 0;
  for (size_t c = 0; c < qm->nconv; c++) cand += quantize[c];
  struct ranked *rk = osseg__calloc(cand + 1, sizeof *rk);
  unsigned char *one = osseg__calloc(qm->nconv + 1, 1);
  if (!rk || !one) err = osseg__fail(q->diag, OSSEG_ENOMEM, "out of memory");
  /* sensitivity: only conv c quantized */
  size_t nr = 0;
  q->steps = cand * q->nsens, q->step = 0;
  for (size_t c = 0; !err && c < qm->nconv; c++) {
    if (!quantize[c]) continue;
    one[c] = 1;
    err = evaluate(q, one, 0, q->nsens, NULL, &sens[c], "sensitivity");
    one[c] = 0;
    rk[nr++] = (struct ranked){c, sens[c]};
  }
  if (!err) qsort(rk, nr, sizeof *rk, by_sensitivity);
  /* most sensitive first into fp32, until the target holds */
  q->steps = nr * q->ninputs, q->step = 0;
  for (size_t k = 0; !err && k < nr && agree < q->o->target_agreement; k++) {
    if (k + 1 == nr) {
      err = osseg__fail(q->diag, OSSEG_EUNSUPPORTED,
                        "the target agreement %.2f %% needs every conv in fp32 (%.2f %% with the "
                        "least sensitive one int8): nothing to quantize; lower the target",
                        100 * q->o->target_agreement, 100 * agree);
      break;
    }
    quantize[rk[k].conv] = 0;
    why[rk[k].conv] = "sensitive";
    err = evaluate(q, quantize, 1, q->ninputs, &agree, NULL, "keeping fp32");
  }
  if (!err) rep->agreement = agree;
  osseg__free(rk);
  osseg__free(one);
  return err;
}

static int check_options(const struct osseg_quantize_options *o, size_t ninputs,
                         struct osseg_diag *diag) {
  if (!ninputs) return osseg__fail(diag, OSSEG_EINVAL, "no calibration inputs");
  if ((unsigned)o->placement > OSSEG_QDQ_ORT)
    return osseg__fail(diag, OSSEG_EINVAL, "unknown placement %d", (int)o->placement);
  if ((unsigned)o->method > OSSEG_CALIB_ENTROPY)
    return osseg__fail(diag, OSSEG_EINVAL, "unknown calibration method %d", (int)o->method);
  if (!(o->percentile > 90 && o->percentile <= 100))
    return osseg__fail(diag, OSSEG_EINVAL, "percentile %g: must be in (90, 100]", o->percentile);
  if (!(o->target_agreement > 0 && o->target_agreement <= 1))
    return osseg__fail(diag, OSSEG_EINVAL, "target agreement %g: must be in (0, 1]",
                       o->target_agreement);
  if (o->eval_precision != OSSEG_PRECISION_AUTO && o->eval_precision != OSSEG_PRECISION_INT8 &&
      o->eval_precision != OSSEG_PRECISION_FP32)
    return osseg__fail(diag, OSSEG_EINVAL, "the agreement is measured in int8 or fp32, not %s",
                       osseg_precision_name(o->eval_precision));
  for (size_t i = 0; i < o->nthresholds; i++)
    if (!(o->thresholds[i] > 0 && o->thresholds[i] < 1))
      return osseg__fail(diag, OSSEG_EINVAL, "threshold %g of class %zu: must be in (0, 1)",
                         (double)o->thresholds[i], i);
  return 0;
}

/* Output shape, thresholds and the buffers of the runs. */
static int prepare(struct quantizer *q, const void *onnx, size_t size) {
  struct osseg_model *m = NULL;
  int err = load(q, onnx, size, OSSEG_PRECISION_FP32, NULL, &m);
  if (err) return err;
  const struct osseg_tensor_info *ot = osseg_model_output(m);
  q->in_elems = osseg_model_input_elems(m);
  size_t out_elems = osseg_model_output_elems(m);
  q->classes = ot->rank >= 2 ? ot->dims[1] : 1;
  q->plane = q->classes > 0 ? (int64_t)(out_elems / (size_t)q->classes) : 0;
  osseg_model_free(m);
  if (q->classes <= 0 || q->plane <= 0 || (size_t)(q->classes * q->plane) != out_elems)
    return osseg__fail(q->diag, OSSEG_EUNSUPPORTED, "output '%s': not (1, classes, H, W)", ot->name);
  if (q->o->nthresholds && q->o->nthresholds != (size_t)q->classes)
    return osseg__fail(q->diag, OSSEG_EINVAL, "%zu thresholds for %lld output channels",
                       q->o->nthresholds, (long long)q->classes);
  q->nsens = q->o->sensitivity_inputs < q->ninputs ? q->o->sensitivity_inputs : q->ninputs;
  if (!q->nsens) q->nsens = 1;
  q->mask_words = ((size_t)(q->classes * q->plane) + 63) / 64;
  size_t mbytes, lbytes;
  if (osseg__mul_size(q->mask_words * 8, q->ninputs, &mbytes) ||
      osseg__mul_size(out_elems * sizeof(float), q->o->fp32_auto ? q->nsens : 0, &lbytes))
    return osseg__fail(q->diag, OSSEG_EOVERFLOW, "too many calibration inputs");
  q->masks = osseg__malloc(mbytes ? mbytes : 1);
  q->logits = osseg__malloc(lbytes ? lbytes : 1);
  q->out = osseg__malloc(out_elems * sizeof(float));
  q->thr = osseg__malloc((size_t)q->classes * sizeof(float));
  if (!q->masks || !q->logits || !q->out || !q->thr)
    return osseg__fail(q->diag, OSSEG_ENOMEM, "out of memory (%zu calibration inputs)", q->ninputs);
  if (!q->o->fp32_auto) q->nsens = 0; /* no logits kept */
  for (int64_t c = 0; c < q->classes; c++) {
    double t = q->o->nthresholds ? q->o->thresholds[c] : 0.5;
    q->thr[c] = (float)log(t / (1 - t));
  }
  return 0;
}

/* Tensors quantized only for other readers than the quantized convs (the
 * placement's other operators). */
static size_t other_points(const struct osseg__qmodel *qm, const unsigned char *quantize) {
  size_t n = 0;
  for (size_t a = 0; a < qm->nact; a++) {
    int other = 0, conv = 0;
    for (size_t r = 0; !other && r < qm->nread; r++) other = qm->read[r].act == (int)a;
    for (size_t c = 0; other && !conv && c < qm->nconv; c++)
      conv = quantize[c] && qm->conv[c].weight >= 0 && qm->conv[c].act == (int)a;
    n += other && !conv;
  }
  return n;
}

int osseg_quantize(const void *onnx, size_t size, const float *const *inputs, size_t ninputs,
                   const struct osseg_quantize_options *o, void **out, size_t *out_size,
                   struct osseg_quantize_report *report, struct osseg_diag *diag) {
  struct osseg_quantize_options def;
  if (!onnx || !inputs || !out || !out_size) return osseg__fail(diag, OSSEG_EINVAL, "invalid arguments");
  *out = NULL;
  *out_size = 0;
  if (report) memset(report, 0, sizeof *report);
  if (!o) {
    osseg_quantize_options_default(&def);
    o = &def;
  }
  int err = check_options(o, ninputs, diag);
  if (err) return err;
  if (size > o->engine.max_model_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT, "model of %zu bytes: above the limit of %llu", size,
                       (unsigned long long)o->engine.max_model_bytes);
  const uint64_t t0 = osseg_now_ns();
  struct quantizer q = {.o = o, .inputs = inputs, .ninputs = ninputs, .diag = diag};
  struct osseg_quantize_report rep = {0};
  rep.eval_precision = o->eval_precision != OSSEG_PRECISION_AUTO ? o->eval_precision
                       : osseg_engine_int8_native()               ? OSSEG_PRECISION_INT8
                                                                  : OSSEG_PRECISION_FP32;
  struct osseg_quantize_options eo = *o; /* with the evaluation precision resolved */
  eo.eval_precision = rep.eval_precision;
  q.o = &eo;
  /* the engine checks the model first (with its budgets); then the proto */
  err = prepare(&q, onnx, size);
  if (!err) err = osseg__qmodel_parse(&q.qm, onnx, size, o->placement, diag);
  struct osseg__qmodel *qm = &q.qm;
  unsigned char *quantize = NULL;
  const char **why = NULL;
  double *sens = NULL;
  if (!err) {
    quantize = osseg__calloc(qm->nconv + 1, 1);
    why = osseg__calloc(qm->nconv + 1, sizeof *why);
    sens = osseg__malloc((qm->nconv + 1) * sizeof *sens);
    if (!quantize || !why || !sens) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  for (size_t c = 0; !err && c < qm->nconv; c++) {
    quantize[c] = qm->conv[c].weight >= 0;
    why[c] = qm->conv[c].why;
    sens[c] = -1;
  }
  for (size_t k = 0; !err && k < o->nfp32_layers; k++) {
    int found = 0;
    for (size_t c = 0; c < qm->nconv; c++)
      if (o->fp32_layers[k] && !strcmp(o->fp32_layers[k], qm->conv[c].name)) {
        found = 1;
        if (quantize[c]) why[c] = "named to stay fp32";
        quantize[c] = 0;
      }
    if (!found)
      err = osseg__fail(diag, OSSEG_EINVAL, "fp32 layer '%s': the model has no Conv of that name",
                        o->fp32_layers[k] ? o->fp32_layers[k] : "(null)");
  }
  size_t nq = 0;
  for (size_t c = 0; !err && c < qm->nconv; c++) nq += quantize[c];
  if (!err && !nq) err = osseg__fail(diag, OSSEG_EUNSUPPORTED, "no Conv is left to quantize");
  if (!err) err = calibrate(&q, onnx, size);
  if (!err && o->fp32_auto) err = keep_sensitive(&q, quantize, why, sens, &rep);
  char note[320];
  nq = 0;
  for (size_t c = 0; !err && c < qm->nconv; c++) nq += quantize[c];
  size_t others = err ? 0 : other_points(qm, quantize);
  snprintf(note, sizeof note,
           "QDQ by osseg quantize: %zu of %zu convs int8 (uint8 inputs per tensor, %s "
           "calibration on %zu inputs; int8 weights per output channel); %s placement, "
           "%zu other tensors quantized",
           nq, qm->nconv, osseg_calib_method_name(o->method), ninputs,
           osseg_qdq_placement_name(o->placement), others);
  if (!err) err = osseg__qmodel_write(qm, quantize, 1, note, out, out_size, diag);
  if (!err && !o->fp32_auto) {
    q.steps = ninputs, q.step = 0;
    err = evaluate(&q, quantize, 1, ninputs, &rep.agreement, NULL, "checking");
    rep.agreement_all = rep.agreement;
  }
  if (!err && report) {
    rep.inputs = ninputs;
    rep.placement = o->placement;
    rep.other_points = others;
    rep.convs = qm->nconv;
    rep.quantized = nq;
    rep.conv = osseg__calloc(qm->nconv, sizeof *rep.conv);
    if (!rep.conv) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
    for (size_t c = 0; !err && c < qm->nconv; c++) {
      struct osseg_quantize_conv *r = &rep.conv[c];
      const struct osseg__qact *a = &qm->act[qm->conv[c].act];
      r->name = osseg__strndup(qm->conv[c].name, 4096);
      r->input = osseg__strndup(a->name, 4096);
      if (!r->name || !r->input) err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
      r->quantized = quantize[c];
      r->why = quantize[c] ? NULL : why[c];
      r->sensitivity = sens[c];
      r->lo = a->lo, r->hi = a->hi, r->scale = a->scale, r->zero_point = a->zero;
    }
    rep.seconds = (double)(osseg_now_ns() - t0) / 1e9;
    if (!err) *report = rep, rep.conv = NULL;
    else rep.convs = qm->nconv;
  }
  osseg_quantize_report_free(&rep);
  if (err) {
    osseg__free(*out);
    *out = NULL;
    *out_size = 0;
  }
  osseg__free(quantize);
  osseg__free(why);
  osseg__free(sens);
  if (qm->proto) osseg__qmodel_free(qm);
  osseg__free(q.thr);
  osseg__free(q.masks);
  osseg__free(q.logits);
  osseg__free(q.out);
  osseg__free(q.obs_act);
  return err;
}
