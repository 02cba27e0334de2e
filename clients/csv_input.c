/* See csv_input.h. */
#include "csv_input.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli_util.h"

struct load_job {
  char *const *paths;
  struct osseg_csv *csv;
  struct csv_index *ix;
  size_t n;
  atomic_size_t next;
  char (*err)[600]; /* err[i][0] != 0: file i failed */
};

static void load_one(struct load_job *j, size_t i) {
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (osseg_csv_open(&j->csv[i], j->paths[i], NULL, &diag) != 0) {
    snprintf(j->err[i], sizeof j->err[i], "%s", diag.message);
    return;
  }
  const struct osseg_csv *csv = &j->csv[i];
  size_t dup = 0, first = 0;
  int rc = csv_index_build(&j->ix[i], csv, &dup, &first);
  if (rc == OSSEG_EDUPLICATE) {
    const struct osseg_csv_row *r = &csv->rows[dup];
    char image[256], cls[128];
    snprintf(j->err[i], sizeof j->err[i],
             "%s:%u: duplicate row for image '%s', class '%s' (first at line %u)", csv->path,
             r->line, cli_printable(image, sizeof image, r->image, r->image_len),
             cli_printable(cls, sizeof cls, r->cls, r->cls_len), csv->rows[first].line);
  } else if (rc < 0) {
    snprintf(j->err[i], sizeof j->err[i], "%s: %s", csv->path, osseg_strerror(rc));
  }
}

static void *load_worker(void *arg) {
  struct load_job *j = *(struct load_job **)arg;
  for (;;) {
    size_t i = atomic_fetch_add(&j->next, 1);
    if (i >= j->n) return NULL;
    load_one(j, i);
  }
}

int csv_input_load_all(const char *cmd, char *const *paths, size_t n, unsigned threads,
                       struct osseg_csv *csv, struct csv_index *ix) {
  char (*err)[600] = calloc(n, sizeof *err);
  if (!err) {
    cli_error(cmd, "out of memory");
    return -1;
  }
  struct load_job job = {paths, csv, ix, n, 0, err};
  struct load_job *args[64];
  size_t nt = threads < n ? threads : n;
  if (nt > 64) nt = 64;
  for (size_t t = 0; t < nt; t++) args[t] = &job;
  cli_run_jobs(load_worker, args, sizeof args[0], nt);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (err[i][0]) {
      cli_error(cmd, "%s", err[i]);
      rc = -1;
      break;
    }
  }
  free(err);
  return rc;
}

void csv_input_free(size_t n, struct osseg_csv *csv, struct csv_index *ix) {
  for (size_t i = 0; i < n; i++) {
    csv_index_free(&ix[i]);
    osseg_csv_close(&csv[i]);
  }
}

void csv_input_rle_error(const char *cmd, const struct osseg_csv *csv,
                         const struct osseg_csv_row *row, const struct osseg_diag *diag) {
  cli_error(cmd, "%s:%u: rle: %s", csv->path, row->line, diag->message);
}

int csv_input_check_unused(const char *cmd, const struct osseg_csv *csv,
                           const unsigned char *used, uint64_t npixels, size_t *unused) {
  struct osseg_runs runs = {0};
  size_t n = 0;
  int rc = 0;
  for (size_t r = 0; r < csv->nrows; r++) {
    if (used[r]) continue;
    n++;
    struct osseg_diag diag;
    osseg_diag_clear(&diag);
    runs.n = 0;
    if (osseg_rle_parse(csv->rows[r].rle, csv->rows[r].rle_len, npixels, &runs, &diag) != 0) {
      csv_input_rle_error(cmd, csv, &csv->rows[r], &diag);
      rc = -1;
      break;
    }
  }
  osseg_runs_free(&runs);
  *unused = n;
  return rc;
}
