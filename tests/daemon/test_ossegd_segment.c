/* ossegd integration tests, segmenting: masks equal to the pipeline's
 * (PNG, raw pixels, PNG masks, file descriptors), hard and soft ensembles,
 * Dice, many requests pipelined on one connection and many connections,
 * ListModels and Stats, per-model times. See daemon_harness.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon_harness.h"
#include "test_support.h"

static struct daemon shared; /* models a and b, 2 workers, 4 MB frames */

static void test_segment_matches_pipeline(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  assert_int_equal(ref.n, 29);

  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 5, png, size, "a");
  q.s.image_name = "hand.png";
  assert_int_equal(send_request(fd, &q.r), 0);
  struct result x = {.id = 5};
  assert_int_equal(collect(fd, &x, 1), 0);
  compare(&x, &ref);
  assert_int_equal(x.done_msg.width, 96);
  assert_int_equal(x.done_msg.height, 80);
  assert_true(x.done_msg.total_ms >= x.done_msg.queue_ms);
  /* Some class is not empty, so the comparison says something. */
  int nonempty = 0;
  for (int c = 0; c < 29; c++) nonempty += x.area[c] > 0;
  assert_true(nonempty > 0);
  result_free(&x);

  /* The same pixels as a raw image give the same masks. */
  struct osseg_image img;
  make_image(&img, 96, 80, 3);
  seg_init(&q, 6, NULL, 0, "a");
  osseg__wire__raw_image__init(&q.raw);
  q.raw.width = 96;
  q.raw.height = 80;
  q.raw.bit_depth = 8;
  q.raw.pixels.data = img.data; /* stride == width for 8-bit gray here */
  q.raw.pixels.len = (size_t)96 * 80;
  assert_int_equal(img.stride, 96);
  q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  q.s.raw = &q.raw;
  assert_int_equal(send_request(fd, &q.r), 0);
  x.id = 6;
  assert_int_equal(collect(fd, &x, 1), 0);
  compare(&x, &ref);
  result_free(&x);
  osseg_image_free(&img);

  /* PNG masks: the same pixels as the RLE. */
  seg_init(&q, 7, png, size, "a");
  q.s.has_output = 1;
  q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_PNG_MASK;
  assert_int_equal(send_request(fd, &q.r), 0);
  x.id = 7;
  assert_int_equal(collect(fd, &x, 1), 0);
  assert_int_equal(x.nmasks, 29);
  for (int c = 0; c < 29; c++) {
    assert_non_null(x.png[c]);
    /* IHDR: bit depth 1, colour type 0 (gray), as the proto promises. */
    assert_true(x.png_len[c] > 26);
    assert_int_equal(x.png[c][24], 1);
    assert_int_equal(x.png[c][25], 0);
    struct osseg_image m;
    assert_int_equal(osseg_png_decode_mem(x.png[c], x.png_len[c], NULL, &m, NULL), 0);
    assert_int_equal(m.width, 96);
    assert_int_equal(m.height, 80);
    struct osseg_runs runs = {0};
    assert_int_equal(osseg_rle_parse(ref.rle[c], strlen(ref.rle[c]), 96 * 80, &runs, NULL), 0);
    struct osseg_bitmask want;
    assert_int_equal(osseg_bitmask_init(&want, 80, 96), 0);
    assert_int_equal(osseg_bitmask_paint_runs(&want, runs.v, runs.n), 0);
    uint64_t area = 0;
    for (uint32_t y = 0; y < 80; y++)
      for (uint32_t xx = 0; xx < 96; xx++) {
        uint64_t p = (uint64_t)y * 96 + xx;
        int bit = (int)((want.bits[p / 64] >> (p % 64)) & 1);
        uint8_t v = m.data[(size_t)y * m.stride + xx];
        assert_int_equal(v, bit ? 255 : 0);
        area += bit;
      }
    assert_int_equal(area, x.area[c]);
    osseg_bitmask_free(&want);
    osseg_runs_free(&runs);
    osseg_image_free(&m);
  }
  result_free(&x);
  close(fd);
  ref_free(&ref);
}

static void test_ensembles(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a", "b"};
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  for (int soft = 0; soft <= 1; soft++) {
    struct ref ref;
    reference(&ref, png, size, models, 2, soft, NULL);
    struct seg_req q;
    seg_init(&q, 10 + (uint64_t)soft, png, size, "a");
    q.models[1] = "b";
    q.s.n_models = 2;
    osseg__wire__vote__init(&q.vote);
    q.vote.has_kind = 1;
    q.vote.kind = soft ? OSSEG__WIRE__VOTE__KIND__SOFT : OSSEG__WIRE__VOTE__KIND__HARD;
    q.s.vote = &q.vote;
    assert_int_equal(send_request(fd, &q.r), 0);
    struct result x = {.id = 10 + (uint64_t)soft};
    assert_int_equal(collect(fd, &x, 1), 0);
    compare(&x, &ref);
    result_free(&x);
    ref_free(&ref);
  }
  close(fd);
}

static void test_dice(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  /* Ground truth: model b's masks of a few classes. */
  const char *mb[] = {"b"}, *ma[] = {"a"};
  struct ref gtref;
  reference(&gtref, png, size, mb, 1, 0, NULL);
  static const int classes[] = {0, 5, 19, 27, 28};
  struct osseg_runs runs[5];
  memset(runs, 0, sizeof runs);
  struct osseg_ground_truth gt;
  memset(&gt, 0, sizeof gt);
  for (int i = 0; i < 5; i++) {
    const char *t = gtref.rle[classes[i]];
    assert_int_equal(osseg_rle_parse(t, strlen(t), 96 * 80, &runs[i], NULL), 0);
    gt.has[classes[i]] = 1;
    gt.runs[classes[i]] = runs[i].v;
    gt.nruns[classes[i]] = runs[i].n;
  }
  struct ref ref;
  reference(&ref, png, size, ma, 1, 0, &gt);
  assert_true(ref.has_dice);

  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  for (int dice_only = 0; dice_only <= 1; dice_only++) {
    struct seg_req q;
    seg_init(&q, 20 + (uint64_t)dice_only, png, size, "a");
    osseg__wire__ground_truth__init(&q.gt);
    osseg__wire__class_rles__init(&q.rles);
    for (int i = 0; i < 5; i++) {
      osseg__wire__class_rle__init(&q.rle[i]);
      q.rle[i].name = (char *)osseg_canonical_class((unsigned)classes[i]);
      q.rle[i].rle = gtref.rle[classes[i]];
      q.rlep[i] = &q.rle[i];
    }
    q.rles.classes = q.rlep;
    q.rles.n_classes = 5;
    q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
    q.gt.rles = &q.rles;
    q.s.ground_truth = &q.gt;
    if (dice_only) {
      q.s.has_output = 1;
      q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;
    }
    assert_int_equal(send_request(fd, &q.r), 0);
    struct result x = {.id = 20 + (uint64_t)dice_only};
    assert_int_equal(collect(fd, &x, 1), 0);
    assert_int_equal(x.error, 0);
    if (!x.has_dice) fail_msg("no Dice: %d masks, done %d", x.nmasks, x.done);
    assert_true(x.dice_before_done);
    assert_int_equal(x.nmasks, dice_only ? 0 : 29);
    assert_int_equal(x.dice_n, ref.dice.n);
    for (size_t k = 0; k < ref.dice.n; k++) {
      assert_int_equal(x.dice_cls[k], ref.dice.cls[k]);
      assert_true(x.dice[k] == ref.dice.dice[k]);
    }
    assert_true(x.dice_mean == ref.dice.mean);
    result_free(&x);
  }
  /* A run past the end of the image is the request's fault. */
  struct seg_req q;
  seg_init(&q, 22, png, size, "a");
  osseg__wire__ground_truth__init(&q.gt);
  osseg__wire__class_rles__init(&q.rles);
  osseg__wire__class_rle__init(&q.rle[0]);
  q.rle[0].name = "Radius";
  q.rle[0].rle = "7600 100";
  q.rlep[0] = &q.rle[0];
  q.rles.classes = q.rlep;
  q.rles.n_classes = 1;
  q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
  q.gt.rles = &q.rles;
  q.s.ground_truth = &q.gt;
  assert_int_equal(send_request(fd, &q.r), 0);
  struct result x = {.id = 22};
  assert_int_equal(collect(fd, &x, 1), 0);
  assert_int_equal(x.error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x.message, "ground_truth.rles"));
  result_free(&x);
  close(fd);
  for (int i = 0; i < 5; i++) osseg_runs_free(&runs[i]);
  ref_free(&ref);
  ref_free(&gtref);
}

/* Sends a Segment of the PNG with label_json ground truth, Dice only. */
static void send_label_json(int fd, uint64_t id, const uint8_t *png, size_t size,
                            const char *json, int dice_only) {
  struct seg_req q;
  seg_init(&q, id, png, size, "a");
  osseg__wire__ground_truth__init(&q.gt);
  q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_LABEL_JSON;
  q.gt.label_json = (char *)json;
  q.s.ground_truth = &q.gt;
  if (dice_only) {
    q.s.has_output = 1;
    q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;
  }
  assert_int_equal(send_request(fd, &q.r), 0);
}

/* ground_truth.label_json of a sample phantom scores exactly as the RLE of
 * its gt.csv rows: the same 29 Dice values and mean; without one of its
 * annotations that class scores differently (the Dice comes from the
 * JSON). Bad label JSON is BAD_REQUEST naming the problem, and the daemon
 * goes on answering. */
static void test_label_json(void **state) {
  (void)state;
  char samples[4096];
  snprintf(samples, sizeof samples, "%s/data/samples", test_source_dir());
  const char *image = "phantom_1000100";
  size_t png_size = 0, json_size = 0;
  uint8_t *png = (uint8_t *)test_read_file(test_path("%s/images/%s.png", samples, image),
                                           &png_size);
  char *json = test_read_file(test_path("%s/labels/%s.json", samples, image), &json_size);
  struct osseg_csv gt = {0};
  int have_gt = osseg_csv_open(&gt, test_path("%s/gt.csv", samples), NULL, NULL) == 0;
  if (!png || !json || !have_gt) {
    free(png);
    free(json);
    if (have_gt) osseg_csv_close(&gt);
    print_message("sample phantom %s not found: skipped\n", image);
    skip();
  }

  /* The RLE request: gt.csv's 29 rows of the image. */
  struct seg_req q;
  seg_init(&q, 30, png, png_size, "a");
  osseg__wire__ground_truth__init(&q.gt);
  osseg__wire__class_rles__init(&q.rles);
  char *texts[OSSEG_MAX_CLASSES] = {0};
  size_t n = 0;
  char image_name[64];
  snprintf(image_name, sizeof image_name, "%s.png", image);
  for (size_t r = 0; r < gt.nrows && n < OSSEG_MAX_CLASSES; r++) {
    const struct osseg_csv_row *row = &gt.rows[r];
    if (row->image_len != strlen(image_name) || memcmp(row->image, image_name, row->image_len))
      continue;
    texts[n] = malloc(row->cls_len + row->rle_len + 2);
    assert_non_null(texts[n]);
    memcpy(texts[n], row->cls, row->cls_len);
    texts[n][row->cls_len] = '\0';
    memcpy(texts[n] + row->cls_len + 1, row->rle, row->rle_len);
    texts[n][row->cls_len + 1 + row->rle_len] = '\0';
    osseg__wire__class_rle__init(&q.rle[n]);
    q.rle[n].name = texts[n];
    q.rle[n].rle = texts[n] + row->cls_len + 1;
    q.rlep[n] = &q.rle[n];
    n++;
  }
  assert_int_equal(n, 29);
  q.rles.classes = q.rlep;
  q.rles.n_classes = n;
  q.gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
  q.gt.rles = &q.rles;
  q.s.ground_truth = &q.gt;
  q.s.has_output = 1;
  q.s.output = OSSEG__WIRE__OUTPUT__OUTPUT_DICE_ONLY;

  /* The JSON without its Capitate annotation (class 21). */
  char *cut = strstr(json, "{\"label\":\"Capitate\"");
  assert_non_null(cut);
  char *cut_end = strstr(cut, "]]}");
  assert_non_null(cut_end);
  cut_end += 3;
  if (*cut_end == ',') cut_end++;
  else if (cut[-1] == ',') cut--;
  size_t without_len = json_size - (size_t)(cut_end - cut);
  char *without = malloc(without_len + 1);
  assert_non_null(without);
  memcpy(without, json, (size_t)(cut - json));
  memcpy(without + (cut - json), cut_end, json_size - (size_t)(cut_end - json));
  without[without_len] = '\0';

  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  assert_int_equal(send_request(fd, &q.r), 0);
  send_label_json(fd, 31, png, png_size, json, 1);
  send_label_json(fd, 32, png, png_size, without, 1);
  send_label_json(fd, 33, png, png_size, json, 0); /* masks streamed too */
  struct result x[4] = {{.id = 30}, {.id = 31}, {.id = 32}, {.id = 33}};
  assert_int_equal(collect(fd, x, 4), 0);
  for (int i = 0; i < 4; i++) {
    if (x[i].error) fail_msg("request %d: error %d: %s", 30 + i, x[i].error - 1, x[i].message);
    assert_true(x[i].has_dice);
    assert_true(x[i].dice_before_done);
    assert_int_equal(x[i].dice_n, 29);
    assert_int_equal(x[i].nmasks, i == 3 ? 29 : 0);
  }
  assert_int_equal(x[3].done_msg.width, 2048);
  int differ = 0;
  for (size_t k = 0; k < 29; k++) {
    assert_int_equal(x[1].dice_cls[k], x[0].dice_cls[k]);
    if (x[1].dice[k] != x[0].dice[k])
      fail_msg("class %u: Dice %.9g from label_json, %.9g from rles", x[0].dice_cls[k],
               x[1].dice[k], x[0].dice[k]);
    assert_true(x[3].dice[k] == x[0].dice[k]);
    if (x[2].dice[k] != x[0].dice[k]) {
      assert_int_equal(x[2].dice_cls[k], 21);
      differ++;
    }
  }
  assert_true(x[1].dice_mean == x[0].dice_mean);
  assert_int_equal(differ, 1);
  double x0_dice[29];
  memcpy(x0_dice, x[0].dice, sizeof x0_dice);
  for (int i = 0; i < 4; i++) result_free(&x[i]);

  /* Bad label JSON: BAD_REQUEST naming the problem; the connection and
   * the daemon go on. */
  size_t small_size;
  const uint8_t *small = test_png(&small_size);
  send_label_json(fd, 34, small, small_size,
                  "{\"annotations\": [{\"label\": \"Kneecap\", \"points\": [[1,1],[9,1],[5,9]]}]}", 0);
  send_label_json(fd, 35, small, small_size, "{\"annotations\": [{\"label\": \"Ulna\",", 0);
  send_label_json(fd, 36, small, small_size,
                  "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[1,1],[9,1]]}]}", 1);
  send_label_json(fd, 37, small, small_size,
                  "{\"annotations\": [{\"label\": \"Ulna\", \"points\": [[1,1],[90,1],[50,79]]}]}",
                  0);
  struct result y[4] = {{.id = 34}, {.id = 35}, {.id = 36}, {.id = 37}};
  assert_int_equal(collect(fd, y, 4), 0);
  assert_int_equal(y[0].error, CODE(BAD_REQUEST) + 1);
  assert_string_equal(y[0].message,
                      "ground_truth.label_json: annotations[0].label: 'Kneecap' is none of the 29 "
                      "classes (finger-1 ... Ulna)");
  assert_int_equal(y[1].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(y[1].message, "ground_truth.label_json:1:"));
  assert_int_equal(y[2].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(y[2].message, "a polygon needs at least 3"));
  assert_int_equal(y[3].error, 0);
  assert_int_equal(y[3].nmasks, 29);
  assert_int_equal(y[3].dice_n, 29);
  for (int i = 0; i < 4; i++) result_free(&y[i]);

  /* Text over 64 KiB is parsed by the worker: the sample's JSON padded
   * with an ignored member scores the same; with a bad label it is the
   * same BAD_REQUEST. */
  size_t pad = (size_t)70 << 10;
  char *big = malloc(json_size + pad + 32);
  assert_non_null(big);
  char *end = strrchr(json, '}');
  assert_non_null(end);
  size_t head = (size_t)(end - json);
  memcpy(big, json, head);
  size_t m = head + (size_t)sprintf(big + head, ",\"pad\":\"");
  memset(big + m, 'x', pad);
  strcpy(big + m + pad, "\"}");
  send_label_json(fd, 38, png, png_size, big, 1);
  char *label = strstr(big, "\"label\":\"Ulna\"");
  assert_non_null(label);
  memcpy(label + 9, "Ulma", 4);
  send_label_json(fd, 39, png, png_size, big, 1);
  struct result z[2] = {{.id = 38}, {.id = 39}};
  assert_int_equal(collect(fd, z, 2), 0);
  assert_int_equal(z[0].error, 0);
  assert_int_equal(z[0].dice_n, 29);
  for (size_t k = 0; k < 29; k++) assert_true(z[0].dice[k] == x0_dice[k]);
  assert_int_equal(z[1].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(z[1].message, "].label: 'Ulma' is none of the 29 classes"));
  for (int i = 0; i < 2; i++) result_free(&z[i]);
  free(big);
  close(fd);
  Osseg__Wire__Response *h = health(&shared);
  assert_true(h->health->ready);
  osseg__wire__response__free_unpacked(h, NULL);

  for (size_t i = 0; i < n; i++) free(texts[i]);
  free(without);
  free(json);
  free(png);
  osseg_csv_close(&gt);
}

static void test_pipelined(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  enum { N = 24 };
  struct result x[N];
  memset(x, 0, sizeof x);
  for (int i = 0; i < N; i++) {
    x[i].id = 100 + (uint64_t)i;
    if (i % 6 == 5) {
      Osseg__Wire__Request r;
      simple_req(&r, x[i].id, OSSEG__WIRE__REQUEST__KIND_HEALTH);
      assert_int_equal(send_request(fd, &r), 0);
    } else {
      struct seg_req q;
      seg_init(&q, x[i].id, png, size, "a");
      if (i % 2) {
        q.s.has_priority = 1;
        q.s.priority = OSSEG__WIRE__PRIORITY__PRIORITY_BATCH;
      }
      assert_int_equal(send_request(fd, &q.r), 0);
    }
  }
  assert_int_equal(collect(fd, x, N), 0);
  for (int i = 0; i < N; i++) {
    if (i % 6 == 5)
      assert_int_equal(x[i].other, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
    else
      compare(&x[i], &ref);
    result_free(&x[i]);
  }
  close(fd);
  ref_free(&ref);
}

static void test_concurrent_connections(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  enum { C = 5, R = 3 };
  int fds[C];
  for (int c = 0; c < C; c++) {
    fds[c] = try_connect(shared.sock);
    assert_true(fds[c] >= 0);
    for (int r = 0; r < R; r++) {
      struct seg_req q;
      seg_init(&q, (uint64_t)r, png, size, "a"); /* the same ids on every connection */
      assert_int_equal(send_request(fds[c], &q.r), 0);
    }
  }
  for (int c = 0; c < C; c++) {
    struct result x[R];
    memset(x, 0, sizeof x);
    for (int r = 0; r < R; r++) x[r].id = (uint64_t)r;
    assert_int_equal(collect(fds[c], x, R), 0);
    for (int r = 0; r < R; r++) {
      compare(&x[r], &ref);
      result_free(&x[r]);
    }
    close(fds[c]);
  }
  ref_free(&ref);
}

static void test_image_fd(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  const char *dir = test_tmpdir();
  const char *path = test_path("%s/hand.png", dir);
  assert_int_equal(test_write_file(path, png, size), 0);
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  Osseg__Wire__ImageFd imfd = OSSEG__WIRE__IMAGE_FD__INIT;
  struct result x[4];
  memset(x, 0, sizeof x);
  /* Two files in a row, the second read from a moved offset. */
  for (int i = 0; i < 2; i++) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    if (i == 1) assert_true(lseek(fd, 10, SEEK_SET) == 10);
    struct seg_req q;
    seg_init(&q, (uint64_t)i, NULL, 0, "a");
    q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
    q.s.fd = &imfd;
    assert_int_equal(send_request_fd(sock, &q.r, fd), 0);
    close(fd); /* the daemon has its own copy */
    x[i].id = (uint64_t)i;
  }
  /* A directory. */
  struct seg_req q;
  seg_init(&q, 3, NULL, 0, "a");
  q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_FD;
  q.s.fd = &imfd;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  assert_true(dfd >= 0);
  assert_int_equal(send_request_fd(sock, &q.r, dfd), 0);
  close(dfd);
  x[2].id = 3;
  assert_int_equal(collect(sock, x, 3), 0);
  compare(&x[0], &ref);
  compare(&x[1], &ref);
  assert_int_equal(x[2].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[2].message, "not a regular file"));
  /* No descriptor at all (pairing is first come, first served, so this is
   * tested alone on its connection). */
  int sock2 = try_connect(shared.sock);
  assert_true(sock2 >= 0);
  q.r.id = 2;
  assert_int_equal(send_request_fd(sock2, &q.r, -1), 0);
  x[3].id = 2;
  assert_int_equal(collect(sock2, &x[3], 1), 0);
  assert_int_equal(x[3].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[3].message, "image.fd: no file descriptor"));
  close(sock2);
  for (int i = 0; i < 4; i++) result_free(&x[i]);
  close(sock);
  ref_free(&ref);
}

static void test_list_models_and_stats(void **state) {
  (void)state;
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  /* Two refusals for Stats to count: an unknown model and a corrupt PNG
   * (signature and IHDR intact, the image data garbage). */
  size_t size;
  const uint8_t *png = test_png(&size);
  uint8_t corrupt[96];
  memcpy(corrupt, png, 33);
  memset(corrupt + 33, 0x5a, sizeof corrupt - 33);
  struct seg_req q;
  seg_init(&q, 3, png, size, "nosuchmodel");
  assert_int_equal(send_request(fd, &q.r), 0);
  seg_init(&q, 4, corrupt, sizeof corrupt, "a");
  assert_int_equal(send_request(fd, &q.r), 0);
  struct result bad[2] = {{.id = 3}, {.id = 4}};
  assert_int_equal(collect(fd, bad, 2), 0);
  assert_int_equal(bad[0].error, CODE(UNKNOWN_MODEL) + 1);
  assert_int_equal(bad[1].error, CODE(BAD_IMAGE) + 1);
  result_free(&bad[0]);
  result_free(&bad[1]);
  Osseg__Wire__Request r;
  simple_req(&r, 1, OSSEG__WIRE__REQUEST__KIND_LIST_MODELS);
  assert_int_equal(send_request(fd, &r), 0);
  simple_req(&r, 2, OSSEG__WIRE__REQUEST__KIND_STATS);
  assert_int_equal(send_request(fd, &r), 0);
  struct result x[2] = {{.id = 1}, {.id = 2}};
  assert_int_equal(collect(fd, x, 2), 0);
  Osseg__Wire__ModelList *ml = x[0].kept->models;
  assert_int_equal(ml->n_models, 2);
  for (size_t i = 0; i < 2; i++) {
    Osseg__Wire__ModelInfo *m = ml->models[i];
    assert_string_equal(m->name, i ? "b" : "a");
    assert_int_equal(strlen(m->sha256), 64);
    assert_int_equal(m->input_size, 64);
    assert_string_equal(m->precision, "fp32");
    assert_int_equal(m->n_classes, 29);
    assert_string_equal(m->classes[28], "Ulna");
    assert_true(m->has_generation && m->generation >= 1);
  }
  struct osseg_loaded_model *lm;
  assert_int_equal(osseg_registry_get(ref_reg, "a", &lm), 0);
  assert_string_equal(ml->models[0]->sha256, osseg_loaded_model_sha256(lm));
  osseg_loaded_model_unref(lm);
  Osseg__Wire__Stats *st = x[1].kept->stats;
  assert_int_equal(st->n_outcomes, 9);
  assert_string_equal(st->outcomes[0]->name, "ok");
  assert_true(st->connections >= 1);
  assert_true(st->bytes_in > 0 && st->bytes_out > 0);
  assert_int_equal(st->n_models, 2);
  assert_true(st->n_latency > 0);
  /* Earlier tests' successes, the two refusals above. */
  assert_true(st->outcomes[0]->count >= 10);
  assert_string_equal(st->outcomes[CODE(UNKNOWN_MODEL) + 1]->name, "UNKNOWN_MODEL");
  assert_true(st->outcomes[CODE(UNKNOWN_MODEL) + 1]->count >= 1);
  assert_true(st->outcomes[CODE(BAD_IMAGE) + 1]->count >= 1);
  /* Buckets are cumulative: the last (infinity) counts every success. */
  assert_int_equal(st->latency[st->n_latency - 1]->count, st->outcomes[0]->count);
  for (size_t i = 1; i < st->n_latency; i++)
    assert_true(st->latency[i]->count >= st->latency[i - 1]->count);
  assert_true(st->models[0]->runs >= 10);
  assert_true(st->models[0]->mean_ms > 0 && st->models[0]->max_ms >= st->models[0]->mean_ms);
  result_free(&x[0]);
  result_free(&x[1]);
  close(fd);
}

/* Done and Stats carry each model's own engine time: a 256x256 model next
 * to a 64x64 one in one ensemble takes longer, and Stats reports exactly
 * the times Done did. */
static void test_model_times(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *dir = test_tmpdir();
  char big[512];
  snprintf(big, sizeof big, "big=%s", demo_model());
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, "--model", big, NULL), 0);
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 1, png, size, "big");
  q.models[1] = "a";
  q.s.n_models = 2;
  assert_int_equal(send_request(fd, &q.r), 0);
  Osseg__Wire__Response *r = recv_final(fd, 1);
  assert_int_equal(r->kind_case, OSSEG__WIRE__RESPONSE__KIND_DONE);
  Osseg__Wire__Done *done = r->done;
  assert_int_equal(done->n_inference, 2);
  assert_string_equal(done->inference[0]->model, "big");
  assert_string_equal(done->inference[1]->model, "a");
  double big_ms = done->inference[0]->ms, a_ms = done->inference[1]->ms;
  assert_true(a_ms > 0 && big_ms > a_ms);
  assert_true(done->decode_ms + done->preprocess_ms + big_ms + a_ms + done->postprocess_ms <=
              done->total_ms + 1e-6);
  osseg__wire__response__free_unpacked(r, NULL);

  Osseg__Wire__Request sr;
  simple_req(&sr, 2, OSSEG__WIRE__REQUEST__KIND_STATS);
  assert_int_equal(send_request(fd, &sr), 0);
  r = recv_response(fd);
  assert_non_null(r);
  assert_int_equal(r->kind_case, OSSEG__WIRE__RESPONSE__KIND_STATS);
  int seen = 0;
  for (size_t i = 0; i < r->stats->n_models; i++) {
    const Osseg__Wire__Stats__ModelStats *m = r->stats->models[i];
    double want = strcmp(m->model, "big") == 0 ? big_ms : strcmp(m->model, "a") == 0 ? a_ms : 0;
    if (want == 0) {
      assert_int_equal(m->runs, 0); /* b did not run */
      continue;
    }
    assert_int_equal(m->runs, 1);
    assert_true(m->mean_ms == want && m->max_ms == want);
    seen++;
  }
  assert_int_equal(seen, 2);
  osseg__wire__response__free_unpacked(r, NULL);
  close(fd);
  assert_int_equal(daemon_stop(&d, 20), 0);
}

/* One of the 64 clients of test_64_clients: a connection sending its
 * requests one after another, reading whatever has arrived. */
struct client {
  int fd;
  unsigned sent, done;   /* requests sent, requests ended with Done */
  unsigned next_class;   /* class index the next ClassMask must have */
  uint8_t *buf;          /* bytes read, not yet parsed */
  size_t len, cap;
};

enum { NCLIENTS = 64, NREQ = 10, NIMAGES = 4 };

static int image_of(int c, unsigned r) { return (int)((unsigned)c + r) % NIMAGES; }

static void client_send(struct client *cl, int c, uint8_t *const *png, const size_t *png_size) {
  struct seg_req q;
  int img = image_of(c, cl->sent);
  /* The same ids on every connection: they are the connection's own. */
  seg_init(&q, cl->sent + 1, png[img], png_size[img], "a");
  char name[32];
  snprintf(name, sizeof name, "img%d.png", img);
  q.s.image_name = name;
  assert_int_equal(send_request(cl->fd, &q.r), 0);
  cl->sent++;
  cl->next_class = 0;
}

/* Handles one response; returns 1 when it ended the client's request. */
static int client_response(struct client *cl, int c, const Osseg__Wire__Response *r,
                           struct ref *refs) {
  unsigned req = cl->sent - 1;
  if (r->id != req + 1)
    fail_msg("client %d: response for id %llu while request %u runs", c,
             (unsigned long long)r->id, req + 1);
  const struct ref *want = &refs[image_of(c, req)];
  switch (r->kind_case) {
    case OSSEG__WIRE__RESPONSE__KIND_CLASS_MASK: {
      const Osseg__Wire__ClassMask *m = r->class_mask;
      if (m->index != cl->next_class || m->index >= want->n || !m->rle ||
          strcmp(m->rle, want->rle[m->index]) != 0)
        fail_msg("client %d, request %u: class %u differs from the single-client answer", c,
                 req + 1, m->index);
      cl->next_class++;
      return 0;
    }
    case OSSEG__WIRE__RESPONSE__KIND_DONE:
      if (cl->next_class != want->n)
        fail_msg("client %d, request %u: Done after %u of %zu masks", c, req + 1,
                 cl->next_class, want->n);
      assert_int_equal(r->done->width, 96);
      cl->done++;
      return 1;
    case OSSEG__WIRE__RESPONSE__KIND_ERROR:
      fail_msg("client %d, request %u: %s", c, req + 1, r->error->message);
      return 1;
    default:
      fail_msg("client %d: unexpected response kind %d", c, (int)r->kind_case);
      return 1;
  }
}

/* 64 concurrent clients x 10 requests each, from one poll loop: every
 * answer equal to the single-client one (each client cycles through four
 * images, so an answer delivered to the wrong connection or request would
 * show), none lost (640 Done frames, and Stats counting exactly the
 * successes and connections there were), the daemon's peak RSS reported
 * and bounded, and a clean exit on SIGTERM (status 0; under the sanitizer
 * build LeakSanitizer checks it then). */
static void test_64_clients(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  struct daemon d;
  assert_int_equal(daemon_start(&d, dir, NULL), 0); /* connection 1: the readiness probe */
  uint8_t *png[NIMAGES];
  size_t png_size[NIMAGES];
  struct ref refs[NIMAGES];
  const char *models[] = {"a"};
  /* The single-client answers, checked against the pipeline's (connection
   * 2). */
  int fd = try_connect(d.sock);
  assert_true(fd >= 0);
  for (int i = 0; i < NIMAGES; i++) {
    png[i] = make_png(96, 80, 20 + (uint32_t)i, &png_size[i]);
    reference(&refs[i], png[i], png_size[i], models, 1, 0, NULL);
    struct seg_req q;
    seg_init(&q, (uint64_t)i, png[i], png_size[i], "a");
    assert_int_equal(send_request(fd, &q.r), 0);
    struct result x = {.id = (uint64_t)i};
    assert_int_equal(collect(fd, &x, 1), 0);
    compare(&x, &refs[i]);
    result_free(&x);
  }
  close(fd);
  for (int i = 1; i < NIMAGES; i++) /* distinct answers, or a mix-up would not show */
    assert_true(strcmp(refs[i].rle[28], refs[0].rle[28]) != 0 ||
                strcmp(refs[i].rle[5], refs[0].rle[5]) != 0);
  uint64_t rss_before = daemon_peak_rss_kib(&d);

  static struct client cl[NCLIENTS];
  memset(cl, 0, sizeof cl);
  struct pollfd pfd[NCLIENTS];
  for (int c = 0; c < NCLIENTS; c++) {
    cl[c].fd = try_connect(d.sock);
    assert_true(cl[c].fd >= 0);
    pfd[c].fd = cl[c].fd;
    pfd[c].events = POLLIN;
  }
  double t0 = now_s();
  for (int c = 0; c < NCLIENTS; c++) client_send(&cl[c], c, png, png_size);
  unsigned finished = 0, dones = 0;
  while (finished < NCLIENTS) {
    int n = poll(pfd, NCLIENTS, 30000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_msg("no answer for 30 s: %u of %d requests done", dones, NCLIENTS * NREQ);
    for (int c = 0; c < NCLIENTS; c++) {
      if (pfd[c].fd < 0 || !(pfd[c].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      struct client *k = &cl[c];
      if (k->cap - k->len < 65536) {
        k->cap = k->cap ? k->cap * 2 : 131072;
        k->buf = realloc(k->buf, k->cap);
        assert_non_null(k->buf);
      }
      ssize_t got = recv(k->fd, k->buf + k->len, k->cap - k->len, MSG_DONTWAIT);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) fail_msg("client %d: the daemon closed the connection", c);
      k->len += (size_t)got;
      size_t off = 0;
      while (k->len - off >= 4) {
        const uint8_t *h = k->buf + off;
        size_t flen = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        if (k->len - off - 4 < flen) break;
        Osseg__Wire__Response *r = osseg__wire__response__unpack(NULL, flen, h + 4);
        assert_non_null(r);
        off += 4 + flen;
        int ended = client_response(k, c, r, refs);
        osseg__wire__response__free_unpacked(r, NULL);
        if (!ended) continue;
        dones++;
        if (k->sent < NREQ) {
          client_send(k, c, png, png_size);
        } else {
          assert_int_equal(k->len - off, 0); /* nothing after the last Done */
          close(k->fd);
          pfd[c].fd = -1;
          finished++;
        }
      }
      memmove(k->buf, k->buf + off, k->len - off);
      k->len -= off;
    }
  }
  double dt = now_s() - t0;
  for (int c = 0; c < NCLIENTS; c++) {
    assert_int_equal(cl[c].done, NREQ);
    free(cl[c].buf);
  }
  assert_int_equal(dones, NCLIENTS * NREQ);
  uint64_t rss_after = daemon_peak_rss_kib(&d);
  print_message("%d clients x %d requests: %.2f s (%.0f requests/s); ossegd peak RSS %llu KiB "
                "before, %llu KiB after\n",
                NCLIENTS, NREQ, dt, NCLIENTS * NREQ / dt, (unsigned long long)rss_before,
                (unsigned long long)rss_after);

  /* The daemon counted the same: every success, no other outcome, and the
   * connections (probe, single client, 64 clients, this one). */
  Osseg__Wire__Response *st = stats(&d);
  const Osseg__Wire__Stats *s = st->stats;
  assert_int_equal(s->outcomes[0]->count, NCLIENTS * NREQ + NIMAGES);
  for (size_t i = 1; i < s->n_outcomes; i++)
    if (s->outcomes[i]->count) fail_msg("%llu %s", (unsigned long long)s->outcomes[i]->count,
                                        s->outcomes[i]->name);
  assert_int_equal(s->latency[s->n_latency - 1]->count, NCLIENTS * NREQ + NIMAGES);
  assert_int_equal(s->connections_total, 1 + 1 + NCLIENTS + 1);
  assert_int_equal(s->queue_depth, 0);
  assert_int_equal(s->models[0]->runs, NCLIENTS * NREQ + NIMAGES);
  osseg__wire__response__free_unpacked(st, NULL);
  /* Bounded: requests are small and never more than 64 are in flight.
   * Sanitizers add their own: ASan's quarantine keeps up to 256 MiB of
   * freed memory, TSan shadows every access. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const uint64_t growth_kib = 512 * 1024;
#else
  const uint64_t growth_kib = 64 * 1024;
#endif
  assert_true(rss_after - rss_before < growth_kib);
  for (int i = 0; i < NIMAGES; i++) {
    free(png[i]);
    ref_free(&refs[i]);
  }
  assert_int_equal(daemon_stop(&d, 60), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_segment_matches_pipeline),
      cmocka_unit_test(test_ensembles),
      cmocka_unit_test(test_dice),
      cmocka_unit_test(test_label_json),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_concurrent_connections),
      cmocka_unit_test(test_image_fd),
      cmocka_unit_test(test_list_models_and_stats),
      cmocka_unit_test(test_model_times),
      cmocka_unit_test(test_64_clients),
  };
  return harness_main_shared(tests, &shared, "--max-frame-bytes", "4000000", NULL);
}
