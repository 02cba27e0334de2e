/* Arena plan: one buffer for all activations, made once at load.
 *
 * Tensors sharing storage (in-place ops, aliases) form a group; a group is
 * live from the first step that touches any member to the last one. Groups
 * are placed largest first at the lowest offset that does not overlap any
 * already placed group whose live range intersects (greedy by size, as in
 * ggml-alloc / TFLite's arena planner). */
#include "engine_internal.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64

struct group {
  int root;
  int first, last;
  size_t size;
  size_t offset;
};

static int by_size_desc(const void *a, const void *b) {
  const struct group *x = a, *y = b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  return x->first - y->first;
}

int osseg__plan(struct osseg_model *m, struct osseg_diag *diag) {
  struct osseg__graph *g = &m->g;
  int nt = g->ntensors;
  int *first = osseg__malloc((size_t)nt * sizeof(int));
  int *last = osseg__malloc((size_t)nt * sizeof(int));
  size_t *size = osseg__calloc((size_t)nt, sizeof(size_t));
  struct group *gr = osseg__malloc((size_t)nt * sizeof *gr);
  int *placed = osseg__malloc((size_t)nt * sizeof(int));
  int err = 0;
  if (!first || !last || !size || !gr || !placed) {
    err = osseg__fail(diag, OSSEG_ENOMEM, "out of memory (plan)");
    goto done;
  }
  for (int t = 0; t < nt; t++) first[t] = -1, last[t] = -1;
  for (int si = 0; si < m->nsteps; si++) {
    const struct osseg__step *s = &m->steps[si];
    for (int u = 0; u < s->nuses; u++) {
      int r = osseg__root(m, s->uses[u]);
      if (first[r] < 0) first[r] = si;
      last[r] = si;
    }
  }
  for (int t = 0; t < nt; t++) {
    if (m->md[t].ndims == 0 || g->tensors[t].data) continue;
    int r = osseg__root(m, t);
    size_t b = dnnl_memory_desc_get_size(&m->md[t]);
    if (b > size[r]) size[r] = b;
  }
  int ng = 0;
  for (int t = 0; t < nt; t++) {
    if (first[t] < 0 || size[t] == 0 || osseg__root(m, t) != t) continue;
    size_t sz = (size[t] + ALIGN - 1) / ALIGN * ALIGN;
    gr[ng++] = (struct group){t, first[t], last[t], sz, 0};
  }
  qsort(gr, (size_t)ng, sizeof *gr, by_size_desc);
  size_t total = 0;
  for (int i = 0; i < ng; i++) {
    /* candidate offsets: 0 and the end of every conflicting placed group */
    int np = 0;
    for (int j = 0; j < i; j++)
      if (gr[j].first <= gr[i].last && gr[i].first <= gr[j].last) placed[np++] = j;
    size_t best = SIZE_MAX;
    for (int c = -1; c < np; c++) {
      size_t off = c < 0 ? 0 : gr[placed[c]].offset + gr[placed[c]].size;
      if (off >= best) continue;
      int ok = 1;
      for (int k = 0; k < np && ok; k++) {
        const struct group *o = &gr[placed[k]];
        if (off < o->offset + o->size && o->offset < off + gr[i].size) ok = 0;
      }
      if (ok) best = off;
    }
    gr[i].offset = best;
    if (best + gr[i].size > total) total = best + gr[i].size;
    if (m->opt.max_tensor_bytes && gr[i].size > m->opt.max_tensor_bytes) {
      err = osseg__fail(diag, OSSEG_ELIMIT, "tensor '%s' needs %zu bytes, over the limit",
                        g->tensors[gr[i].root].name, gr[i].size);
      goto done;
    }
  }
  for (int i = 0; i < ng; i++) g->tensors[gr[i].root].offset = (int64_t)gr[i].offset;
  m->arena_bytes = total;
done:
  osseg__free(first);
  osseg__free(last);
  osseg__free(size);
  osseg__free(gr);
  osseg__free(placed);
  return err;
}
