/* Graph IR: storage, lookup, attribute access, constant element access. */
#include "ir.h"
#include "bf16.h"

#include <stdio.h>
#include <string.h>

size_t osseg__dtype_size(int dtype) {
  switch (dtype) {
    case OSSEG__DT_FLOAT: case OSSEG__DT_INT32: case OSSEG__DT_UINT32: return 4;
    case OSSEG__DT_UINT8: case OSSEG__DT_INT8: case OSSEG__DT_BOOL: return 1;
    case OSSEG__DT_UINT16: case OSSEG__DT_INT16: case OSSEG__DT_FLOAT16:
    case OSSEG__DT_BFLOAT16: return 2;
    case OSSEG__DT_INT64: case OSSEG__DT_DOUBLE: case OSSEG__DT_UINT64: return 8;
    default: return 0;
  }
}

const char *osseg__dtype_name(int dtype) {
  switch (dtype) {
    case OSSEG__DT_FLOAT: return "float32";
    case OSSEG__DT_UINT8: return "uint8";
    case OSSEG__DT_INT8: return "int8";
    case OSSEG__DT_UINT16: return "uint16";
    case OSSEG__DT_INT16: return "int16";
    case OSSEG__DT_INT32: return "int32";
    case OSSEG__DT_INT64: return "int64";
    case OSSEG__DT_STRING: return "string";
    case OSSEG__DT_BOOL: return "bool";
    case OSSEG__DT_FLOAT16: return "float16";
    case OSSEG__DT_DOUBLE: return "float64";
    case OSSEG__DT_UINT32: return "uint32";
    case OSSEG__DT_UINT64: return "uint64";
    case OSSEG__DT_BFLOAT16: return "bfloat16";
    default: return "unknown";
  }
}

void osseg__node_clear_attrs(struct osseg__node *n) {
  for (int a = 0; a < n->nattrs; a++) {
    osseg__free(n->attrs[a].name);
    osseg__free(n->attrs[a].s);
    osseg__free(n->attrs[a].ints);
    osseg__free(n->attrs[a].floats);
  }
  osseg__free(n->attrs);
  n->attrs = NULL;
  n->nattrs = 0;
}

void osseg__node_free(struct osseg__node *n) {
  osseg__free(n->name);
  osseg__free(n->op);
  osseg__free(n->in);
  osseg__free(n->out);
  osseg__node_clear_attrs(n);
}

void osseg__graph_free(struct osseg__graph *g) {
  if (!g) return;
  for (int i = 0; i < g->ntensors; i++) {
    osseg__free(g->tensors[i].name);
    osseg__free(g->tensors[i].data);
    osseg__free(g->tensors[i].qscale);
  }
  osseg__free(g->tensors);
  for (int i = 0; i < g->nnodes; i++) osseg__node_free(&g->nodes[i]);
  osseg__free(g->nodes);
  for (int i = 0; i < g->nmeta; i++) {
    osseg__free(g->meta[i].key);
    osseg__free(g->meta[i].value);
  }
  osseg__free(g->meta);
  for (int i = 0; i < g->nophist; i++) osseg__free(g->ophist_name[i]);
  osseg__free(g->ophist_name);
  osseg__free(g->ophist_count);
  osseg__free(g->hash);
  memset(g, 0, sizeof *g);
}

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int hash_insert(struct osseg__graph *g, int idx) {
  if ((size_t)(g->ntensors) * 2 >= g->hashcap) {
    size_t cap = g->hashcap ? g->hashcap * 2 : 256;
    int *h = osseg__malloc(cap * sizeof *h);
    if (!h) return OSSEG_ENOMEM;
    for (size_t i = 0; i < cap; i++) h[i] = -1;
    for (size_t i = 0; i < g->hashcap; i++) {
      int t = g->hash[i];
      if (t < 0) continue;
      size_t p = hash_str(g->tensors[t].name) & (cap - 1);
      while (h[p] >= 0) p = (p + 1) & (cap - 1);
      h[p] = t;
    }
    osseg__free(g->hash);
    g->hash = h;
    g->hashcap = cap;
  }
  size_t p = hash_str(g->tensors[idx].name) & (g->hashcap - 1);
  while (g->hash[p] >= 0) p = (p + 1) & (g->hashcap - 1);
  g->hash[p] = idx;
  return 0;
}

int osseg__graph_find(const struct osseg__graph *g, const char *name) {
  if (!g->hashcap || !name) return -1;
  size_t p = hash_str(name) & (g->hashcap - 1);
  while (g->hash[p] >= 0) {
    if (strcmp(g->tensors[g->hash[p]].name, name) == 0) return g->hash[p];
    p = (p + 1) & (g->hashcap - 1);
  }
  return -1;
}

int osseg__graph_reserve_tensors(struct osseg__graph *g, int extra) {
  if (extra < 0 || extra > (1 << 24) - g->ntensors) return OSSEG_ELIMIT;
  int cap = g->ntensors + extra;
  if (cap <= g->captensors) return 0;
  struct osseg__tensor *t = osseg__realloc(g->tensors, (size_t)cap * sizeof *t);
  if (!t) return OSSEG_ENOMEM;
  g->tensors = t;
  g->captensors = cap;
  return 0;
}

int osseg__graph_add_tensor(struct osseg__graph *g, const char *name, size_t namelen) {
  if (g->ntensors == g->captensors) {
    int cap = g->captensors ? g->captensors * 2 : 64;
    if (cap > (1 << 24)) return OSSEG_ELIMIT;
    struct osseg__tensor *t = osseg__realloc(g->tensors, (size_t)cap * sizeof *t);
    if (!t) return OSSEG_ENOMEM;
    g->tensors = t;
    g->captensors = cap;
  }
  struct osseg__tensor *t = &g->tensors[g->ntensors];
  memset(t, 0, sizeof *t);
  t->rank = -1;
  t->producer = -1;
  t->storage = -1;
  t->offset = -1;
  if (name) {
    t->name = osseg__strndup(name, namelen);
  } else {
    char buf[32];
    snprintf(buf, sizeof buf, "#%d", g->ntensors);
    t->name = osseg__strndup(buf, sizeof buf);
  }
  if (!t->name) return OSSEG_ENOMEM;
  int idx = g->ntensors++;
  int err = hash_insert(g, idx);
  if (err) {
    osseg__free(t->name);
    g->ntensors--;
    return err;
  }
  return idx;
}

int osseg__dims_elems(const int64_t *dims, int rank, size_t *elems) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0) return OSSEG_ESHAPE;
    if (osseg__mul_i64(n, dims[i], &n)) return OSSEG_EOVERFLOW;
  }
  *elems = (size_t)n;
  return 0;
}

int osseg__tensor_elems(const struct osseg__graph *g, const struct osseg__tensor *t,
                        size_t *elems) {
  if (t->rank < 0) return OSSEG_ESHAPE;
  int err = osseg__dims_elems(t->dims, t->rank, elems);
  if (err) return err;
  size_t bytes;
  size_t es = osseg__dtype_size(t->dtype);
  if (osseg__mul_size(*elems, es ? es : 1, &bytes)) return OSSEG_EOVERFLOW;
  if (g && g->max_tensor_bytes && bytes > g->max_tensor_bytes) return OSSEG_ELIMIT;
  return 0;
}

int osseg__tensor_alloc_const(struct osseg__graph *g, struct osseg__tensor *t,
                              struct osseg_diag *diag) {
  size_t n;
  int err = osseg__tensor_elems(g, t, &n);
  if (err)
    return osseg__fail(diag, err, "tensor '%s': size %s", t->name,
                       err == OSSEG_ELIMIT ? "exceeds the tensor limit" : "invalid");
  size_t es = osseg__dtype_size(t->dtype);
  if (!es) return osseg__fail(diag, OSSEG_EUNSUPPORTED, "tensor '%s': dtype %s", t->name,
                              osseg__dtype_name(t->dtype));
  osseg__free(t->data);
  t->nbytes = n * es;
  t->data = osseg__calloc(n ? n : 1, es);
  if (!t->data) return osseg__fail(diag, OSSEG_ENOMEM, "tensor '%s': out of memory", t->name);
  return 0;
}

const struct osseg__attr *osseg__attr_find(const struct osseg__node *n, const char *name) {
  for (int i = 0; i < n->nattrs; i++)
    if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
  return NULL;
}

int64_t osseg__attr_int(const struct osseg__node *n, const char *name, int64_t dflt) {
  const struct osseg__attr *a = osseg__attr_find(n, name);
  return a && a->type == OSSEG__ATTR_INT ? a->i : dflt;
}

float osseg__attr_float(const struct osseg__node *n, const char *name, float dflt) {
  const struct osseg__attr *a = osseg__attr_find(n, name);
  if (a && a->type == OSSEG__ATTR_FLOAT) return a->f;
  if (a && a->type == OSSEG__ATTR_INT) return (float)a->i;
  return dflt;
}

const char *osseg__attr_str(const struct osseg__node *n, const char *name, const char *dflt) {
  const struct osseg__attr *a = osseg__attr_find(n, name);
  return a && a->type == OSSEG__ATTR_STRING ? a->s : dflt;
}

int64_t osseg__const_i64(const struct osseg__tensor *t, size_t i) {
  const void *d = t->data;
  switch (t->dtype) {
    case OSSEG__DT_INT64: return ((const int64_t *)d)[i];
    case OSSEG__DT_INT32: return ((const int32_t *)d)[i];
    case OSSEG__DT_UINT32: return ((const uint32_t *)d)[i];
    case OSSEG__DT_UINT64: return (int64_t)((const uint64_t *)d)[i];
    case OSSEG__DT_INT16: return ((const int16_t *)d)[i];
    case OSSEG__DT_UINT16: return ((const uint16_t *)d)[i];
    case OSSEG__DT_INT8: return ((const int8_t *)d)[i];
    case OSSEG__DT_UINT8: case OSSEG__DT_BOOL: return ((const uint8_t *)d)[i];
    default: {
      double v = osseg__const_f64(t, i);
      if (!(v == v)) return 0;
      if (v >= 9.2e18) return INT64_MAX;
      if (v <= -9.2e18) return INT64_MIN;
      return (int64_t)v;
    }
  }
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {
      exp = 127 - 15 + 1;
      while (!(man & 1024)) { man <<= 1; exp--; }
      u = sign | (exp << 23) | ((man & 1023) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

double osseg__const_f64(const struct osseg__tensor *t, size_t i) {
  const void *d = t->data;
  switch (t->dtype) {
    case OSSEG__DT_FLOAT: return ((const float *)d)[i];
    case OSSEG__DT_DOUBLE: return ((const double *)d)[i];
    case OSSEG__DT_FLOAT16: return f16_to_f32(((const uint16_t *)d)[i]);
    case OSSEG__DT_BFLOAT16: return osseg__bf16_f32(((const uint16_t *)d)[i]);
    default: return (double)osseg__const_i64(t, i);
  }
}
