/* Prediction CSV parser: see osseg_kernels.h.
 *
 * The file is mapped read-only and rows point straight into the mapping;
 * only a quoted field with doubled quotes inside ("a""b") needs a copy, which
 * goes to a block arena owned by the csv. Fields are delimited by searching
 * for the next special byte with SIMD (csv_internal.h), so a multi-kilobyte
 * rle field costs a few dozen vector compares. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csv_internal.h"

#define ARENA_BLOCK (64u * 1024u)

struct arena_block {
  struct arena_block *next;
  size_t used, cap;
  char data[];
};

struct csv_impl {
  void *map; /* NULL for osseg_csv_parse */
  size_t map_len;
  struct arena_block *arena;
};

/* ------------------------------------------------------------- scan --- */

static const unsigned char special_byte[256] = {
    [0] = 1, ['\n'] = 1, ['\r'] = 1, ['"'] = 1, [','] = 1};

const char *osseg__csv_scan_generic(const char *p, const char *end) {
  while (p < end && !special_byte[(unsigned char)*p]) p++;
  return p;
}

osseg__csv_scan_fn osseg__csv_scan_pick(void) {
  unsigned f = osseg_cpu_features();
  if (f & OSSEG_CPU_AVX512) return osseg__csv_scan_avx512;
  if (f & OSSEG_CPU_AVX2) return osseg__csv_scan_avx2;
  return osseg__csv_scan_generic;
}

/* ----------------------------------------------------------- parser --- */

struct parser {
  const char *name;
  const char *p, *end;
  uint64_t line;
  osseg__csv_scan_fn scan;
  const struct osseg_csv_limits *lim;
  struct csv_impl *impl;
  struct osseg_diag *diag;
};

struct field {
  const char *s;
  size_t len;
};

static int fail_at(struct parser *ps, uint64_t line, int err, const char *what) {
  return osseg__fail(ps->diag, err, "%s:%llu: %s", ps->name, (unsigned long long)line, what);
}

static char *arena_alloc(struct csv_impl *impl, size_t n) {
  struct arena_block *b = impl->arena;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    b = osseg__malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->next = impl->arena;
    b->used = 0;
    b->cap = cap;
    impl->arena = b;
  }
  char *r = b->data + b->used;
  b->used += n;
  return r;
}

/* Copies the inside of a quoted field with each "" turned into ". */
static int unquote(struct parser *ps, struct field *f) {
  char *dst = arena_alloc(ps->impl, f->len ? f->len : 1);
  if (!dst) return fail_at(ps, ps->line, OSSEG_ENOMEM, "out of memory");
  size_t n = 0;
  for (size_t i = 0; i < f->len; i++) {
    dst[n++] = f->s[i];
    if (f->s[i] == '"') i++; /* the parser guarantees the pair */
  }
  f->s = dst;
  f->len = n;
  return 0;
}

/* Parses one record of exactly 3 fields at ps->p and moves past its line
 * end. *first_line gets the line where it starts. */
static int parse_record(struct parser *ps, struct field f[3], uint64_t *first_line) {
  const char *p = ps->p, *end = ps->end;
  *first_line = ps->line;
  if (*p == '\n' || *p == '\r') return fail_at(ps, ps->line, OSSEG_EPARSE, "blank line");
  for (unsigned i = 0;; i++) {
    if (i == 3)
      return fail_at(ps, *first_line, OSSEG_EPARSE,
                     "more than 3 fields (expected image_name,class,rle)");
    if (p < end && *p == '"') {
      uint64_t open_line = ps->line;
      const char *q = p + 1;
      int doubled = 0;
      for (;;) {
        const char *r = ps->scan(q, end);
        if (r == end)
          return fail_at(ps, open_line, OSSEG_EPARSE, "unterminated quoted field");
        if (*r == '"') {
          if (r + 1 < end && r[1] == '"') {
            doubled = 1;
            q = r + 2;
            continue;
          }
          f[i].s = p + 1;
          f[i].len = (size_t)(r - (p + 1));
          p = r + 1;
          break;
        }
        if (*r == '\0') return fail_at(ps, ps->line, OSSEG_EPARSE, "NUL byte");
        if (*r == '\n') ps->line++;
        q = r + 1;
      }
      if (f[i].len > ps->lim->max_field_bytes)
        return fail_at(ps, open_line, OSSEG_ELIMIT, "field longer than the limit");
      if (doubled) {
        int rc = unquote(ps, &f[i]);
        if (rc < 0) return rc;
      }
      if (p < end && *p != ',' && *p != '\n' && *p != '\r')
        return fail_at(ps, ps->line, OSSEG_EPARSE, "character after a closing quote");
    } else {
      const char *r = ps->scan(p, end);
      if (r < end && *r == '"')
        return fail_at(ps, ps->line, OSSEG_EPARSE, "quote inside an unquoted field");
      if (r < end && *r == '\0') return fail_at(ps, ps->line, OSSEG_EPARSE, "NUL byte");
      f[i].s = p;
      f[i].len = (size_t)(r - p);
      if (f[i].len > ps->lim->max_field_bytes)
        return fail_at(ps, ps->line, OSSEG_ELIMIT, "field longer than the limit");
      p = r;
    }
    if (p < end && *p == ',') {
      p++;
      continue;
    }
    /* End of the record: EOF, LF or CRLF. */
    if (i != 2) {
      char msg[64];
      snprintf(msg, sizeof msg, "%u field%s (expected image_name,class,rle)", i + 1,
               i ? "s" : "");
      return fail_at(ps, *first_line, OSSEG_EPARSE, msg);
    }
    if (p < end && *p == '\r') {
      if (p + 1 == end || p[1] != '\n')
        return fail_at(ps, ps->line, OSSEG_EPARSE, "carriage return without line feed");
      p++;
    }
    if (p < end) {
      p++; /* the LF */
      ps->line++;
    }
    ps->p = p;
    return 0;
  }
}

/* Whether [p, end) is nothing but line ends (LF or CRLF): the blank lines
 * that editors and pandas leave at the end of a file. */
static int only_line_ends(const char *p, const char *end) {
  while (p < end) {
    if (*p == '\r' && p + 1 < end && p[1] == '\n')
      p += 2;
    else if (*p == '\n')
      p++;
    else
      return 0;
  }
  return 1;
}

static int field_is(const struct field *f, const char *s) {
  size_t n = strlen(s);
  return f->len == n && memcmp(f->s, s, n) == 0;
}

static void free_impl(struct csv_impl *impl) {
  if (!impl) return;
  while (impl->arena) {
    struct arena_block *next = impl->arena->next;
    osseg__free(impl->arena);
    impl->arena = next;
  }
  if (impl->map) munmap(impl->map, impl->map_len);
  osseg__free(impl);
}

void osseg_csv_close(struct osseg_csv *csv) {
  if (!csv) return;
  free_impl(csv->impl_);
  osseg__free(csv->rows);
  osseg__free(csv->path);
  memset(csv, 0, sizeof *csv);
}

static const struct osseg_csv_limits default_limits = {
    4ull << 30, 64u << 20, 100000000ull};

/* Parses into csv, which already owns impl and path. On error the caller
 * closes csv. */
static int parse_into(struct osseg_csv *csv, const char *data, size_t size,
                      const struct osseg_csv_limits *lim, struct osseg_diag *diag) {
  struct parser ps = {csv->path, data, data + size, 1, osseg__csv_scan_pick(), lim,
                      csv->impl_, diag};
  if (size > lim->max_file_bytes)
    return osseg__fail(diag, OSSEG_ELIMIT, "%s: file larger than the limit (%llu bytes)",
                       ps.name, (unsigned long long)lim->max_file_bytes);
  if (size == 0)
    return fail_at(&ps, 1, OSSEG_EPARSE, "empty file (expected the header image_name,class,rle)");
  if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) ps.p += 3;
  if (ps.p == ps.end)
    return fail_at(&ps, 1, OSSEG_EPARSE, "empty file (expected the header image_name,class,rle)");

  struct field f[3];
  uint64_t line;
  struct osseg_diag hdiag;
  osseg_diag_clear(&hdiag);
  ps.diag = &hdiag;
  int rc = parse_record(&ps, f, &line);
  ps.diag = diag;
  if (rc == OSSEG_ENOMEM) return osseg__fail(diag, rc, "%s", hdiag.message);
  if (rc < 0 || !field_is(&f[0], "image_name") || !field_is(&f[1], "class") ||
      !field_is(&f[2], "rle"))
    return fail_at(&ps, 1, OSSEG_EPARSE, "bad header (expected image_name,class,rle)");

  size_t cap = 0;
  while (ps.p < ps.end) {
    /* Trailing blank lines end the file; a blank line followed by more
     * text is still an error (parse_record reports it with its line). */
    if ((*ps.p == '\n' || *ps.p == '\r') && only_line_ends(ps.p, ps.end)) break;
    rc = parse_record(&ps, f, &line);
    if (rc < 0) return rc;
    if (f[0].len == 0) return fail_at(&ps, line, OSSEG_EPARSE, "empty image_name");
    if (f[1].len == 0) return fail_at(&ps, line, OSSEG_EPARSE, "empty class");
    if (csv->nrows == lim->max_rows)
      return fail_at(&ps, line, OSSEG_ELIMIT, "more rows than the limit");
    if (csv->nrows == cap) {
      size_t ncap = cap ? cap * 2 : 1024, bytes;
      if (osseg__mul_size(ncap, sizeof *csv->rows, &bytes) != 0)
        return fail_at(&ps, line, OSSEG_EOVERFLOW, "too many rows");
      struct osseg_csv_row *rows = osseg__realloc(csv->rows, bytes);
      if (!rows) return fail_at(&ps, line, OSSEG_ENOMEM, "out of memory");
      csv->rows = rows;
      cap = ncap;
    }
    struct osseg_csv_row *r = &csv->rows[csv->nrows++];
    r->image = f[0].s;
    r->cls = f[1].s;
    r->rle = f[2].s;
    r->image_len = (uint32_t)f[0].len;
    r->cls_len = (uint32_t)f[1].len;
    r->rle_len = (uint32_t)f[2].len;
    r->line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
  }
  return 0;
}

static int begin(struct osseg_csv *csv, const char *name, struct osseg_diag *diag) {
  memset(csv, 0, sizeof *csv);
  csv->path = osseg__strndup(name, strlen(name));
  csv->impl_ = osseg__calloc(1, sizeof(struct csv_impl));
  if (!csv->path || !csv->impl_) {
    osseg_csv_close(csv);
    return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", name);
  }
  return 0;
}

int osseg_csv_parse(struct osseg_csv *csv, const char *name, const char *data, size_t size,
                    const struct osseg_csv_limits *limits, struct osseg_diag *diag) {
  int rc = begin(csv, name, diag);
  if (rc < 0) return rc;
  rc = parse_into(csv, data, size, limits ? limits : &default_limits, diag);
  if (rc < 0) osseg_csv_close(csv);
  return rc;
}

int osseg_csv_open(struct osseg_csv *csv, const char *path,
                   const struct osseg_csv_limits *limits, struct osseg_diag *diag) {
  const struct osseg_csv_limits *lim = limits ? limits : &default_limits;
  int rc = begin(csv, path, diag);
  if (rc < 0) return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: not a regular file", path);
    close(fd);
    goto fail;
  }
  size_t size = (size_t)st.st_size;
  if ((uint64_t)st.st_size > lim->max_file_bytes) {
    close(fd);
    rc = osseg__fail(diag, OSSEG_ELIMIT, "%s: file larger than the limit (%llu bytes)", path,
                     (unsigned long long)lim->max_file_bytes);
    goto fail;
  }
  const char *data = "";
  if (size > 0) {
    /* MAP_POPULATE maps the (usually cached) pages up front: one call
     * instead of a page fault every few kilobytes of the scan. */
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) {
      rc = osseg__fail(diag, OSSEG_EIO, "%s: cannot map: %s", path, strerror(errno));
      close(fd);
      goto fail;
    }
    struct csv_impl *impl = csv->impl_;
    impl->map = map;
    impl->map_len = size;
    data = map;
  }
  close(fd);
  rc = parse_into(csv, data, size, lim, diag);
  if (rc == 0) return 0;
fail:
  osseg_csv_close(csv);
  return rc;
}

void osseg_csv_split(const struct osseg_csv *csv, size_t nparts, size_t *bounds) {
  /* Cost of a row ~ its bytes (parsing dominates), plus a constant for the
   * per-row work so that files of empty masks still split evenly. */
  uint64_t total = 0;
  for (size_t i = 0; i < csv->nrows; i++) total += (uint64_t)csv->rows[i].rle_len + 64;
  bounds[0] = 0;
  size_t row = 0;
  uint64_t acc = 0;
  for (size_t part = 1; part < nparts; part++) {
    uint64_t target = (uint64_t)((unsigned __int128)total * part / nparts);
    while (row < csv->nrows && acc < target) {
      acc += (uint64_t)csv->rows[row].rle_len + 64;
      row++;
    }
    bounds[part] = row;
  }
  bounds[nparts] = csv->nrows;
}
