/* Graph-editing helpers shared by the passes: use counts and dead-node
 * elimination, node lookups (producer, consumers, scalar constants), and
 * in-place edits of a node's op, inputs and attributes. */
#include "graph_edit.h"

#include <math.h>
#include <string.h>

void osseg__count_uses(struct osseg__graph *g) {
  for (int i = 0; i < g->ntensors; i++) g->tensors[i].uses = 0;
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] >= 0) g->tensors[n->in[i]].uses++;
    for (int p = 0; p < n->npost; p++)
      if (n->post[p].kind == OSSEG__POST_SUM) g->tensors[n->post[p].arg].uses++;
  }
  g->tensors[g->output].uses++;
}

static char *dupstr(const char *s) {
  size_t l = strlen(s) + 1;
  char *d = osseg__malloc(l);
  if (d) memcpy(d, s, l);
  return d;
}

int osseg__set_op(struct osseg__node *n, const char *op) {
  char *s = dupstr(op);
  if (!s) return OSSEG_ENOMEM;
  osseg__free(n->op);
  n->op = s;
  return 0;
}

struct osseg__attr *osseg__add_attr(struct osseg__node *n, const char *name, int type) {
  struct osseg__attr *a = osseg__realloc(n->attrs, (size_t)(n->nattrs + 1) * sizeof *a);
  if (!a) return NULL;
  n->attrs = a;
  a = &n->attrs[n->nattrs];
  memset(a, 0, sizeof *a);
  a->name = dupstr(name);
  if (!a->name) return NULL;
  a->type = type;
  a->tensor = -1;
  n->nattrs++;
  return a;
}

int osseg__add_attr_float(struct osseg__node *n, const char *name, float f) {
  struct osseg__attr *a = osseg__add_attr(n, name, OSSEG__ATTR_FLOAT);
  if (!a) return OSSEG_ENOMEM;
  a->f = f;
  return 0;
}

int osseg__add_attr_int(struct osseg__node *n, const char *name, int64_t i) {
  struct osseg__attr *a = osseg__add_attr(n, name, OSSEG__ATTR_INT);
  if (!a) return OSSEG_ENOMEM;
  a->i = i;
  return 0;
}

int osseg__add_attr_ints(struct osseg__node *n, const char *name, const int64_t *v, size_t cnt) {
  struct osseg__attr *a = osseg__add_attr(n, name, OSSEG__ATTR_INTS);
  if (!a) return OSSEG_ENOMEM;
  a->ints = osseg__malloc(cnt * sizeof(int64_t));
  if (!a->ints) return OSSEG_ENOMEM;
  memcpy(a->ints, v, cnt * sizeof(int64_t));
  a->n = cnt;
  return 0;
}

int osseg__set_inputs(struct osseg__node *n, const int *in, int nin) {
  int *p = osseg__realloc(n->in, (size_t)(nin > 0 ? nin : 1) * sizeof(int));
  if (!p) return OSSEG_ENOMEM;
  n->in = p;
  memcpy(p, in, sizeof(int) * (size_t)nin);
  n->nin = nin;
  return 0;
}

int osseg__reads(const struct osseg__node *n, int t) {
  int uses = 0;
  for (int i = 0; i < n->nin; i++) uses += n->in[i] == t;
  for (int p = 0; p < n->npost; p++) uses += n->post[p].kind == OSSEG__POST_SUM && n->post[p].arg == t;
  return uses;
}

/* Live consumers of tensor t: count and the first one (index). */
int osseg__consumers(const struct osseg__graph *g, int t, int *first) {
  int c = 0;
  *first = -1;
  for (int ni = 0; ni < g->nnodes; ni++) {
    const struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    const int uses = osseg__reads(n, t);
    if (uses && *first < 0) *first = ni;
    c += uses;
  }
  if (t == g->output) c++;
  return c;
}

/* The single live consumer of t (and t is not the graph output), or NULL. */
struct osseg__node *osseg__only_consumer(struct osseg__graph *g, int t) {
  int first;
  if (t < 0 || osseg__consumers(g, t, &first) != 1 || first < 0) return NULL;
  return &g->nodes[first];
}

struct osseg__node *osseg__producer(struct osseg__graph *g, int t, const char *op) {
  if (t < 0) return NULL;
  int p = g->tensors[t].producer;
  if (p < 0 || g->nodes[p].dead || g->nodes[p].nout < 1 || g->nodes[p].out[0] != t) return NULL;
  return op && strcmp(g->nodes[p].op, op) ? NULL : &g->nodes[p];
}

/* Value of a constant tensor with exactly one element, else NAN. */
double osseg__const_scalar(const struct osseg__graph *g, int t) {
  if (t < 0 || !g->tensors[t].data) return NAN;
  size_t e;
  if (osseg__tensor_elems(g, &g->tensors[t], &e) || e != 1) return NAN;
  return osseg__const_f64(&g->tensors[t], 0);
}

/* Other input of binary node n than t (or -1 if t is not an input). */
int osseg__other_input(const struct osseg__node *n, int t) {
  if (n->nin != 2) return -1;
  if (n->in[0] == t) return n->in[1];
  if (n->in[1] == t) return n->in[0];
  return -1;
}

int osseg__new_const(struct osseg__graph *g, int rank, const int64_t *dims,
                     struct osseg_diag *diag) {
  int t = osseg__graph_add_tensor(g, NULL, 0);
  if (t < 0) return osseg__fail(diag, t, "out of memory");
  struct osseg__tensor *c = &g->tensors[t];
  c->dtype = OSSEG__DT_FLOAT;
  c->rank = rank;
  memcpy(c->dims, dims, sizeof(int64_t) * (size_t)rank);
  c->producer = -1;
  int err = osseg__tensor_alloc_const(g, c, diag);
  return err ? err : t;
}

void osseg__eliminate_dead(struct osseg__graph *g) {
  osseg__count_uses(g);
  for (int ni = g->nnodes - 1; ni >= 0; ni--) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    int used = 0;
    for (int o = 0; o < n->nout; o++)
      used |= n->out[o] >= 0 && (g->tensors[n->out[o]].uses > 0 || n->out[o] == g->output);
    if (used) continue;
    n->dead = 1;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] >= 0) g->tensors[n->in[i]].uses--;
    for (int p = 0; p < n->npost; p++)
      if (n->post[p].kind == OSSEG__POST_SUM) g->tensors[n->post[p].arg].uses--;
  }
  osseg__count_uses(g);
}

void osseg__rewire(struct osseg__graph *g, int from, int to) {
  for (int ni = 0; ni < g->nnodes; ni++) {
    struct osseg__node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int i = 0; i < n->nin; i++)
      if (n->in[i] == from) n->in[i] = to;
    for (int p = 0; p < n->npost; p++)
      if (n->post[p].kind == OSSEG__POST_SUM && n->post[p].arg == from) n->post[p].arg = to;
  }
  if (g->output == from) g->output = to;
}
