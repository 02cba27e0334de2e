/* osseg_model_check_ops: a model's op types against the op table, before
 * (and without) loading it. */
#include "engine_internal.h"

#include <string.h>

static void check_one(const struct osseg__op_use *u, int opset, struct osseg_op_check *c) {
  memset(c, 0, sizeof *c);
  c->name = u->op;
  c->domain = u->domain;
  c->count = u->count;
  if (u->domain[0]) {
    c->support = OSSEG_OP_OTHER_DOMAIN;
    return;
  }
  const struct osseg__op *op = NULL;
  for (int i = 0; i < osseg__op_table_size(); i++) {
    const char *family;
    const struct osseg__op *e = osseg__op_table_at(i, &family);
    if (strcmp(e->name, u->op) || (e->flags & OSSEG__OP_INTERNAL)) continue;
    op = e;
    c->family = family;
  }
  if (!op) {
    c->support = OSSEG_OP_UNKNOWN;
    return;
  }
  c->since = op->since < OSSEG__OPSET_MIN ? OSSEG__OPSET_MIN : op->since; /* (what the loader reads) */
  c->until = op->until;
  if (opset < op->since || opset > op->until) c->support = OSSEG_OP_OTHER_OPSET;
  else if (op->flags & OSSEG__OP_LOADER) c->support = OSSEG_OP_SUPPORTED;
  else if (op->flags & OSSEG__OP_IN_PATTERN) c->support = OSSEG_OP_IN_PATTERN;
  else if (!op->compile) c->support = OSSEG_OP_CONSTANTS_ONLY;
  else c->support = OSSEG_OP_SUPPORTED;
}

int osseg_model_check_ops(const char *path, int *opset,
                          void (*fn)(void *ctx, const struct osseg_op_check *c), void *ctx,
                          struct osseg_diag *diag) {
  if (!path || !opset || !fn) return osseg__fail(diag, OSSEG_EINVAL, "invalid arguments");
  void *map;
  size_t size;
  int err = osseg__map_file(path, 0, &map, &size, diag);
  if (err) return err;
  struct osseg__op_use *uses;
  int n;
  err = osseg__load_op_list(map, size, 0, opset, &uses, &n, diag);
  osseg__unmap_file(map, size);
  if (err) return err;
  for (int i = 0; i < n; i++) {
    struct osseg_op_check c;
    check_one(&uses[i], *opset, &c);
    fn(ctx, &c);
  }
  osseg__free(uses);
  return 0;
}
