/* Tests of kernels/polygon.c: osseg_polygon_fill against masks drawn by
 * cv2.fillPoly (tests/data/imaging/fillpoly_refs.txt, made by
 * tools/fixtures/make_imaging_refs.py) and against properties that hold for
 * any polygon. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_kernels.h"
#include "test_support.h"

static int get_bit(const struct osseg_bitmask *m, uint64_t p) {
  return (int)((m->bits[p >> 6] >> (p & 63)) & 1);
}

#define MAX_CONTOURS 8
#define MAX_POINTS 256

/* Replays every case of the reference file; the masks must be identical. */
static void test_matches_opencv(void **state) {
  (void)state;
  size_t size;
  char *text = test_read_file(
      test_path("%s/tests/data/imaging/fillpoly_refs.txt", test_source_dir()), &size);
  assert_non_null(text);

  struct osseg_point pts[MAX_CONTOURS][MAX_POINTS];
  const struct osseg_point *contours[MAX_CONTOURS];
  size_t counts[MAX_CONTOURS];
  size_t ncontours = 0;
  unsigned w = 0, h = 0;
  int ncases = 0;

  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#') continue;
    if (strncmp(line, "case ", 5) == 0) {
      assert_int_equal(sscanf(line + 5, "%u %u", &w, &h), 2);
      ncontours = 0;
    } else if (strncmp(line, "contour ", 8) == 0) {
      assert_true(ncontours < MAX_CONTOURS);
      char *p = line + 8, *end;
      size_t n = strtoul(p, &end, 10);
      assert_true(n <= MAX_POINTS);
      p = end;
      for (size_t i = 0; i < n; i++) {
        pts[ncontours][i].x = (int32_t)strtol(p, &end, 10);
        assert_ptr_not_equal(end, p);
        p = end;
        pts[ncontours][i].y = (int32_t)strtol(p, &end, 10);
        assert_ptr_not_equal(end, p);
        p = end;
      }
      contours[ncontours] = pts[ncontours];
      counts[ncontours] = n;
      ncontours++;
    } else if (strncmp(line, "mask", 4) == 0) {
      uint8_t *want = calloc((size_t)w * h, 1);
      assert_non_null(want);
      char *p = line + 4, *end;
      for (;;) {
        unsigned long s = strtoul(p, &end, 10);
        if (end == p) break;
        p = end;
        unsigned long l = strtoul(p, &end, 10);
        assert_ptr_not_equal(end, p);
        p = end;
        assert_true(s + l <= (unsigned long)w * h);
        memset(want + s, 1, l);
      }
      struct osseg_bitmask m;
      assert_int_equal(osseg_bitmask_init(&m, h, w), 0);
      assert_int_equal(osseg_polygon_fill(&m, contours, counts, ncontours), 0);
      int bad = 0;
      for (uint64_t i = 0; i < (uint64_t)w * h; i++) {
        if (get_bit(&m, i) != want[i]) {
          if (bad < 5)
            print_error("case %d (%ux%u): pixel (%u,%u) is %d, OpenCV has %d\n", ncases, w,
                        h, (unsigned)(i % w), (unsigned)(i / w), get_bit(&m, i), want[i]);
          bad++;
        }
      }
      /* Bits past the last pixel must stay clear. */
      for (uint64_t i = (uint64_t)w * h; i < (uint64_t)m.nwords * 64; i++)
        assert_int_equal(get_bit(&m, i), 0);
      assert_int_equal(bad, 0);
      osseg_bitmask_free(&m);
      free(want);
      ncases++;
    }
  }
  assert_true(ncases >= 150);
  free(text);
}

/* Filling ORs into the mask: pixels already set stay set. */
static void test_paint_is_or(void **state) {
  (void)state;
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 10, 10), 0);
  m.bits[0] |= 1; /* pixel (0,0) */
  struct osseg_point tri[] = {{5, 5}, {8, 5}, {8, 8}};
  assert_int_equal(osseg_polygon_fill1(&m, tri, 3), 0);
  assert_int_equal(get_bit(&m, 0), 1);
  assert_int_equal(get_bit(&m, 5 * 10 + 5), 1);
  assert_int_equal(get_bit(&m, 8 * 10 + 8), 1);
  assert_int_equal(osseg_bitmask_count(&m), 1 + 10);
  osseg_bitmask_free(&m);
}

/* A rectangle covers exactly its vertices' bounding box (boundary pixels
 * included), wherever it lies relative to 64-bit word boundaries. */
static void test_rectangles(void **state) {
  (void)state;
  struct test_rng rng;
  test_rng_seed(&rng, 42);
  for (int iter = 0; iter < 500; iter++) {
    uint32_t w = 1 + (uint32_t)test_rng_below(&rng, 200);
    uint32_t h = 1 + (uint32_t)test_rng_below(&rng, 20);
    int32_t x0 = (int32_t)test_rng_below(&rng, w), x1 = (int32_t)test_rng_below(&rng, w);
    int32_t y0 = (int32_t)test_rng_below(&rng, h), y1 = (int32_t)test_rng_below(&rng, h);
    if (x0 > x1) { int32_t t = x0; x0 = x1; x1 = t; }
    if (y0 > y1) { int32_t t = y0; y0 = y1; y1 = t; }
    struct osseg_point r[] = {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}};
    struct osseg_bitmask m;
    assert_int_equal(osseg_bitmask_init(&m, h, w), 0);
    assert_int_equal(osseg_polygon_fill1(&m, r, 4), 0);
    for (uint32_t y = 0; y < h; y++)
      for (uint32_t x = 0; x < w; x++) {
        int in = (int32_t)x >= x0 && (int32_t)x <= x1 && (int32_t)y >= y0 && (int32_t)y <= y1;
        assert_int_equal(get_bit(&m, (uint64_t)y * w + x), in);
      }
    osseg_bitmask_free(&m);
  }
}

/* Vertices far outside the image are clipped, not walked row by row. */
static void test_huge_coordinates(void **state) {
  (void)state;
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 16, 16), 0);
  struct osseg_point big[] = {{-2000000000, -2000000000}, {2000000000, -2000000000},
                              {2000000000, 2000000000}, {-2000000000, 2000000000}};
  uint64_t t0 = osseg_now_ns();
  assert_int_equal(osseg_polygon_fill1(&m, big, 4), 0);
  assert_true(osseg_now_ns() - t0 < 2000000000ull);
  assert_int_equal(osseg_bitmask_count(&m), 256);
  osseg_bitmask_free(&m);
}

static void test_errors(void **state) {
  (void)state;
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 4, 4), 0);
  struct osseg_point p[] = {{0, 0}, {3, 0}, {3, 3}};
  size_t n = 3;
  assert_int_equal(osseg_polygon_fill1(NULL, p, 3), OSSEG_EINVAL);
  assert_int_equal(osseg_polygon_fill1(&m, NULL, 3), OSSEG_EINVAL);
  assert_int_equal(osseg_polygon_fill(&m, NULL, &n, 1), OSSEG_EINVAL);
  assert_int_equal(osseg_polygon_fill1(&m, p, (size_t)1 << 30), OSSEG_ELIMIT);
  /* Nothing to draw is not an error. */
  assert_int_equal(osseg_polygon_fill(&m, NULL, NULL, 0), 0);
  assert_int_equal(osseg_polygon_fill1(&m, p, 0), 0);
  assert_int_equal(osseg_bitmask_count(&m), 0);
  /* Allocation failure leaves a clean error. */
  for (uint64_t nth = 1; nth < 10; nth++) {
    osseg__alloc_fail_at(nth);
    int rc = osseg_polygon_fill1(&m, p, 3);
    uint64_t attempts = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(attempts < nth);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
  }
  osseg_bitmask_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_opencv),
      cmocka_unit_test(test_paint_is_or),
      cmocka_unit_test(test_rectangles),
      cmocka_unit_test(test_huge_coordinates),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
