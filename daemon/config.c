/* The configuration file: libinih splits it into sections and keys; this
 * file checks every key and maps it onto struct ossegd_options (see
 * ossegd.h; every key is documented in systemd/ossegd.conf.example).
 *
 * libinih is fed through our own reader (ini_parse_stream) for three
 * reasons: Debian's libinih is built without INI_HANDLER_LINENO, so the
 * reader counts lines for the messages; it sees section headers, which
 * libinih reports to nobody (an empty or repeated section would otherwise
 * pass unnoticed); and it reports every malformed line, where libinih
 * returns only the first. */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon_internal.h"

#define MAX_FILE_BYTES (1u << 20) /* a config file larger than this is refused */
#define MAX_ERRORS 100            /* reported; the rest are counted */

/* A string the config owns. */
struct cfg_string {
  struct cfg_string *next;
  char s[];
};

struct ossegd_config {
  struct ossegd_options opt;
  /* The class thresholds of opt.models[i] (its spec points here). */
  struct osseg_class_threshold thresholds[OSSEGD_MAX_MODELS][OSSEG_MAX_CLASSES];
  /* Models set by ossegd_config_set_model, whose file ossegd_config_check
   * still has to look at (those of the file were checked with their line). */
  unsigned char unchecked[OSSEGD_MAX_MODELS];
  struct cfg_string *strings;
};

static const char *keep_n(struct ossegd_config *c, const char *s, size_t n) {
  struct cfg_string *k = malloc(sizeof *k + n + 1);
  if (!k) return NULL;
  memcpy(k->s, s, n);
  k->s[n] = '\0';
  k->next = c->strings;
  c->strings = k;
  return k->s;
}

static const char *keep(struct ossegd_config *c, const char *s) {
  return s ? keep_n(c, s, strlen(s)) : NULL;
}

int ossegd_config_create(struct ossegd_config **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return OSSEG_ENOMEM;
  ossegd_options_default(&(*out)->opt);
  (*out)->opt.audit_file = "stderr";
  return 0;
}

void ossegd_config_free(struct ossegd_config *c) {
  if (!c) return;
  while (c->strings) {
    struct cfg_string *next = c->strings->next;
    free(c->strings);
    c->strings = next;
  }
  free(c);
}

struct ossegd_options *ossegd_config_options(struct ossegd_config *c) { return &c->opt; }

int ossegd_config_set_model(struct ossegd_config *c, const struct osseg_model_spec *spec) {
  if (!spec->name) return OSSEG_EINVAL;
  if (spec->nclass_thresholds > OSSEG_MAX_CLASSES) return OSSEG_ELIMIT;
  size_t i = 0;
  while (i < c->opt.nmodels && strcmp(c->opt.models[i].name, spec->name) != 0) i++;
  if (i == OSSEGD_MAX_MODELS) return OSSEG_ELIMIT;
  /* Copied first: spec may point into the slot being replaced. */
  struct osseg_model_spec m = *spec;
  struct osseg_class_threshold ct[OSSEG_MAX_CLASSES];
  for (size_t k = 0; k < spec->nclass_thresholds; k++) {
    ct[k].name = keep(c, spec->class_thresholds[k].name);
    ct[k].threshold = spec->class_thresholds[k].threshold;
    if (!ct[k].name) return OSSEG_ENOMEM;
  }
  m.name = keep(c, spec->name);
  m.path = keep(c, spec->path);
  m.normalize = keep(c, spec->normalize);
  m.classes = keep(c, spec->classes);
  if (!m.name || (spec->path && !m.path) || (spec->normalize && !m.normalize) ||
      (spec->classes && !m.classes))
    return OSSEG_ENOMEM;
  memcpy(c->thresholds[i], ct, spec->nclass_thresholds * sizeof *ct);
  m.class_thresholds = c->thresholds[i];
  c->opt.models[i] = m;
  c->unchecked[i] = 1;
  if (i == c->opt.nmodels) c->opt.nmodels++;
  return 0;
}

/* A model file must be a readable regular file. Returns 0, or -1 with the
 * problem in msg. */
static int check_model_file(const char *path, char *msg, size_t size) {
  struct stat st;
  if (stat(path, &st) != 0) {
    snprintf(msg, size, "%s: %s", path, strerror(errno));
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(msg, size, "%s: not a regular file", path);
    return -1;
  }
  /* O_NONBLOCK: the file could have become a FIFO since the stat. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    snprintf(msg, size, "%s: cannot be read: %s", path, strerror(errno));
    return -1;
  }
  close(fd);
  return 0;
}

/* --------------------------------------------------------------- parse --- */

struct header {
  char *name;   /* as written, trimmed */
  int line;
  int skip;     /* unknown, repeated or invalid: its keys are not looked at */
  int model;    /* index in opt.models for [model NAME], else -1 */
  int bad;      /* a key of it was reported */
};

struct seen {
  size_t header;
  char *key;
  int line;
};

struct error {
  int line; /* 0: the whole file */
  char *msg;
};

struct parser {
  struct ossegd_config *c;
  const char *path;
  /* The reader. */
  const char *buf;
  size_t len, pos;
  int line;          /* of the text last handed to libinih */
  int at_line_start;
  struct header *hdr;
  size_t nhdr;
  struct seen *keys;
  size_t nkeys;
  struct error *err;
  size_t nerr;
  int oom;
};

static void add_error(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_error(struct parser *p, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct error *e = realloc(p->err, (p->nerr + 1) * sizeof *e);
  if (!e) {
    p->oom = 1;
    return;
  }
  p->err = e;
  e[p->nerr].line = line;
  e[p->nerr].msg = strdup(msg);
  if (!e[p->nerr].msg) {
    p->oom = 1;
    return;
  }
  p->nerr++;
}

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v'; }

static const char *const sections[] = {"socket", "access", "limits", "daemon", "audit",
                                       "metrics"};

/* A section header [name] at line p->line: known, not repeated, and for
 * [model NAME] a fresh model slot. */
static void add_header(struct parser *p, const char *text, size_t n) {
  while (n > 0 && is_space(*text)) text++, n--;
  while (n > 0 && is_space(text[n - 1])) n--;
  struct header *h = realloc(p->hdr, (p->nhdr + 1) * sizeof *h);
  if (!h) {
    p->oom = 1;
    return;
  }
  p->hdr = h;
  h = &p->hdr[p->nhdr];
  memset(h, 0, sizeof *h);
  h->line = p->line;
  h->model = -1;
  h->name = malloc(n + 1);
  if (!h->name) {
    p->oom = 1;
    return;
  }
  /* Runs of spaces become one: "model   a" is "model a". */
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_space(text[i]))
      h->name[k++] = text[i];
    else if (h->name[k - 1] != ' ') /* text[0] is no space */
      h->name[k++] = ' ';
  }
  h->name[k] = '\0';
  p->nhdr++;

  for (size_t i = 0; i + 1 < p->nhdr; i++)
    if (strcmp(p->hdr[i].name, h->name) == 0) {
      add_error(p, h->line, "section [%s] again (first at line %d); give each section once",
                h->name, p->hdr[i].line);
      h->skip = 1;
      return;
    }
  if (strncmp(h->name, "model", 5) == 0 && (h->name[5] == ' ' || h->name[5] == '\0')) {
    const char *name = h->name[5] ? h->name + 6 : "";
    if (!osseg_model_name_valid(name)) {
      add_error(p, h->line,
                "[%s]: a model section is [model NAME], NAME 1..%d characters of A-Z a-z "
                "0-9 . _ + -",
                h->name, OSSEG_MAX_MODEL_NAME - 1);
      h->skip = 1;
      return;
    }
    struct ossegd_options *o = &p->c->opt;
    if (o->nmodels == OSSEGD_MAX_MODELS) {
      add_error(p, h->line, "[%s]: more than %d models", h->name, OSSEGD_MAX_MODELS);
      h->skip = 1;
      return;
    }
    h->model = (int)o->nmodels;
    memset(&o->models[o->nmodels], 0, sizeof o->models[0]);
    o->models[o->nmodels].name = keep(p->c, name);
    o->models[o->nmodels].class_thresholds = p->c->thresholds[o->nmodels];
    if (!o->models[o->nmodels].name) p->oom = 1;
    o->nmodels++;
    return;
  }
  for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
    if (strcmp(h->name, sections[i]) == 0) return;
  add_error(p, h->line,
            "unknown section [%s] (sections: socket, access, limits, daemon, audit, metrics, "
            "model NAME)",
            h->name);
  h->skip = 1;
}

/* Looks at one whole line before libinih does: headers, malformed lines. */
static void scan_line(struct parser *p, const char *s, size_t n) {
  while (n > 0 && is_space(*s)) s++, n--;
  while (n > 0 && (is_space(s[n - 1]) || s[n - 1] == '\n')) n--;
  if (n == 0 || *s == ';' || *s == '#') return;
  if (*s == '[') {
    const char *end = memchr(s, ']', n);
    if (!end) {
      add_error(p, p->line, "a section header needs a closing ']'");
      return;
    }
    add_header(p, s + 1, (size_t)(end - s - 1));
    return;
  }
  /* libinih stops looking for '=' or ':' at an inline comment (" ;"). */
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '=' || s[i] == ':') return;
    if (s[i] == ';' && i > 0 && is_space(s[i - 1])) break;
  }
  add_error(p, p->line, "expected a [section] or key = value");
}

/* fgets-like: hands libinih the file piece by piece, a line at most. */
static char *reader(char *str, int num, void *stream) {
  struct parser *p = stream;
  if (p->pos >= p->len || num < 2) return NULL;
  if (p->at_line_start) {
    p->line++;
    const char *nl = memchr(p->buf + p->pos, '\n', p->len - p->pos);
    scan_line(p, p->buf + p->pos, nl ? (size_t)(nl - (p->buf + p->pos)) : p->len - p->pos);
    p->at_line_start = 0;
  }
  size_t n = 0, max = (size_t)num - 1;
  while (n < max && p->pos < p->len) {
    char ch = p->buf[p->pos++];
    str[n++] = ch;
    if (ch == '\n') {
      p->at_line_start = 1;
      break;
    }
  }
  str[n] = '\0';
  return str;
}

/* ----------------------------------------------------------- the keys --- */

/* A whole decimal number in lo..hi; with bytes, an optional binary suffix
 * (KiB, MiB, GiB, TiB, with or without a space). 0 or -1. */
static int parse_number(const char *s, uint64_t lo, uint64_t hi, int bytes, uint64_t *out) {
  if (*s < '0' || *s > '9') return -1;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; s++)
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
      return -1;
  if (*s && bytes) {
    if (*s == ' ') s++;
    static const char *const sfx[] = {"KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (k < 4 && strcmp(s, sfx[k]) != 0) k++;
    if (k == 4) return -1;
    if (__builtin_mul_overflow(v, (uint64_t)1 << (10 * (k + 1)), &v)) return -1;
    s += strlen(s);
  }
  if (*s || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

enum num_type { T_UNSIGNED, T_U32, T_U64, T_INT };

struct num_key {
  const char *section, *key;
  size_t offset;
  enum num_type type;
  uint64_t lo, hi;
  const char *unit; /* "bytes" takes suffixes */
};

#define OPT(field) offsetof(struct ossegd_options, field)
static const struct num_key num_keys[] = {
    {"limits", "max_frame_bytes", OPT(max_frame_bytes), T_U64, 16, UINT32_MAX, "bytes"},
    {"limits", "max_image_pixels", OPT(max_image_pixels), T_U64, 1, OSSEG_MAX_PIXELS, "pixels"},
    {"limits", "max_image_side", OPT(max_image_side), T_U32, 1, OSSEG_MAX_SIDE, "pixels"},
    {"limits", "max_connections", OPT(max_connections), T_UNSIGNED, 1, 1000000, "connections"},
    {"limits", "max_in_flight", OPT(max_in_flight), T_UNSIGNED, 1, 1000000, "requests"},
    {"limits", "max_in_flight_total", OPT(max_in_flight_total), T_UNSIGNED, 1, 1000000,
     "requests"},
    {"limits", "max_queue", OPT(max_queue), T_UNSIGNED, 1, 1000000, "requests"},
    {"limits", "max_output_bytes", OPT(max_output_bytes), T_U64, 1, UINT64_MAX / 2, "bytes"},
    {"limits", "request_timeout_ms", OPT(request_timeout_ms), T_U32, 0, 86400000,
     "milliseconds"},
    {"daemon", "threads", OPT(engine.threads), T_INT, 0, 1024, "threads"},
    {"daemon", "workers", OPT(workers), T_UNSIGNED, 1, 64, "threads"},
    {"daemon", "workspace_bytes", OPT(workspace_bytes), T_U64, 0, (uint64_t)1 << 50, "bytes"},
    {"daemon", "drain_timeout_ms", OPT(drain_timeout_ms), T_U32, 0, 3600000, "milliseconds"},
    {"metrics", "interval_ms", OPT(metrics_interval_ms), T_U32, 10, 86400000, "milliseconds"},
};
#undef OPT

static void set_number(struct ossegd_options *o, const struct num_key *k, uint64_t v) {
  char *f = (char *)o + k->offset;
  switch (k->type) {
    case T_UNSIGNED: *(unsigned *)(void *)f = (unsigned)v; break;
    case T_U32: *(uint32_t *)(void *)f = (uint32_t)v; break;
    case T_U64: *(uint64_t *)(void *)f = v; break;
    case T_INT: *(int *)(void *)f = (int)v; break;
  }
}

static int parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"yes", "true", "on", "1"};
  static const char *const no[] = {"no", "false", "off", "0"};
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, yes[i]) == 0) return *out = 1, 0;
    if (strcmp(s, no[i]) == 0) return *out = 0, 0;
  }
  return -1;
}

/* A probability threshold in (0, 1). */
static int parse_probability(const char *s, float *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !isfinite(v) || !(v > 0.0 && v < 1.0)) return -1;
  float f = (float)v;
  if (!(f > 0.0f && f < 1.0f)) return -1;
  *out = f;
  return 0;
}

/* A list of user or group names and ids, separated by commas or spaces,
 * each resolved now. */
static void access_list(struct parser *p, int line, const char *key, const char *value,
                        const char **list, size_t *n, int users) {
  const char *s = value;
  size_t count = 0;
  int failed = 0;
  while (*s) {
    while (*s == ',' || is_space(*s)) s++;
    if (!*s) break;
    size_t len = 0;
    while (s[len] && s[len] != ',' && !is_space(s[len])) len++;
    char item[256];
    if (len >= sizeof item) {
      add_error(p, line, "[access] %s: '%.40s...' is too long for a name", key, s);
      return;
    }
    memcpy(item, s, len);
    item[len] = '\0';
    s += len;
    if (count == OSSEGD_MAX_ACCESS) {
      add_error(p, line, "[access] %s: at most %d entries", key, OSSEGD_MAX_ACCESS);
      return;
    }
    uid_t uid;
    gid_t gid;
    int rc = users ? ossegd__parse_user(item, &uid) : ossegd__parse_group(item, &gid);
    if (rc == OSSEG_ENOMEM) {
      p->oom = 1;
      return;
    }
    if (rc) {
      add_error(p, line, "[access] %s: %s '%s'", key,
                rc == OSSEG_ENOTFOUND ? (users ? "no such user" : "no such group")
                                      : "not a valid id:",
                item);
      failed = 1;
      continue;
    }
    list[count] = keep(p->c, item);
    if (!list[count]) p->oom = 1;
    count++;
  }
  if (count == 0 && !failed)
    add_error(p, line,
              "[access] %s: an empty list; leave the key out to let in everyone who can open "
              "the socket",
              key);
  *n = count;
}

static int absolute(struct parser *p, int line, const char *sec, const char *key,
                    const char *value) {
  if (value[0] == '/') return 1;
  add_error(p, line, "[%s] %s: '%s' is not an absolute path", sec, key, value);
  return 0;
}

static void key_socket(struct parser *p, int line, const char *key, const char *value) {
  struct ossegd_options *o = &p->c->opt;
  if (strcmp(key, "path") == 0) {
    if (!absolute(p, line, "socket", key, value)) return;
    if (strlen(value) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
      add_error(p, line, "[socket] path: longer than %zu bytes (a Unix socket limit)",
                sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
      return;
    }
    o->socket_path = keep(p->c, value);
  } else if (strcmp(key, "mode") == 0) {
    unsigned v = 0;
    const char *s = value;
    for (; *s >= '0' && *s <= '7' && v <= 0777; s++) v = v * 8 + (unsigned)(*s - '0');
    if (s == value || *s || v > 0777) {
      add_error(p, line, "[socket] mode: '%s' is not octal permission bits 0000..0777", value);
      return;
    }
    o->socket_mode = v;
  } else if (strcmp(key, "group") == 0) {
    gid_t g;
    int rc = ossegd__parse_group(value, &g);
    if (rc == OSSEG_ENOMEM) p->oom = 1;
    else if (rc)
      add_error(p, line, "[socket] group: %s '%s'",
                rc == OSSEG_ENOTFOUND ? "no such group" : "not a valid group id:", value);
    else o->socket_group = keep(p->c, value);
  } else {
    add_error(p, line, "unknown key '%s' in [socket] (keys: path, mode, group)", key);
  }
}

/* A file the daemon will write: an absolute path in a folder that exists
 * (the file itself is created when the daemon starts), not a folder. The
 * kept copy, or NULL when reported. */
static const char *output_path(struct parser *p, int line, const char *sec, const char *key,
                               const char *value) {
  if (!absolute(p, line, sec, key, value)) return NULL;
  const char *slash = strrchr(value, '/');
  char dir[4096];
  size_t n = slash == value ? 1 : (size_t)(slash - value);
  struct stat st;
  if (n >= sizeof dir || slash[1] == '\0') {
    add_error(p, line, "[%s] %s: '%s' is not a file name", sec, key, value);
    return NULL;
  }
  memcpy(dir, value, n);
  dir[n] = '\0';
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    add_error(p, line, "[%s] %s: the folder %s does not exist", sec, key, dir);
    return NULL;
  }
  if (stat(value, &st) == 0 && S_ISDIR(st.st_mode)) {
    add_error(p, line, "[%s] %s: %s is a folder", sec, key, value);
    return NULL;
  }
  const char *k = keep(p->c, value);
  if (!k) p->oom = 1;
  return k;
}

static void key_metrics(struct parser *p, int line, const char *key, const char *value) {
  if (strcmp(key, "file") == 0) {
    const char *path = output_path(p, line, "metrics", key, value);
    if (path) p->c->opt.metrics_file = path;
  } else {
    add_error(p, line, "unknown key '%s' in [metrics] (keys: file, interval_ms)", key);
  }
}

static void key_audit(struct parser *p, int line, const char *key, const char *value) {
  struct ossegd_options *o = &p->c->opt;
  if (strcmp(key, "file") == 0) {
    if (strcmp(value, "stderr") == 0) {
      o->audit_file = "stderr";
    } else if (strcmp(value, "none") == 0) {
      o->audit_file = NULL;
    } else {
      const char *path = output_path(p, line, "audit", key, value);
      if (path) o->audit_file = path;
    }
  } else if (strcmp(key, "include_image_name") == 0) {
    if (parse_bool(value, &o->audit_image_name) != 0)
      add_error(p, line, "[audit] include_image_name: '%s' is not yes or no", value);
  } else {
    add_error(p, line, "unknown key '%s' in [audit] (keys: file, include_image_name)", key);
  }
}

static void key_model(struct parser *p, int line, struct header *h, const char *key,
                      const char *value) {
  struct osseg_model_spec *m = &p->c->opt.models[h->model];
  if (strcmp(key, "path") == 0) {
    char msg[600];
    if (!absolute(p, line, h->name, key, value)) return;
    if (check_model_file(value, msg, sizeof msg) != 0) {
      add_error(p, line, "[%s] path: %s", h->name, msg);
      return;
    }
    m->path = keep(p->c, value);
  } else if (strcmp(key, "size") == 0) {
    uint64_t v;
    if (parse_number(value, 1, OSSEG_MAX_SIDE, 0, &v) != 0)
      add_error(p, line, "[%s] size: '%s' is not an input size of 1..%d pixels", h->name,
                value, OSSEG_MAX_SIDE);
    else m->input_size = (int64_t)v;
  } else if (strcmp(key, "precision") == 0) {
    if (osseg_precision_parse(value, &m->precision) != 0)
      add_error(p, line, "[%s] precision: '%s' is not fp32, bf16, bf16-mixed, int8 or auto", h->name, value);
  } else if (strcmp(key, "normalize") == 0) {
    m->normalize = keep(p->c, value); /* checked with the whole section */
  } else if (strcmp(key, "classes") == 0) {
    m->classes = keep(p->c, value);
  } else if (strcmp(key, "threshold") == 0) {
    if (parse_probability(value, &m->threshold) != 0)
      add_error(p, line, "[%s] threshold: '%s' is not a probability in (0, 1)", h->name, value);
  } else if (strncmp(key, "threshold.", 10) == 0 && key[10]) {
    float t;
    if (parse_probability(value, &t) != 0) {
      add_error(p, line, "[%s] %s: '%s' is not a probability in (0, 1)", h->name, key, value);
      return;
    }
    if (m->nclass_thresholds == OSSEG_MAX_CLASSES) {
      add_error(p, line, "[%s] %s: more than %d class thresholds", h->name, key,
                OSSEG_MAX_CLASSES);
      return;
    }
    struct osseg_class_threshold *ct = &p->c->thresholds[h->model][m->nclass_thresholds];
    ct->name = keep(p->c, key + 10);
    ct->threshold = t;
    if (!ct->name) p->oom = 1;
    m->nclass_thresholds++;
  } else {
    add_error(p, line,
              "unknown key '%s' in [%s] (keys: path, size, precision, normalize, classes, "
              "threshold, threshold.CLASS)",
              key, h->name);
  }
}

static int handler(void *user, const char *section, const char *key, const char *value) {
  struct parser *p = user;
  int line = p->line;
  (void)section; /* the reader's header is the same, with its line */
  if (p->nhdr == 0) {
    add_error(p, line, "'%s' is outside any section; put it under one ([socket], ...)", key);
    return 1;
  }
  size_t hi = p->nhdr - 1;
  struct header *h = &p->hdr[hi];
  if (h->skip) return 1;
  for (size_t i = 0; i < p->nkeys; i++)
    if (p->keys[i].header == hi && strcmp(p->keys[i].key, key) == 0) {
      add_error(p, line, "[%s] %s given again (first at line %d)", h->name, key,
                p->keys[i].line);
      return 1;
    }
  struct seen *k = realloc(p->keys, (p->nkeys + 1) * sizeof *k);
  if (!k || !(k[p->nkeys].key = strdup(key))) {
    if (k) p->keys = k;
    p->oom = 1;
    return 1;
  }
  p->keys = k;
  k[p->nkeys].header = hi;
  k[p->nkeys].line = line;
  p->nkeys++;

  if (!value[0]) {
    add_error(p, line, "[%s] %s has no value", h->name, key);
    h->bad = 1;
    return 1;
  }
  if (h->model >= 0) {
    size_t before = p->nerr;
    key_model(p, line, h, key, value);
    h->bad |= p->nerr > before;
    return 1;
  }
  for (size_t i = 0; i < sizeof num_keys / sizeof *num_keys; i++) {
    const struct num_key *nk = &num_keys[i];
    if (strcmp(h->name, nk->section) != 0 || strcmp(key, nk->key) != 0) continue;
    int bytes = strcmp(nk->unit, "bytes") == 0;
    uint64_t v;
    if (parse_number(value, nk->lo, nk->hi, bytes, &v) != 0)
      add_error(p, line, "[%s] %s: '%s' is not a whole number of %s in %llu..%llu%s", h->name,
                key, value, nk->unit, (unsigned long long)nk->lo, (unsigned long long)nk->hi,
                bytes ? " (or with a suffix: KiB, MiB, GiB, TiB)" : "");
    else
      set_number(&p->c->opt, nk, v);
    return 1;
  }
  struct ossegd_options *o = &p->c->opt;
  if (strcmp(h->name, "socket") == 0) {
    key_socket(p, line, key, value);
  } else if (strcmp(h->name, "access") == 0 && strcmp(key, "users") == 0) {
    access_list(p, line, key, value, o->allow_users, &o->nallow_users, 1);
  } else if (strcmp(h->name, "access") == 0 && strcmp(key, "groups") == 0) {
    access_list(p, line, key, value, o->allow_groups, &o->nallow_groups, 0);
  } else if (strcmp(h->name, "audit") == 0) {
    key_audit(p, line, key, value);
  } else if (strcmp(h->name, "metrics") == 0) {
    key_metrics(p, line, key, value);
  } else {
    /* Name the keys the section has. */
    char keys[512] = "";
    for (size_t i = 0; i < sizeof num_keys / sizeof *num_keys; i++)
      if (strcmp(num_keys[i].section, h->name) == 0)
        snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", keys[0] ? ", " : "",
                 num_keys[i].key);
    if (strcmp(h->name, "access") == 0) snprintf(keys, sizeof keys, "users, groups");
    add_error(p, line, "unknown key '%s' in [%s] (keys: %s)", key, h->name, keys);
  }
  return 1;
}

/* What a section can only tell as a whole: a model has a file, and its
 * options fit together. */
static void finish_models(struct parser *p) {
  for (size_t i = 0; i < p->nhdr; i++) {
    const struct header *h = &p->hdr[i];
    if (h->model < 0) continue;
    const struct osseg_model_spec *m = &p->c->opt.models[h->model];
    /* A key already reported (a bad path, say) is not reported again. */
    if (h->bad) continue;
    if (!m->path) {
      add_error(p, h->line, "[%s]: no path (the model's ONNX file)", h->name);
      continue;
    }
    struct osseg_diag d;
    osseg_diag_clear(&d);
    if (osseg_model_spec_check(m, &d) != 0)
      add_error(p, h->line, "[%s]: %s", h->name, d.message);
  }
}

/* Delivers the errors in line order (a stable sort: those of one line keep
 * the order they were found in). */
static void report(const struct parser *p, const struct osseg_log *errors) {
  size_t n = p->nerr;
  struct error *e = p->err;
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && e[j - 1].line > e[j].line; j--) {
      struct error t = e[j];
      e[j] = e[j - 1];
      e[j - 1] = t;
    }
  for (size_t i = 0; i < n && i < MAX_ERRORS; i++) {
    if (e[i].line > 0)
      osseg__log(errors, OSSEG_LOG_ERROR, "%s:%d: %s", p->path, e[i].line, e[i].msg);
    else
      osseg__log(errors, OSSEG_LOG_ERROR, "%s: %s", p->path, e[i].msg);
  }
  if (n > MAX_ERRORS)
    osseg__log(errors, OSSEG_LOG_ERROR, "%s: %zu more errors", p->path, n - MAX_ERRORS);
}

static void parser_free(struct parser *p) {
  for (size_t i = 0; i < p->nhdr; i++) free(p->hdr[i].name);
  for (size_t i = 0; i < p->nkeys; i++) free(p->keys[i].key);
  for (size_t i = 0; i < p->nerr; i++) free(p->err[i].msg);
  free(p->hdr);
  free(p->keys);
  free(p->err);
}

/* Reads a whole regular file of at most MAX_FILE_BYTES. */
static int read_file(const char *path, char **out, size_t *len, const struct osseg_log *errors) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    osseg__log(errors, OSSEG_LOG_ERROR, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return OSSEG_EIO;
  }
  if (!S_ISREG(st.st_mode) || st.st_size > MAX_FILE_BYTES) {
    osseg__log(errors, OSSEG_LOG_ERROR, "%s: %s", path,
               !S_ISREG(st.st_mode) ? "not a regular file" : "larger than 1 MiB");
    close(fd);
    return OSSEG_EIO;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  size_t got = 0;
  int rc = buf ? 0 : OSSEG_ENOMEM;
  while (rc == 0) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size + 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      osseg__log(errors, OSSEG_LOG_ERROR, "%s: %s", path, strerror(errno));
      rc = OSSEG_EIO;
    } else if (r == 0) {
      break;
    } else if ((got += (size_t)r) > (size_t)st.st_size) {
      osseg__log(errors, OSSEG_LOG_ERROR, "%s: grew while read", path);
      rc = OSSEG_EIO;
    }
  }
  close(fd);
  if (rc) {
    free(buf);
    return rc;
  }
  buf[got] = '\0';
  *out = buf;
  *len = got;
  return 0;
}

int ossegd_config_load(struct ossegd_config **out, const char *path,
                       const struct osseg_log *errors) {
  *out = NULL;
  char *buf = NULL;
  size_t len = 0;
  int rc = read_file(path, &buf, &len, errors);
  if (rc) return rc;
  struct parser p = {.path = path, .buf = buf, .len = len, .at_line_start = 1};
  if ((rc = ossegd_config_create(&p.c)) != 0) {
    free(buf);
    return rc;
  }
  /* libinih stops a line at a NUL byte; such a file is not text. */
  const char *nul = memchr(buf, '\0', len);
  if (nul) {
    int line = 1;
    for (const char *s = buf; s < nul; s++) line += *s == '\n';
    add_error(&p, line, "a NUL byte: not a text file");
  } else {
    /* Debian's libinih takes its build options at run time (process-wide
     * variables; config files are read by one thread at a time): lines as
     * long as the file (the heap buffer grows), no continuation lines (an
     * indented line is a line of its own, as the reader sees it), all
     * errors. */
    ini_use_stack = 0;
    ini_allow_realloc = 1;
    ini_max_line = MAX_FILE_BYTES + 4;
    ini_allow_multiline = 0;
    ini_stop_on_first_error = 0;
    int ini = ini_parse_stream(reader, &p, handler, &p);
    if (ini == -2) p.oom = 1;
    if (ini > 0) {
      /* libinih's first bad line; the reader reports the same lines. */
      int known = 0;
      for (size_t i = 0; i < p.nerr; i++) known |= p.err[i].line == ini;
      if (!known) add_error(&p, ini, "malformed line");
    }
    finish_models(&p);
  }
  free(buf);
  if (p.oom) rc = OSSEG_ENOMEM;
  else if (p.nerr) rc = OSSEG_EPARSE;
  if (rc == OSSEG_EPARSE) report(&p, errors);
  if (rc == OSSEG_ENOMEM) osseg__log(errors, OSSEG_LOG_ERROR, "%s: out of memory", path);
  parser_free(&p);
  if (rc) {
    ossegd_config_free(p.c);
    return rc;
  }
  *out = p.c;
  return 0;
}

int ossegd_config_check(struct ossegd_config *c, const char *path,
                        const struct osseg_log *errors) {
  const char *pre = path ? path : "ossegd";
  int bad = 0;
  const struct ossegd_options *o = &c->opt;
  if (!o->socket_path || !o->socket_path[0]) {
    osseg__log(errors, OSSEG_LOG_ERROR, "%s: no socket path ([socket] path, or --socket)", pre);
    bad = 1;
  }
  if (o->nmodels == 0) {
    osseg__log(errors, OSSEG_LOG_ERROR, "%s: no model ([model NAME] sections, or --model)", pre);
    bad = 1;
  }
  for (size_t i = 0; i < o->nmodels; i++) {
    if (!c->unchecked[i]) continue;
    char msg[600];
    struct osseg_diag d;
    osseg_diag_clear(&d);
    if (osseg_model_spec_check(&o->models[i], &d) != 0) {
      osseg__log(errors, OSSEG_LOG_ERROR, "model %s: %s", o->models[i].name, d.message);
      bad = 1;
    } else if (o->models[i].path && check_model_file(o->models[i].path, msg, sizeof msg) != 0) {
      osseg__log(errors, OSSEG_LOG_ERROR, "model %s: %s", o->models[i].name, msg);
      bad = 1;
    }
  }
  return bad ? OSSEG_EPARSE : 0;
}
