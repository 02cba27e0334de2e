/* Tests of kernels/csv.c, csv_writer.c and the SIMD special-byte scans:
 * golden parses (quotes, CRLF, BOM, line numbers), every malformed input
 * with its exact message, scans against the generic one at every length,
 * alignment and guard page, the writer's quoting and atomic replace, and
 * an allocation-failure sweep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "csv_internal.h"
#include "test_support.h"

static int parse(struct osseg_csv *csv, const char *text, struct osseg_diag *d) {
  osseg_diag_clear(d);
  return osseg_csv_parse(csv, "t.csv", text, strlen(text), NULL, d);
}

static void expect_row(const struct osseg_csv_row *r, const char *image, const char *cls,
                       const char *rle, uint32_t line) {
  assert_int_equal(r->image_len, strlen(image));
  assert_memory_equal(r->image, image, r->image_len);
  assert_int_equal(r->cls_len, strlen(cls));
  assert_memory_equal(r->cls, cls, r->cls_len);
  assert_int_equal(r->rle_len, strlen(rle));
  if (r->rle_len) assert_memory_equal(r->rle, rle, r->rle_len);
  assert_int_equal(r->line, line);
}

static void expect_error(const char *text, size_t size, int code, const char *msg) {
  struct osseg_csv csv;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  int rc = osseg_csv_parse(&csv, "t.csv", text, size, NULL, &d);
  if (rc != code || strcmp(d.message, msg) != 0)
    fail_msg("got %d '%s', expected %d '%s'", rc, d.message, code, msg);
  assert_null(csv.rows);
  assert_int_equal(csv.nrows, 0);
}
#define EXPECT_ERROR(text, code, msg) expect_error(text, sizeof(text) - 1, code, msg)

static void test_golden(void **state) {
  (void)state;
  struct osseg_csv csv;
  struct osseg_diag d;
  const char *text =
      "image_name,class,rle\n"
      "img_1_2.png,finger-1,1 3 10 2\n"
      "img_1_2.png,finger-2,\n"
      "\"a,b\"\"c.png\",\"Trapezium\",\"5 5\"\r\n"
      "\"multi\nline.png\",Ulna,7 1\n"
      "last.png,Radius,1 1";
  assert_int_equal(parse(&csv, text, &d), 0);
  assert_int_equal(csv.nrows, 5);
  expect_row(&csv.rows[0], "img_1_2.png", "finger-1", "1 3 10 2", 2);
  expect_row(&csv.rows[1], "img_1_2.png", "finger-2", "", 3);
  expect_row(&csv.rows[2], "a,b\"c.png", "Trapezium", "5 5", 4);
  expect_row(&csv.rows[3], "multi\nline.png", "Ulna", "7 1", 5);
  expect_row(&csv.rows[4], "last.png", "Radius", "1 1", 7);
  assert_string_equal(csv.path, "t.csv");
  osseg_csv_close(&csv);

  /* BOM, CRLF everywhere, quoted header, header only. */
  assert_int_equal(parse(&csv, "\xEF\xBB\xBF\"image_name\",class,rle\r\nx,y,\r\n", &d), 0);
  assert_int_equal(csv.nrows, 1);
  expect_row(&csv.rows[0], "x", "y", "", 2);
  osseg_csv_close(&csv);
  assert_int_equal(parse(&csv, "image_name,class,rle", &d), 0);
  assert_int_equal(csv.nrows, 0);
  osseg_csv_close(&csv);
  assert_int_equal(parse(&csv, "image_name,class,rle\n", &d), 0);
  assert_int_equal(csv.nrows, 0);
  osseg_csv_close(&csv);
  /* Close is idempotent on an emptied csv. */
  osseg_csv_close(&csv);

  /* Blank lines at the end (an editor's or pandas' extra newlines), LF or
   * CRLF, one or several, also after the header alone. */
  static const char *const trailing[] = {
      "image_name,class,rle\na,b,1 1\n\n",
      "image_name,class,rle\na,b,1 1\n\n\n\n",
      "image_name,class,rle\r\na,b,1 1\r\n\r\n",
      "image_name,class,rle\r\na,b,1 1\r\n\r\n\n\r\n",
      "image_name,class,rle\na,b,1 1\n\r\n",
  };
  for (size_t i = 0; i < sizeof trailing / sizeof trailing[0]; i++) {
    if (parse(&csv, trailing[i], &d) != 0) fail_msg("case %zu: %s", i, d.message);
    assert_int_equal(csv.nrows, 1);
    expect_row(&csv.rows[0], "a", "b", "1 1", 2);
    osseg_csv_close(&csv);
  }
  assert_int_equal(parse(&csv, "image_name,class,rle\n\n\n", &d), 0);
  assert_int_equal(csv.nrows, 0);
  osseg_csv_close(&csv);
}

static void test_errors(void **state) {
  (void)state;
  EXPECT_ERROR("", OSSEG_EPARSE, "t.csv:1: empty file (expected the header image_name,class,rle)");
  EXPECT_ERROR("\xEF\xBB\xBF", OSSEG_EPARSE,
               "t.csv:1: empty file (expected the header image_name,class,rle)");
  EXPECT_ERROR("a,b,c\n", OSSEG_EPARSE, "t.csv:1: bad header (expected image_name,class,rle)");
  EXPECT_ERROR("image_name,class\n", OSSEG_EPARSE,
               "t.csv:1: bad header (expected image_name,class,rle)");
  EXPECT_ERROR("img.png,finger-1,1 2\n", OSSEG_EPARSE,
               "t.csv:1: bad header (expected image_name,class,rle)");
  EXPECT_ERROR("image_name,class,rle,extra\n", OSSEG_EPARSE,
               "t.csv:1: bad header (expected image_name,class,rle)");
  EXPECT_ERROR("\x7f" "ELF\x02\x01\x01\0\0\0", OSSEG_EPARSE,
               "t.csv:1: bad header (expected image_name,class,rle)");
  EXPECT_ERROR("image_name,class,rle\na,b\n", OSSEG_EPARSE,
               "t.csv:2: 2 fields (expected image_name,class,rle)");
  EXPECT_ERROR("image_name,class,rle\nab\n", OSSEG_EPARSE,
               "t.csv:2: 1 field (expected image_name,class,rle)");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1,\n", OSSEG_EPARSE,
               "t.csv:2: more than 3 fields (expected image_name,class,rle)");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\n\nc,d,\n", OSSEG_EPARSE, "t.csv:3: blank line");
  /* A blank line with a row after it is an error at the blank line,
   * however many there are and whatever the line ends. */
  EXPECT_ERROR("image_name,class,rle\r\na,b,1 1\r\n\r\nc,d,\r\n", OSSEG_EPARSE,
               "t.csv:3: blank line");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\n\n\n\nc,d,", OSSEG_EPARSE, "t.csv:3: blank line");
  EXPECT_ERROR("image_name,class,rle\n\na,b,1 1\n", OSSEG_EPARSE, "t.csv:2: blank line");
  /* Only line ends count as blank: trailing spaces or a bare CR do not. */
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\n\n \n", OSSEG_EPARSE, "t.csv:3: blank line");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\n\n\r", OSSEG_EPARSE, "t.csv:3: blank line");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\rc,d,\n", OSSEG_EPARSE,
               "t.csv:2: carriage return without line feed");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\r", OSSEG_EPARSE,
               "t.csv:2: carriage return without line feed");
  EXPECT_ERROR("image_name,class,rle\na\"x,b,1 1\n", OSSEG_EPARSE,
               "t.csv:2: quote inside an unquoted field");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\"\n", OSSEG_EPARSE,
               "t.csv:2: quote inside an unquoted field");
  EXPECT_ERROR("image_name,class,rle\n\"a\"x,b,1 1\n", OSSEG_EPARSE,
               "t.csv:2: character after a closing quote");
  EXPECT_ERROR("image_name,class,rle\nok,b,\n\"a,b,1 1\nc,d,\n", OSSEG_EPARSE,
               "t.csv:3: unterminated quoted field");
  EXPECT_ERROR("image_name,class,rle\na,b,1 1\nc,d,1\0 1\n", OSSEG_EPARSE, "t.csv:3: NUL byte");
  EXPECT_ERROR("image_name,class,rle\n\"a\nb\0\",d,1 1\n", OSSEG_EPARSE, "t.csv:3: NUL byte");
  EXPECT_ERROR("image_name,class,rle\n,b,1 1\n", OSSEG_EPARSE, "t.csv:2: empty image_name");
  EXPECT_ERROR("image_name,class,rle\n\"\",b,1 1\n", OSSEG_EPARSE, "t.csv:2: empty image_name");
  EXPECT_ERROR("image_name,class,rle\na,,1 1\n", OSSEG_EPARSE, "t.csv:2: empty class");
  /* A row whose quoted field spans lines is reported at its first line. */
  EXPECT_ERROR("image_name,class,rle\n\"a\nb\",c\n", OSSEG_EPARSE,
               "t.csv:2: 2 fields (expected image_name,class,rle)");
}

static void test_limits(void **state) {
  (void)state;
  struct osseg_csv csv;
  struct osseg_diag d;
  struct osseg_csv_limits lim = {1000, 10, 2}; /* the header fits */
  const char *ok = "image_name,class,rle\nabcdefghij,c,1 1\n";
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_parse(&csv, "t.csv", ok, strlen(ok), &lim, &d), 0);
  osseg_csv_close(&csv);
  const char *wide = "image_name,class,rle\nabcdefghijk,c,1 1\n";
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_parse(&csv, "t.csv", wide, strlen(wide), &lim, &d), OSSEG_ELIMIT);
  assert_string_equal(d.message, "t.csv:2: field longer than the limit");
  const char *many = "image_name,class,rle\na,c,\nb,c,\nc,c,\n";
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_parse(&csv, "t.csv", many, strlen(many), &lim, &d), OSSEG_ELIMIT);
  assert_string_equal(d.message, "t.csv:4: more rows than the limit");
  lim.max_file_bytes = 10;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_parse(&csv, "t.csv", ok, strlen(ok), &lim, &d), OSSEG_ELIMIT);
  assert_string_equal(d.message, "t.csv: file larger than the limit (10 bytes)");
}

static void test_open(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  assert_non_null(dir);
  const char *path = test_path("%s/p.csv", dir);
  const char *text = "image_name,class,rle\nimg.png,finger-1,1 2\n";
  assert_int_equal(test_write_file(path, text, strlen(text)), 0);
  struct osseg_csv csv;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_open(&csv, path, NULL, &d), 0);
  assert_int_equal(csv.nrows, 1);
  expect_row(&csv.rows[0], "img.png", "finger-1", "1 2", 2);
  assert_string_equal(csv.path, path);
  osseg_csv_close(&csv);

  const char *empty = test_path("%s/empty.csv", dir);
  assert_int_equal(test_write_file(empty, "", 0), 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_open(&csv, empty, NULL, &d), OSSEG_EPARSE);
  assert_string_equal(d.message,
                      test_path("%s:1: empty file (expected the header image_name,class,rle)", empty));
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_open(&csv, test_path("%s/none.csv", dir), NULL, &d), OSSEG_EIO);
  assert_string_equal(d.message,
                      test_path("%s/none.csv: cannot open: No such file or directory", dir));
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_open(&csv, dir, NULL, &d), OSSEG_EIO);
  assert_string_equal(d.message, test_path("%s: not a regular file", dir));
  unlink(path);
  unlink(empty);
  rmdir(dir);
}

/* ------------------------------------------------------------- scans --- */

static void check_scan(const char *p, size_t n) {
  const char *ref = osseg__csv_scan_generic(p, p + n);
  unsigned f = osseg_cpu_features();
  if (f & OSSEG_CPU_AVX2) assert_ptr_equal(osseg__csv_scan_avx2(p, p + n), ref);
  if (f & OSSEG_CPU_AVX512) assert_ptr_equal(osseg__csv_scan_avx512(p, p + n), ref);
  assert_ptr_equal(osseg__csv_scan_pick()(p, p + n), ref);
}

static void test_scan_variants(void **state) {
  (void)state;
  static const char specials[] = {',', '"', '\n', '\r', '\0'};
  /* Every length 0..2*64+1 ending at a guard page, with one special at
   * every position (and none), for every special. */
  for (size_t len = 0; len <= 129; len++) {
    char *g = test_guarded_alloc(len);
    memset(g, '7', len);
    check_scan(g, len);
    assert_ptr_equal(osseg__csv_scan_generic(g, g + len), g + len);
    for (size_t i = 0; i < len; i++) {
      for (size_t s = 0; s < sizeof specials; s++) {
        g[i] = specials[s];
        check_scan(g, len);
        assert_ptr_equal(osseg__csv_scan_generic(g, g + len), g + i);
        /* A second special later must not matter. */
        if (i + 1 < len) {
          g[len - 1] = ',';
          check_scan(g, len);
          g[len - 1] = '7';
        }
        g[i] = '7';
      }
    }
    test_guarded_free(g);
  }
  /* Every byte value, at positions in both halves of a vector and in the
   * scalar tail: special exactly for the five. */
  char vb[200];
  for (int b = 0; b < 256; b++) {
    int special = b == ',' || b == '"' || b == '\n' || b == '\r' || b == 0;
    for (size_t pos = 0; pos < 140; pos += 13) {
      memset(vb, 'z', sizeof vb);
      vb[pos] = (char)b;
      check_scan(vb, 140);
      assert_ptr_equal(osseg__csv_scan_pick()(vb, vb + 140), special ? vb + pos : vb + 140);
    }
  }
  /* Random bytes at every alignment (bytes near the specials' values). */
  struct test_rng rng;
  test_rng_seed(&rng, 2);
  char *buf = malloc(512);
  for (int trial = 0; trial < 20000; trial++) {
    size_t off = (size_t)test_rng_below(&rng, 64), len = (size_t)test_rng_below(&rng, 400);
    for (size_t i = 0; i < len; i++) {
      unsigned r = (unsigned)test_rng_below(&rng, 1000);
      buf[off + i] = (char)(r < 3 ? (unsigned)(unsigned char)specials[test_rng_below(&rng, 5)] : 0x0bu + (r % 0x60) + (r & 0x80));
    }
    check_scan(buf + off, len);
  }
  free(buf);
}

static void test_parse_same_at_every_level(void **state) {
  (void)state;
  /* A larger file with long rle fields: the whole parse runs on the active
   * level (the ISA_LEVELS registrations run it on each one) and must find
   * the same rows as a plain reading. */
  struct test_rng rng;
  test_rng_seed(&rng, 4);
  size_t cap = 1 << 20, n = 0;
  char *text = malloc(cap);
  n += (size_t)sprintf(text, "image_name,class,rle\n");
  for (int row = 0; row < 300; row++) {
    n += (size_t)sprintf(text + n, row % 7 == 0 ? "\"img_%d,x\",c%d," : "img_%d,c%d,", row, row % 29);
    size_t len = (size_t)test_rng_below(&rng, 2000);
    for (size_t i = 0; i < len; i++) text[n++] = (char)('0' + test_rng_below(&rng, 10));
    n += (size_t)sprintf(text + n, row % 3 ? "\n" : "\r\n");
  }
  /* Trailing blank lines, as pandas and editors leave them. */
  n += (size_t)sprintf(text + n, "\r\n\n\n");
  struct osseg_csv csv;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  char *g = test_guarded_alloc(n);
  memcpy(g, text, n);
  assert_int_equal(osseg_csv_parse(&csv, "t.csv", g, n, NULL, &d), 0);
  assert_int_equal(csv.nrows, 300);
  for (size_t r = 0; r < csv.nrows; r++) {
    char name[32];
    int len = sprintf(name, r % 7 == 0 ? "img_%zu,x" : "img_%zu", r);
    assert_int_equal(csv.rows[r].image_len, len);
    assert_memory_equal(csv.rows[r].image, name, (size_t)len);
    assert_int_equal(csv.rows[r].line, r + 2);
    /* The rle field ends right before the line end. */
    const char *e = csv.rows[r].rle + csv.rows[r].rle_len;
    assert_true(e == g + n || *e == '\n' || *e == '\r');
  }
  size_t bounds[4];
  osseg_csv_split(&csv, 3, bounds);
  assert_int_equal(bounds[0], 0);
  assert_int_equal(bounds[3], 300);
  assert_true(bounds[1] <= bounds[2]);
  assert_true(bounds[1] > 50 && bounds[1] < 150);
  osseg_csv_close(&csv);
  test_guarded_free(g);
  free(text);
}

/* ----------------------------------------------------------- writer --- */

static void test_put_field(void **state) {
  (void)state;
  char out[64];
  struct {
    const char *in, *out;
  } cases[] = {{"plain.png", "plain.png"},
               {"a,b", "\"a,b\""},
               {"say \"hi\"", "\"say \"\"hi\"\"\""},
               {"two\nlines", "\"two\nlines\""},
               {"cr\r", "\"cr\r\""},
               {"", ""},
               {"img_1_2.png", "img_1_2.png"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = strlen(cases[i].in);
    char *e = osseg_csv_put_field(out, cases[i].in, n);
    assert_true((size_t)(e - out) <= osseg_csv_field_bound(n));
    assert_int_equal(e - out, strlen(cases[i].out));
    assert_memory_equal(out, cases[i].out, (size_t)(e - out));
  }
}

static void test_writer(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  const char *path = test_path("%s/out.csv", dir);
  struct osseg_csv_writer *w;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(test_write_file(path, "old", 3), 0);
  assert_int_equal(osseg_csv_writer_open(&w, path, &d), 0);
  assert_int_equal(osseg_csv_write_row(w, "a,b", 3, "finger-1", 8, "1 2", 3), 0);
  assert_int_equal(osseg_csv_write_raw(w, "x,y,\n", 5), 0);
  /* A row bigger than the buffer goes through the slow path. */
  size_t big = 3u << 20;
  char *rle = malloc(big);
  memset(rle, '5', big);
  assert_int_equal(osseg_csv_write_row(w, "big", 3, "c", 1, rle, big), 0);
  /* Until close, the destination still holds the old contents. */
  size_t size;
  char *before = test_read_file(path, &size);
  assert_int_equal(size, 3);
  free(before);
  assert_int_equal(osseg_csv_writer_close(w, &d), 0);
  char *after = test_read_file(path, &size);
  const char *head = "image_name,class,rle\n\"a,b\",finger-1,1 2\nx,y,\nbig,c,";
  assert_int_equal(size, strlen(head) + big + 1);
  assert_memory_equal(after, head, strlen(head));
  assert_int_equal(after[size - 1], '\n');
  free(after);
  /* It parses back. */
  struct osseg_csv csv;
  assert_int_equal(osseg_csv_open(&csv, path, NULL, &d), 0);
  assert_int_equal(csv.nrows, 3);
  expect_row(&csv.rows[0], "a,b", "finger-1", "1 2", 2);
  osseg_csv_close(&csv);

  /* Abort leaves the old file and no temporary behind. */
  assert_int_equal(osseg_csv_writer_open(&w, path, &d), 0);
  assert_int_equal(osseg_csv_write_row(w, "n", 1, "c", 1, "", 0), 0);
  osseg_csv_writer_abort(w);
  after = test_read_file(path, &size);
  assert_int_equal(size, strlen(head) + big + 1);
  free(after);
  char *cmd_out = NULL;
  const char *ls[] = {"/bin/sh", "-c", test_path("ls -A '%s' | wc -l", dir), NULL};
  assert_int_equal(test_run(ls, &cmd_out, NULL, 10), 0);
  assert_int_equal(atoi(cmd_out), 1);
  free(cmd_out);

  /* A destination folder that does not exist. */
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_writer_open(&w, test_path("%s/no/x.csv", dir), &d), OSSEG_EIO);
  assert_string_equal(d.message, test_path("%s/no/x.csv: cannot create a file in its folder: "
                                           "No such file or directory", dir));
  /* A folder as the destination is refused at open. */
  const char *sub = test_path("%s/sub", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_csv_writer_open(&w, sub, &d), OSSEG_EINVAL);
  assert_string_equal(d.message, test_path("%s: is a directory", sub));
  assert_int_equal(rmdir(sub), 0); /* still an empty folder */
  free(rle);
  unlink(path);
  assert_int_equal(rmdir(dir), 0); /* empty: no temporary left */
}

static void test_alloc_failure_sweep(void **state) {
  (void)state;
  /* Doubled quotes force the arena; 1500 rows force the row array to grow. */
  size_t cap = 1 << 16, n = 0;
  char *text = malloc(cap);
  n += (size_t)sprintf(text, "image_name,class,rle\n");
  for (int i = 0; i < 1500; i++) n += (size_t)sprintf(text + n, "\"i\"\"%d\",c,1 1\n", i);
  for (uint64_t nth = 1;; nth++) {
    struct osseg_csv csv;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    osseg__alloc_fail_at(nth);
    int rc = osseg_csv_parse(&csv, "t.csv", text, n, NULL, &d);
    osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_int_equal(csv.nrows, 1500);
      expect_row(&csv.rows[1499], "i\"1499", "c", "1 1", 1501);
      osseg_csv_close(&csv);
      assert_true(nth > 3);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_null(csv.rows);
  }
  free(text);
}

static void test_mutations_never_crash(void **state) {
  (void)state;
  /* Random damage to a valid file (byte changes to specials, digits and
   * junk, insertions, deletions, truncation): the parser either succeeds
   * with rows that lie inside the buffer or its arena and increasing line
   * numbers, or fails with one "t.csv:LINE: problem" line. Every rle that
   * parses as CSV also goes through the RLE parser. */
  static const char base[] =
      "image_name,class,rle\n"
      "ID1_a.png,finger-1,1 3 10 2\n"
      "\"q,\"\"x.png\",Ulna,\"5 5\"\r\n"
      "ID1_b.png,Radius,\n"
      "ID1_c.png,Radius,100 20 300 4";
  static const char junk[] = {',', '"', '\n', '\r', '\0', ' ', '0', '9', 'a', '\xff', '\t'};
  struct test_rng rng;
  test_rng_seed(&rng, 99);
  char buf[512];
  struct osseg_runs runs = {0};
  for (int trial = 0; trial < 30000; trial++) {
    size_t n = sizeof base - 1;
    memcpy(buf, base, n);
    int edits = 1 + (int)test_rng_below(&rng, 4);
    for (int e = 0; e < edits; e++) {
      size_t at = (size_t)test_rng_below(&rng, n + 1);
      char c = junk[test_rng_below(&rng, sizeof junk)];
      switch (test_rng_below(&rng, 4)) {
        case 0:
          if (at < n) buf[at] = c;
          break;
        case 1:
          if (n + 1 < sizeof buf) {
            memmove(buf + at + 1, buf + at, n - at);
            buf[at] = c;
            n++;
          }
          break;
        case 2:
          if (at < n) {
            memmove(buf + at, buf + at + 1, n - at - 1);
            n--;
          }
          break;
        default:
          n = at;
          break;
      }
    }
    char *g = test_guarded_alloc(n);
    memcpy(g, buf, n);
    struct osseg_csv csv;
    struct osseg_diag d;
    osseg_diag_clear(&d);
    int rc = osseg_csv_parse(&csv, "t.csv", g, n, NULL, &d);
    if (rc == 0) {
      uint32_t last = 1;
      for (size_t r = 0; r < csv.nrows; r++) {
        const struct osseg_csv_row *row = &csv.rows[r];
        assert_true(row->line > last);
        last = row->line;
        assert_true(row->image_len > 0 && row->cls_len > 0);
        /* Fields are readable to their end (the guard page and ASan catch
         * an overrun) and hold no NUL. */
        assert_null(memchr(row->image, 0, row->image_len));
        assert_null(memchr(row->cls, 0, row->cls_len));
        assert_null(memchr(row->rle, 0, row->rle_len));
        runs.n = 0;
        struct osseg_diag rd;
        osseg_diag_clear(&rd);
        int rrc = osseg_rle_parse(row->rle, row->rle_len, 2048u * 2048u, &runs, &rd);
        assert_true(rrc == 0 || (rrc < 0 && rd.message[0] != '\0'));
      }
      osseg_csv_close(&csv);
    } else {
      assert_true(rc == OSSEG_EPARSE || rc == OSSEG_ELIMIT);
      assert_int_equal(strncmp(d.message, "t.csv:", 6), 0);
      assert_null(strchr(d.message, '\n'));
      assert_null(csv.rows);
    }
    test_guarded_free(g);
  }
  osseg_runs_free(&runs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_open),
      cmocka_unit_test(test_scan_variants),
      cmocka_unit_test(test_parse_same_at_every_level),
      cmocka_unit_test(test_put_field),
      cmocka_unit_test(test_writer),
      cmocka_unit_test(test_alloc_failure_sweep),
      cmocka_unit_test(test_mutations_never_crash),
  };
  printf("csv: cpu features: %s\n", osseg_cpu_features_string());
  return cmocka_run_group_tests(tests, NULL, NULL);
}
