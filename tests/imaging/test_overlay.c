/* Tests of imaging/overlay.c and font.c: blending, outlines, panels,
 * diff panels, titles and legends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "osseg_imaging.h"
#include "test_support.h"

static const uint8_t *rgb_at(const struct osseg_image *im, uint32_t x, uint32_t y) {
  return im->data + (size_t)y * im->stride + 3 * (size_t)x;
}

static void fill_rect(struct osseg_bitmask *m, int x0, int y0, int x1, int y1) {
  struct osseg_point r[] = {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}};
  assert_int_equal(osseg_polygon_fill1(m, r, 4), 0);
}

static void test_blend_and_outline(void **state) {
  (void)state;
  struct osseg_image g, out;
  assert_int_equal(osseg_image_init(&g, 20, 10, 1, 8), 0);
  memset(g.data, 100, g.stride * g.height);
  struct osseg_bitmask a, b;
  assert_int_equal(osseg_bitmask_init(&a, 10, 20), 0);
  assert_int_equal(osseg_bitmask_init(&b, 10, 20), 0);
  fill_rect(&a, 2, 2, 8, 7);
  fill_rect(&b, 6, 2, 12, 7); /* overlaps a on columns 6..8 */
  const struct osseg_bitmask *masks[3] = {&a, NULL, &b};
  assert_int_equal(osseg_overlay_masks(&g, masks, 3, 0.5f, &out), 0);
  assert_int_equal(out.channels, 3);
  uint8_t ca[3], cb[3];
  osseg_overlay_class_color(0, ca);
  osseg_overlay_class_color(2, cb);
  /* Outside every mask: gray. */
  assert_memory_equal(rgb_at(&out, 15, 5), ((uint8_t[]){100, 100, 100}), 3);
  /* Interior of a only: half-way between gray and a's colour. */
  for (int k = 0; k < 3; k++) assert_int_equal(rgb_at(&out, 4, 4)[k], (100 * 128 + ca[k] * 128 + 128) >> 8);
  /* Outline of a: opaque colour. */
  assert_memory_equal(rgb_at(&out, 2, 4), ca, 3);
  /* Overlap: the higher class wins. */
  for (int k = 0; k < 3; k++) assert_int_equal(rgb_at(&out, 7, 4)[k], (100 * 128 + cb[k] * 128 + 128) >> 8);
  osseg_image_free(&out);

  /* Errors: size mismatch, too many masks, bad alpha, not gray. */
  struct osseg_bitmask small;
  assert_int_equal(osseg_bitmask_init(&small, 5, 5), 0);
  const struct osseg_bitmask *bad[1] = {&small};
  assert_int_equal(osseg_overlay_masks(&g, bad, 1, 0.5f, &out), OSSEG_ESHAPE);
  assert_int_equal(osseg_overlay_masks(&g, masks, 65, 0.5f, &out), OSSEG_EINVAL);
  assert_int_equal(osseg_overlay_masks(&g, masks, 3, 1.5f, &out), OSSEG_EINVAL);
  osseg_bitmask_free(&small);
  osseg_bitmask_free(&a);
  osseg_bitmask_free(&b);
  osseg_image_free(&g);
}

static void test_panels(void **state) {
  (void)state;
  struct osseg_image g, out;
  assert_int_equal(osseg_image_init(&g, 40, 24, 1, 16), 0);
  for (size_t i = 0; i < 40 * 24; i++) ((uint16_t *)g.data)[i] = 0x3412;
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 24, 40), 0);
  fill_rect(&m, 0, 0, 19, 23);
  const struct osseg_bitmask *gt[1] = {&m};
  assert_int_equal(osseg_overlay_panels(&g, gt, gt, 1, 0.4f, 4, &out), 0);
  assert_int_equal(out.width, 3 * 10 + 2 * 8);
  assert_int_equal(out.height, 6);
  /* Panel 1 is the plain image at its top 8 bits; the gaps are black. */
  assert_memory_equal(rgb_at(&out, 5, 3), ((uint8_t[]){0x34, 0x34, 0x34}), 3);
  assert_memory_equal(rgb_at(&out, 12, 3), ((uint8_t[]){0, 0, 0}), 3);
  /* Panels 2 and 3 are equal (same masks) and coloured on the left. */
  assert_memory_equal(rgb_at(&out, 18, 3), rgb_at(&out, 36, 3), 3);
  assert_memory_not_equal(rgb_at(&out, 19, 3), rgb_at(&out, 5, 3), 3);
  osseg_image_free(&out);
  assert_int_equal(osseg_overlay_panels(&g, NULL, gt, 1, 0.4f, 1, &out), 0);
  assert_int_equal(out.width, 2 * 40 + 8);
  osseg_image_free(&out);
  assert_int_equal(osseg_overlay_panels(&g, gt, NULL, 1, 0.4f, 0, &out), OSSEG_EINVAL);
  osseg_bitmask_free(&m);
  osseg_image_free(&g);
}

/* A valid very wide (or tall) image whose short side is below the shrink
 * factor gives panels one pixel high (wide) that average the whole short
 * side, not an error. */
static void test_panels_thin_images(void **state) {
  (void)state;
  struct osseg_image g, out;
  assert_int_equal(osseg_image_init(&g, 3000, 2, 1, 8), 0);
  for (uint32_t x = 0; x < 3000; x++) {
    g.data[x] = 10;
    g.data[g.stride + x] = 30;
  }
  struct osseg_bitmask m;
  assert_int_equal(osseg_bitmask_init(&m, 2, 3000), 0);
  const struct osseg_bitmask *pred[1] = {&m};
  assert_int_equal(osseg_overlay_panels(&g, NULL, pred, 1, 0.4f, 3, &out), 0);
  assert_int_equal(out.width, 2 * 1000 + 8);
  assert_int_equal(out.height, 1);
  /* Rows 10 and 30 averaged over 3x2 boxes: 20 in both panels. */
  assert_memory_equal(rgb_at(&out, 0, 0), ((uint8_t[]){20, 20, 20}), 3);
  assert_memory_equal(rgb_at(&out, 999, 0), ((uint8_t[]){20, 20, 20}), 3);
  assert_memory_equal(rgb_at(&out, 1008, 0), ((uint8_t[]){20, 20, 20}), 3);
  assert_memory_equal(rgb_at(&out, 1003, 0), ((uint8_t[]){0, 0, 0}), 3); /* gap */
  osseg_image_free(&out);
  /* Shrink larger than both sides: one pixel per panel, the mean of all. */
  assert_int_equal(osseg_overlay_panels(&g, NULL, NULL, 0, 0.4f, 5000, &out), 0);
  assert_int_equal(out.width, 1);
  assert_int_equal(out.height, 1);
  assert_memory_equal(rgb_at(&out, 0, 0), ((uint8_t[]){20, 20, 20}), 3);
  osseg_image_free(&out);
  osseg_bitmask_free(&m);
  osseg_image_free(&g);

  /* Tall and thin: 1 x 7 shrunk by 2 is 1 x 3 (the last row of 7 is
   * dropped, as for any side not a multiple of the factor). */
  assert_int_equal(osseg_image_init(&g, 1, 7, 1, 8), 0);
  for (uint32_t y = 0; y < 7; y++) g.data[(size_t)y * g.stride] = (uint8_t)(y * 10);
  assert_int_equal(osseg_overlay_panels(&g, NULL, NULL, 0, 0.4f, 2, &out), 0);
  assert_int_equal(out.width, 1);
  assert_int_equal(out.height, 3);
  assert_int_equal(rgb_at(&out, 0, 0)[0], 5);
  assert_int_equal(rgb_at(&out, 0, 2)[0], 45);
  osseg_image_free(&out);
  osseg_image_free(&g);
}

/* Composed overlays: a diff panel's TP/FP/FN colours and their priority,
 * titles in their bar, the legend's swatch and text at the documented
 * places, and the panels themselves untouched by either. */
static void test_compose(void **state) {
  (void)state;
  struct osseg_image g, out;
  assert_int_equal(osseg_image_init(&g, 30, 20, 1, 8), 0);
  memset(g.data, 100, g.stride * g.height);
  struct osseg_bitmask t0, p0, t1;
  assert_int_equal(osseg_bitmask_init(&t0, 20, 30), 0);
  assert_int_equal(osseg_bitmask_init(&p0, 20, 30), 0);
  assert_int_equal(osseg_bitmask_init(&t1, 20, 30), 0);
  fill_rect(&t0, 0, 0, 9, 9);   /* truth of class 0: columns 0..9 */
  fill_rect(&p0, 5, 0, 14, 9);  /* prediction of class 0: columns 5..14 */
  fill_rect(&t1, 12, 0, 13, 9); /* class 1 missed at columns 12..13 */
  const struct osseg_bitmask *truth[2] = {&t0, &t1}, *pred[2] = {&p0, NULL};
  struct osseg_overlay_panel panels[2] = {{.title = "img"}, {pred, truth, "diff"}};
  struct osseg_overlay_legend_row legend[2] = {{"A", 1, {10, 20, 30}}, {"mean", 0, {0}}};
  struct osseg_overlay_layout l = {panels, 2, 2, 0.5f, 1, 1, legend, 2};
  assert_int_equal(osseg_overlay_compose(&g, &l, &out), 0);
  /* 2 panels of 30 + gap 8; title bar 10 + panels 20 + legend 4 + 2 * 10. */
  assert_int_equal(out.width, 68);
  assert_int_equal(out.height, 54);
  uint8_t c[3][3];
  for (int k = 0; k < 3; k++) osseg_overlay_diff_color((enum osseg_overlay_diff_kind)k, c[k]);
  assert_memory_equal(c[OSSEG_OVERLAY_TP], ((uint8_t[]){0, 200, 0}), 3);
  assert_memory_equal(c[OSSEG_OVERLAY_FP], ((uint8_t[]){255, 0, 0}), 3);
  assert_memory_equal(c[OSSEG_OVERLAY_FN], ((uint8_t[]){0, 96, 255}), 3);
  const uint32_t ox = 38, oy = 10;
  /* Image panel: plain gray. */
  assert_memory_equal(rgb_at(&out, 3, oy + 5), ((uint8_t[]){100, 100, 100}), 3);
  /* Diff: FN at x 2, TP at 7, FP at 11, FN (class 1) beats FP at 12,
   * nothing at 20. */
  int want[4][2] = {{2, OSSEG_OVERLAY_FN}, {7, OSSEG_OVERLAY_TP}, {11, OSSEG_OVERLAY_FP},
                    {12, OSSEG_OVERLAY_FN}};
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 3; k++)
      assert_int_equal(rgb_at(&out, ox + (uint32_t)want[i][0], oy + 5)[k],
                       (100 * 128 + c[want[i][1]][k] * 128 + 128) >> 8);
  assert_memory_equal(rgb_at(&out, ox + 20, oy + 5), ((uint8_t[]){100, 100, 100}), 3);
  /* Title "img": 'i' has its dot at font row 0, column 2: pixel (1+2, 1). */
  assert_memory_equal(rgb_at(&out, 3, 1), ((uint8_t[]){255, 255, 255}), 3);
  assert_memory_equal(rgb_at(&out, 2, 1), ((uint8_t[]){0, 0, 0}), 3);
  /* "diff" starts at x 39: 'd' has column 4 set on row 0. */
  assert_memory_equal(rgb_at(&out, 39 + 4, 1), ((uint8_t[]){255, 255, 255}), 3);
  /* Legend from y 34: swatch 7x7 at (1, 35), text 'A' at (10, 35): row 0
   * of 'A' is .###. */
  assert_memory_equal(rgb_at(&out, 1, 35), ((uint8_t[]){10, 20, 30}), 3);
  assert_memory_equal(rgb_at(&out, 7, 41), ((uint8_t[]){10, 20, 30}), 3);
  assert_memory_equal(rgb_at(&out, 8, 41), ((uint8_t[]){0, 0, 0}), 3);
  assert_memory_equal(rgb_at(&out, 11, 35), ((uint8_t[]){255, 255, 255}), 3);
  assert_memory_equal(rgb_at(&out, 10, 35), ((uint8_t[]){0, 0, 0}), 3);
  /* The second row has no swatch. */
  assert_memory_equal(rgb_at(&out, 1, 45), ((uint8_t[]){0, 0, 0}), 3);
  osseg_image_free(&out);

  /* Legend wider than the panels widens the image; bad layouts. */
  struct osseg_overlay_legend_row wide[1] = {{"a very long legend text", 1, {1, 2, 3}}};
  struct osseg_overlay_layout l2 = {panels, 1, 2, 0.5f, 1, 2, wide, 1};
  assert_int_equal(osseg_overlay_compose(&g, &l2, &out), 0);
  assert_int_equal(out.width, (10 + 6 * 23 + 6) * 2);
  assert_int_equal(out.height, 20 + 20 + 8 + 20);
  osseg_image_free(&out);
  /* Allocation failure at every allocation: OSSEG_ENOMEM and nothing
   * left allocated (the sanitizer build checks for leaks). */
  for (uint64_t n = 1;; n++) {
    osseg__alloc_fail_at(n);
    int rc = osseg_overlay_compose(&g, &l, &out);
    osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(n > 1);
      osseg_image_free(&out);
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_null(out.data);
  }
  l2.npanels = 0;
  assert_int_equal(osseg_overlay_compose(&g, &l2, &out), OSSEG_EINVAL);
  l2.npanels = 1;
  l2.nmasks = 65;
  assert_int_equal(osseg_overlay_compose(&g, &l2, &out), OSSEG_EINVAL);
  osseg_bitmask_free(&t0);
  osseg_bitmask_free(&p0);
  osseg_bitmask_free(&t1);
  osseg_image_free(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_blend_and_outline),
      cmocka_unit_test(test_panels),
      cmocka_unit_test(test_panels_thin_images),
      cmocka_unit_test(test_compose),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
