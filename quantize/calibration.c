/* Activation statistics and the choice of each activation's uint8 range.
 *
 * Two passes over the calibration inputs: min/max, then (for every method
 * but minmax) a histogram of OSSEG__CALIB_BINS bins over [min, max] of the
 * values other than exact zeros. The
 * range [L, H] always contains 0; scale = (H - L) / 255 and zero point =
 * round(-L / scale), as ONNX Runtime and PyTorch compute them. The mse and
 * entropy methods try ranges shrunk from [min(lo, 0), max(hi, 0)] towards 0
 * by factors 16/128 ... 128/128. */
#include "quantize_internal.h"

#include <float.h>
#include <math.h>

#define CANDIDATES 128 /* shrink factors k / CANDIDATES */
#define MIN_K 16

void osseg__calib_minmax(struct osseg__qact *a, const float *x, size_t n) {
  float lo = a->lo, hi = a->hi;
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    lo = v < lo ? v : lo; /* (NaN compares false: ignored) */
    hi = v > hi ? v : hi;
  }
  a->lo = lo, a->hi = hi;
}

void osseg__calib_hist(struct osseg__qact *a, const float *x, size_t n) {
  if (!a->hist || !(a->hi > a->lo)) return;
  const double lo = a->lo, inv = OSSEG__CALIB_BINS / ((double)a->hi - lo);
  for (size_t i = 0; i < n; i++) {
    /* exact zeros (ReLU outputs, padding) are exact at any range: left out,
     * or their spike would weigh every bin of level 0 in the costs below */
    if (x[i] == 0) continue;
    double b = ((double)x[i] - lo) * inv;
    if (!(b >= 0)) b = 0; /* (NaN too) */
    int k = b >= OSSEG__CALIB_BINS - 1 ? OSSEG__CALIB_BINS - 1 : (int)b;
    a->hist[k] += 1;
  }
}

/* Expected squared error of quantizing the histogram to [L, H]. */
static double mse_cost(const struct osseg__qact *a, double L, double H) {
  const double w = ((double)a->hi - a->lo) / OSSEG__CALIB_BINS, s = (H - L) / 255;
  double cost = 0;
  for (int j = 0; j < OSSEG__CALIB_BINS; j++) {
    double c = a->hist[j];
    if (c == 0) continue;
    double v = a->lo + (j + 0.5) * w;
    double e = v > H ? (v - H) * (v - H) : v < L ? (L - v) * (L - v) : s * s / 12;
    cost += c * e;
  }
  return cost;
}

/* KL divergence between the histogram clipped to [L, H] (mass outside added
 * to the edge bins) and its quantization to 256 levels (computed from the
 * bins inside only, each level's mass spread over its non-empty bins), as
 * TensorRT's entropy calibration: clipping costs the outliers' mass, a wide
 * range costs resolution. */
static double entropy_cost(const struct osseg__qact *a, double L, double H, double *p, double *q) {
  const double w = ((double)a->hi - a->lo) / OSSEG__CALIB_BINS, s = (H - L) / 255;
  int first = (int)floor((L - a->lo) / w), last = (int)ceil((H - a->lo) / w) - 1;
  if (first < 0) first = 0;
  if (last > OSSEG__CALIB_BINS - 1) last = OSSEG__CALIB_BINS - 1;
  if (last < first) return INFINITY;
  double ptot = 0;
  for (int j = 0; j < OSSEG__CALIB_BINS; j++) {
    int k = j < first ? first : j > last ? last : j;
    if (j == k) p[k] = 0;
    p[k] += a->hist[j];
    ptot += a->hist[j];
  }
  /* levels: bins inside grouped by the level their centre rounds to */
  for (int j = first; j <= last;) {
    int lev = (int)nearbyint((a->lo + (j + 0.5) * w - L) / s);
    int e = j;
    double mass = 0;
    int nonzero = 0;
    while (e <= last && (int)nearbyint((a->lo + (e + 0.5) * w - L) / s) == lev) {
      mass += a->hist[e];
      nonzero += a->hist[e] > 0;
      e++;
    }
    for (int k = j; k < e; k++) q[k] = a->hist[k] > 0 ? mass / nonzero : 0;
    j = e;
  }
  double qtot = 0;
  for (int j = first; j <= last; j++) qtot += q[j];
  if (!(ptot > 0) || !(qtot > 0)) return INFINITY;
  double kl = 0;
  for (int j = first; j <= last; j++) {
    if (p[j] <= 0) continue;
    double pj = p[j] / ptot, qj = q[j] / qtot;
    if (qj < 1e-12) qj = 1e-12; /* an edge bin holding only clipped mass */
    kl += pj * log(pj / qj);
  }
  return kl;
}

/* The value below which a fraction f of the histogram's mass lies. */
static double hist_quantile(const struct osseg__qact *a, double f) {
  double tot = 0, acc = 0;
  for (int j = 0; j < OSSEG__CALIB_BINS; j++) tot += a->hist[j];
  const double w = ((double)a->hi - a->lo) / OSSEG__CALIB_BINS, want = f * tot;
  for (int j = 0; j < OSSEG__CALIB_BINS; j++) {
    if (acc + a->hist[j] >= want && a->hist[j] > 0)
      return a->lo + (j + (want - acc) / a->hist[j]) * w;
    acc += a->hist[j];
  }
  return a->hi;
}

void osseg__calib_choose(struct osseg__qact *a, enum osseg_calib_method method,
                         double percentile) {
  double L = a->lo < 0 ? a->lo : 0, H = a->hi > 0 ? a->hi : 0;
  if (!(a->lo <= a->hi)) L = H = 0; /* never observed (no input) */
  const int hist = a->hist && a->hi > a->lo;
  if (hist && method == OSSEG_CALIB_PERCENTILE) {
    double f = percentile / 100;
    double ql = hist_quantile(a, 1 - f), qh = hist_quantile(a, f);
    L = ql < 0 ? ql : 0;
    H = qh > 0 ? qh : 0;
  } else if (hist && (method == OSSEG_CALIB_MSE || method == OSSEG_CALIB_ENTROPY)) {
    double p[OSSEG__CALIB_BINS], q[OSSEG__CALIB_BINS];
    double best = INFINITY, bl = L, bh = H;
    for (int k = CANDIDATES; k >= MIN_K; k--) {
      double t = (double)k / CANDIDATES, cl = L * t, ch = H * t;
      if (!(ch > cl)) break;
      double c = method == OSSEG_CALIB_MSE ? mse_cost(a, cl, ch) : entropy_cost(a, cl, ch, p, q);
      if (c < best) best = c, bl = cl, bh = ch;
    }
    L = bl, H = bh;
  }
  double s = (H - L) / 255;
  if (!(s >= FLT_MIN) || !isfinite(s)) s = 1; /* a constant tensor: any scale */
  a->scale = (float)s;
  double z = nearbyint(-L / (double)a->scale);
  a->zero = z < 0 ? 0 : z > 255 ? 255 : (int)z;
}
