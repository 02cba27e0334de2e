/* .npy (NumPy format 1.0-3.0) float32 reader/writer with validation.
 * Only little-endian float32, C order, rank <= 8. */
#ifndef OSSEG_CLIENTS_NPY_H
#define OSSEG_CLIENTS_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"

struct npy_array {
  int rank;
  int64_t dims[8];
  size_t count;
  float *data; /* osseg__malloc'ed; free with npy_free */
};

/* Reads path; rejects other dtypes, Fortran order, sizes above max_bytes. */
int npy_read(const char *path, uint64_t max_bytes, struct npy_array *out, struct osseg_diag *diag);
/* Parses an in-memory .npy image (same checks). */
int npy_parse(const void *buf, size_t size, uint64_t max_bytes, struct npy_array *out,
              struct osseg_diag *diag);
int npy_write(const char *path, const float *data, const int64_t *dims, int rank,
              struct osseg_diag *diag);
void npy_free(struct npy_array *a);

#endif
