/* .npy float32 reader/writer. The header is a Python dict literal; we accept
 * exactly the keys NumPy writes and check the payload size against the
 * declared shape before allocating. */
#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void npy_free(struct npy_array *a) {
  if (!a) return;
  osseg__free(a->data);
  a->data = NULL;
}

static const char *find_key(const char *h, size_t n, const char *key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i + kl <= n; i++)
    if (memcmp(h + i, key, kl) == 0) return h + i + kl;
  return NULL;
}

int npy_parse(const void *buf, size_t size, uint64_t max_bytes, struct npy_array *out,
              struct osseg_diag *diag) {
  const unsigned char *p = buf;
  memset(out, 0, sizeof *out);
  if (size < 10 || memcmp(p, "\x93NUMPY", 6) != 0)
    return osseg__fail(diag, OSSEG_EPARSE, "not a .npy file (bad magic)");
  size_t hl, off;
  if (p[6] == 1) {
    hl = (size_t)p[8] | ((size_t)p[9] << 8);
    off = 10;
  } else if (p[6] == 2 || p[6] == 3) {
    if (size < 12) return osseg__fail(diag, OSSEG_EPARSE, ".npy header truncated");
    hl = (size_t)p[8] | ((size_t)p[9] << 8) | ((size_t)p[10] << 16) | ((size_t)p[11] << 24);
    off = 12;
  } else {
    return osseg__fail(diag, OSSEG_EPARSE, ".npy version %d unsupported", p[6]);
  }
  if (hl > 65536 || off + hl > size) return osseg__fail(diag, OSSEG_EPARSE, ".npy header truncated");
  const char *h = (const char *)p + off;
  const char *d = find_key(h, hl, "'descr':");
  const char *f = find_key(h, hl, "'fortran_order':");
  const char *s = find_key(h, hl, "'shape':");
  if (!d || !f || !s) return osseg__fail(diag, OSSEG_EPARSE, ".npy header lacks descr/fortran_order/shape");
  const char *end = h + hl;
  while (d < end && *d == ' ') d++;
  if (end - d < 5 || (memcmp(d, "'<f4'", 5) != 0 && memcmp(d, "'f4'", 4) != 0)) {
    char dt[16] = {0};
    for (int i = 0; i < 15 && d + i < end && d[i] != ','; i++) dt[i] = d[i];
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, ".npy dtype %s unsupported (need little-endian float32 '<f4')", dt);
  }
  while (f < end && *f == ' ') f++;
  if (end - f < 5 || memcmp(f, "False", 5) != 0)
    return osseg__fail(diag, OSSEG_EUNSUPPORTED, ".npy in Fortran order unsupported");
  while (s < end && *s == ' ') s++;
  if (s >= end || *s != '(') return osseg__fail(diag, OSSEG_EPARSE, ".npy shape malformed");
  s++;
  size_t count = 1;
  for (;;) {
    while (s < end && (*s == ' ' || *s == ',')) s++;
    if (s >= end) return osseg__fail(diag, OSSEG_EPARSE, ".npy shape malformed");
    if (*s == ')') break;
    if (*s < '0' || *s > '9') return osseg__fail(diag, OSSEG_EPARSE, ".npy shape malformed");
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
      if (v > (UINT64_C(1) << 40)) return osseg__fail(diag, OSSEG_ERANGE, ".npy dimension too large");
      v = v * 10 + (uint64_t)(*s++ - '0');
    }
    if (out->rank >= 8) return osseg__fail(diag, OSSEG_EUNSUPPORTED, ".npy rank > 8");
    out->dims[out->rank++] = (int64_t)v;
    if (osseg__mul_size(count, (size_t)v, &count)) return osseg__fail(diag, OSSEG_EOVERFLOW, ".npy size overflows");
  }
  size_t bytes;
  if (osseg__mul_size(count, 4, &bytes)) return osseg__fail(diag, OSSEG_EOVERFLOW, ".npy size overflows");
  if (max_bytes && bytes > max_bytes) return osseg__fail(diag, OSSEG_ELIMIT, ".npy array of %zu bytes exceeds the limit", bytes);
  if (size - off - hl != bytes)
    return osseg__fail(diag, OSSEG_EPARSE, ".npy payload is %zu bytes, shape needs %zu",
                       size - off - hl, bytes);
  out->count = count;
  out->data = osseg__malloc(bytes ? bytes : 1);
  if (!out->data) return osseg__fail(diag, OSSEG_ENOMEM, "out of memory for .npy data");
  memcpy(out->data, p + off + hl, bytes);
  return 0;
}

int npy_read(const char *path, uint64_t max_bytes, struct npy_array *out, struct osseg_diag *diag) {
  memset(out, 0, sizeof *out);
  FILE *fp = fopen(path, "rb");
  if (!fp) return osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(errno));
  if (fseek(fp, 0, SEEK_END) != 0) {
    fclose(fp);
    return osseg__fail(diag, OSSEG_EIO, "%s: cannot seek", path);
  }
  long sz = ftell(fp);
  rewind(fp);
  if (sz < 0 || (max_bytes && (uint64_t)sz > max_bytes + 65536 + 12)) {
    fclose(fp);
    return osseg__fail(diag, OSSEG_ELIMIT, "%s: file too large", path);
  }
  char *buf = osseg__malloc((size_t)sz + 1);
  if (!buf) {
    fclose(fp);
    return osseg__fail(diag, OSSEG_ENOMEM, "out of memory");
  }
  size_t got = fread(buf, 1, (size_t)sz, fp);
  fclose(fp);
  int err = got == (size_t)sz ? npy_parse(buf, got, max_bytes, out, diag) /* messages say ".npy" */
                              : osseg__fail(diag, OSSEG_EIO, "%s: short read", path);
  osseg__free(buf);
  return err;
}

int npy_write(const char *path, const float *data, const int64_t *dims, int rank,
              struct osseg_diag *diag) {
  char hdr[384];
  size_t count = 1;
  for (int i = 0; i < rank; i++) count *= (size_t)dims[i];
  /* NumPy style: "(1, 3, 64, 64)" or "(5,)" */
  char sh[256] = "(";
  for (int i = 0; i < rank; i++) {
    size_t l = strlen(sh);
    snprintf(sh + l, sizeof sh - l, i + 1 < rank ? "%lld, " : (rank == 1 ? "%lld," : "%lld"), (long long)dims[i]);
  }
  strcat(sh, ")");
  int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", sh);
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  struct osseg_output out;
  FILE *fp;
  int rc = osseg_output_open(&out, path, diag);
  if (rc) return rc;
  rc = osseg_output_stream(&out, &fp, diag);
  if (rc) {
    osseg_output_abort(&out);
    return rc;
  }
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
  size_t hl = (size_t)n + pad + 1;
  pre[8] = (unsigned char)(hl & 0xff);
  pre[9] = (unsigned char)(hl >> 8);
  int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(hdr, 1, (size_t)n, fp) == (size_t)n;
  for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', fp) != EOF;
  ok = ok && fputc('\n', fp) != EOF;
  ok = ok && fwrite(data, sizeof(float), count, fp) == count;
  if (!ok) {
    int e = errno;
    osseg_output_abort(&out);
    return osseg__fail(diag, OSSEG_EIO, "%s: write failed: %s", path, strerror(e));
  }
  return osseg_output_commit(&out, diag);
}
