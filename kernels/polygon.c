/* Polygon rasterisation with the exact semantics of OpenCV's cv2.fillPoly
 * (lineType LINE_8, shift 0, as in OpenCV 4.6, Debian 12's version), so that
 * masks drawn from the dataset's label JSON equal those of the Python tools
 * the dataset was made with.
 *
 * OpenCV fills a polygon in two passes, and so does this file:
 *   1. Every edge (including horizontal ones and the closing edge) is drawn
 *      as an 8-connected Bresenham line, clipped to the image the way
 *      cv::clipLine clips it. This is what puts the boundary pixels in.
 *   2. A scanline fill over the non-horizontal edges: an edge from (x0, y0)
 *      to (x1, y1), y0 < y1, covers the rows y0 <= y < y1, with an x in 16.16
 *      fixed point that starts at x0 and advances by the truncated slope
 *      dx = (x1 - x0) / (y1 - y0) per row. On each row the active x values
 *      are sorted and paired (even-odd), and the pixels from ceil(xl) to
 *      floor(xr) are set, clipped to the image.
 * Later OpenCV releases (4.7+) changed the fill of clipped edges and the
 * rounding; the committed references (tools/fixtures/make_imaging_refs.py)
 * were drawn by 4.6 and pin this behaviour. */
#include <stdlib.h>
#include <string.h>

#include "osseg_kernels.h"

#define XY_SHIFT 16
#define XY_ONE ((int64_t)1 << XY_SHIFT)

/* A limit on the vertices of one call, far above any annotation (the
 * dataset's polygons have tens of points); it keeps the edge array size
 * computation trivially safe. */
#define MAX_VERTICES (1u << 24)

struct edge {
  int64_t y0, y1; /* rows y0 <= y < y1 */
  int64_t x;      /* 16.16 x at row y0 */
  int64_t dx;     /* 16.16 increment per row */
};

/* ------------------------------------------------------------- pixels --- */

static inline void set_pixel(struct osseg_bitmask *m, int64_t x, int64_t y) {
  uint64_t p = (uint64_t)y * m->width + (uint64_t)x;
  m->bits[p >> 6] |= (uint64_t)1 << (p & 63);
}

/* Sets pixels x1..x2 (inclusive, already clipped) of row y. */
static void set_span(struct osseg_bitmask *m, int64_t y, int64_t x1, int64_t x2) {
  uint64_t a = (uint64_t)y * m->width + (uint64_t)x1;
  uint64_t b = (uint64_t)y * m->width + (uint64_t)x2 + 1; /* exclusive */
  uint64_t wa = a >> 6, wb = b >> 6;
  uint64_t ma = ~(uint64_t)0 << (a & 63);
  if (wa == wb) {
    uint64_t mb = ((uint64_t)1 << (b & 63)) - 1;
    m->bits[wa] |= ma & mb;
    return;
  }
  m->bits[wa] |= ma;
  for (uint64_t w = wa + 1; w < wb; w++) m->bits[w] = ~(uint64_t)0;
  if (b & 63) m->bits[wb] |= ((uint64_t)1 << (b & 63)) - 1;
}

/* ------------------------------------------------------------- clipping --- */

/* cv::clipLine on a w x h image: clips the segment to [0, w-1] x [0, h-1]
 * with OpenCV's outcode steps and its double-precision intercepts truncated
 * toward zero. Returns 1 when something is left inside. */
static int clip_line(int64_t w, int64_t h, int64_t *x1, int64_t *y1, int64_t *x2,
                     int64_t *y2) {
  int64_t right = w - 1, bottom = h - 1;
  int c1 = (*x1 < 0) + (*x1 > right) * 2 + (*y1 < 0) * 4 + (*y1 > bottom) * 8;
  int c2 = (*x2 < 0) + (*x2 > right) * 2 + (*y2 < 0) * 4 + (*y2 > bottom) * 8;

  if ((c1 & c2) == 0 && (c1 | c2) != 0) {
    int64_t a;
    if (c1 & 12) {
      a = c1 < 8 ? 0 : bottom;
      *x1 += (int64_t)((double)(a - *y1) * (double)(*x2 - *x1) / (double)(*y2 - *y1));
      *y1 = a;
      c1 = (*x1 < 0) + (*x1 > right) * 2;
    }
    if (c2 & 12) {
      a = c2 < 8 ? 0 : bottom;
      *x2 += (int64_t)((double)(a - *y2) * (double)(*x2 - *x1) / (double)(*y2 - *y1));
      *y2 = a;
      c2 = (*x2 < 0) + (*x2 > right) * 2;
    }
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
      if (c1) {
        a = c1 == 1 ? 0 : right;
        *y1 += (int64_t)((double)(a - *x1) * (double)(*y2 - *y1) / (double)(*x2 - *x1));
        *x1 = a;
        c1 = 0;
      }
      if (c2) {
        a = c2 == 1 ? 0 : right;
        *y2 += (int64_t)((double)(a - *x2) * (double)(*y2 - *y1) / (double)(*x2 - *x1));
        *x2 = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) == 0;
}

static inline int outside(const struct osseg_bitmask *m, int64_t x, int64_t y) {
  return x < 0 || y < 0 || x >= (int64_t)m->width || y >= (int64_t)m->height;
}

/* ------------------------------------------------------------- lines --- */

/* cv::LineIterator with connectivity 8 and leftToRight: the segment is
 * clipped, then walked from its left end along the major axis; the minor
 * axis steps whenever the error term is negative before the update. */
static void draw_line(struct osseg_bitmask *m, int64_t xa, int64_t ya, int64_t xb,
                      int64_t yb) {
  if (outside(m, xa, ya) || outside(m, xb, yb)) {
    if (!clip_line(m->width, m->height, &xa, &ya, &xb, &yb)) return;
  }
  int64_t dx = xb - xa, dy = yb - ya;
  int64_t sx = 1, sy = 1;
  int64_t x = xa, y = ya;
  if (dx < 0) { /* walk from the other end */
    dx = -dx;
    dy = -dy;
    x = xb;
    y = yb;
  }
  if (dy < 0) {
    dy = -dy;
    sy = -1;
  }
  int vert = dy > dx;
  int64_t major = vert ? dy : dx, minor = vert ? dx : dy;
  int64_t err = major - 2 * minor;
  for (int64_t i = 0; i <= major; i++) {
    set_pixel(m, x, y);
    int step_minor = err < 0;
    err += -2 * minor + (step_minor ? 2 * major : 0);
    if (vert) {
      y += sy;
      if (step_minor) x += sx;
    } else {
      x += sx;
      if (step_minor) y += sy;
    }
  }
}

/* ------------------------------------------------------------- edges --- */

/* CollectPolyEdges for one contour: draws every edge and appends the
 * non-horizontal ones to edges. In OpenCV 4.6 the fill uses the unclipped
 * vertices (x exactly at the vertex, no half-pixel offset); only the drawn
 * lines are clipped. */
static size_t collect_edges(struct osseg_bitmask *m, const struct osseg_point *v,
                            size_t n, struct edge *edges, size_t ne) {
  int64_t p0x = v[n - 1].x, p0y = v[n - 1].y;
  for (size_t i = 0; i < n; i++) {
    int64_t p1x = v[i].x, p1y = v[i].y;
    draw_line(m, p0x, p0y, p1x, p1y);
    if (p0y != p1y) {
      struct edge e;
      /* C division truncates toward zero, like OpenCV's int64 division. */
      e.dx = (p1x - p0x) * XY_ONE / (p1y - p0y);
      if (p0y < p1y) {
        e.y0 = p0y;
        e.y1 = p1y;
        e.x = p0x * XY_ONE;
      } else {
        e.y0 = p1y;
        e.y1 = p0y;
        e.x = p1x * XY_ONE;
      }
      edges[ne++] = e;
    }
    p0x = p1x;
    p0y = p1y;
  }
  return ne;
}

static int cmp_edge_y0(const void *pa, const void *pb) {
  const struct edge *a = pa, *b = pb;
  if (a->y0 != b->y0) return a->y0 < b->y0 ? -1 : 1;
  return 0;
}

/* FillEdgeCollection. OpenCV keeps an active edge list sorted by x (a merge
 * on insertion and a bubble sort after each row) and pairs neighbours; the
 * pairs of a sorted list depend only on the multiset of x values, so this
 * sorts the active x values of each row and pairs them. Each edge's x at row
 * y is x + (y - y0) * dx, the same integer OpenCV reaches by adding dx once
 * per row, which lets rows above the image be skipped. */
static int fill_edges(struct osseg_bitmask *m, struct edge *edges, size_t ne) {
  if (ne < 2) return 0;
  int64_t ymin = INT64_MAX, ymax = INT64_MIN, xmin = INT64_MAX, xmax = INT64_MIN;
  for (size_t i = 0; i < ne; i++) {
    const struct edge *e = &edges[i];
    int64_t xend = e->x + (e->y1 - e->y0) * e->dx;
    if (e->y0 < ymin) ymin = e->y0;
    if (e->y1 > ymax) ymax = e->y1;
    if (e->x < xmin) xmin = e->x;
    if (e->x > xmax) xmax = e->x;
    if (xend < xmin) xmin = xend;
    if (xend > xmax) xmax = xend;
  }
  if (ymax < 0 || ymin >= (int64_t)m->height || xmax < 0 ||
      xmin >= ((int64_t)m->width << XY_SHIFT))
    return 0;

  qsort(edges, ne, sizeof *edges, cmp_edge_y0);
  size_t *active = osseg__malloc(ne * sizeof *active);
  int64_t *xs = osseg__malloc(ne * sizeof *xs);
  if (!active || !xs) {
    osseg__free(active);
    osseg__free(xs);
    return OSSEG_ENOMEM;
  }
  size_t nactive = 0, next = 0;
  int64_t ystart = ymin < 0 ? 0 : ymin;
  int64_t yend = ymax < (int64_t)m->height ? ymax : (int64_t)m->height;
  for (int64_t y = ystart; y < yend; y++) {
    size_t k = 0;
    for (size_t i = 0; i < nactive; i++) /* drop edges that ended */
      if (edges[active[i]].y1 > y) active[k++] = active[i];
    nactive = k;
    while (next < ne && edges[next].y0 <= y) {
      if (edges[next].y1 > y) active[nactive++] = next;
      next++;
    }
    for (size_t i = 0; i < nactive; i++) {
      const struct edge *e = &edges[active[i]];
      int64_t x = e->x + (y - e->y0) * e->dx;
      size_t j = i; /* insertion sort: a handful of edges per row */
      while (j > 0 && xs[j - 1] > x) {
        xs[j] = xs[j - 1];
        j--;
      }
      xs[j] = x;
    }
    for (size_t i = 0; i + 1 < nactive; i += 2) {
      /* ceil(xl) .. floor(xr) */
      int64_t x1 = (xs[i] + XY_ONE - 1) >> XY_SHIFT, x2 = xs[i + 1] >> XY_SHIFT;
      if (x1 < (int64_t)m->width && x2 >= 0) {
        if (x1 < 0) x1 = 0;
        if (x2 >= (int64_t)m->width) x2 = (int64_t)m->width - 1;
        if (x1 <= x2) set_span(m, y, x1, x2);
      }
    }
  }
  osseg__free(active);
  osseg__free(xs);
  return 0;
}

int osseg_polygon_fill(struct osseg_bitmask *m,
                       const struct osseg_point *const *contours,
                       const size_t *counts, size_t ncontours) {
  if (!m || !m->bits || (ncontours && (!contours || !counts))) return OSSEG_EINVAL;
  size_t total = 0;
  for (size_t c = 0; c < ncontours; c++) {
    if (counts[c] && !contours[c]) return OSSEG_EINVAL;
    if (counts[c] > MAX_VERTICES || total + counts[c] > MAX_VERTICES) return OSSEG_ELIMIT;
    total += counts[c];
  }
  if (total == 0) return 0;
  struct edge *edges = osseg__malloc(total * sizeof *edges);
  if (!edges) return OSSEG_ENOMEM;
  size_t ne = 0;
  for (size_t c = 0; c < ncontours; c++)
    if (counts[c]) ne = collect_edges(m, contours[c], counts[c], edges, ne);
  int rc = fill_edges(m, edges, ne);
  osseg__free(edges);
  return rc;
}

int osseg_polygon_fill1(struct osseg_bitmask *m, const struct osseg_point *pts,
                        size_t n) {
  return osseg_polygon_fill(m, &pts, &n, 1);
}
