/* ossegd integration tests, bad input: frames over the limit, garbage,
 * truncated frames, invalid requests, PNG bombs, descriptors that are not
 * readable regular files, absurd raw dimensions, out-of-range enums and
 * unknown fields, bad ground truth; each answered by an Error or a closed
 * connection, and after each the daemon still answers Health and serves a
 * good Segment. See daemon_harness.h. */
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

#include <libdeflate.h>

#include "daemon_harness.h"
#include "test_support.h"

/* Models a and b; 4 MB frames, 2048 x 2048 pixels; one worker, so that a
 * request answered on the loop thread is seen to overtake queued ones. */
static struct daemon shared;

/* Sends q (with descriptor fd if >= 0) and checks its Error: code, and the
 * message containing each of the needles (NULL-terminated). */
static void expect_error(int sock, struct seg_req *q, int fd, int code, ...) {
  if (fd >= 0)
    assert_int_equal(send_request_fd(sock, &q->r, fd), 0);
  else
    assert_int_equal(send_request(sock, &q->r), 0);
  struct result x = {.id = q->r.id};
  assert_int_equal(collect(sock, &x, 1), 0);
  if (x.error != code + 1)
    fail_msg("request %llu: expected code %d, got %d (%s)", (unsigned long long)q->r.id, code,
             x.error - 1, x.error ? x.message : "Done");
  va_list ap;
  va_start(ap, code);
  const char *needle;
  while ((needle = va_arg(ap, const char *)) != NULL)
    if (!strstr(x.message, needle)) fail_msg("'%s' does not contain '%s'", x.message, needle);
  va_end(ap);
  result_free(&x);
}

/* PNG bombs: a hundred bytes declaring a huge image. The header is checked
 * before any pixel memory exists, for PNG bytes and for a descriptor:
 * IMAGE_TOO_LARGE naming the size and the limit (BAD_IMAGE for sizes no PNG
 * may have), and the daemon's peak RSS does not move. Then a real
 * decompression bomb (64 MiB of zeros in 64 KiB of IDAT behind a 1024 x 1024
 * header): answered, and the RSS still bounded. First in the group, so the
 * peak RSS is the warmed-up daemon's. */
static void test_png_bomb(void **state) {
  (void)state;
  uint64_t rss0 = daemon_peak_rss_kib(&shared);
  static const uint8_t empty_zlib[] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
  static const struct {
    uint32_t w, h;
    int code;
    const char *size, *limit;
  } cases[] = {
      {100000, 100000, CODE(IMAGE_TOO_LARGE), "100000x100000", "16384x16384"},
      /* Within the side, over --max-image-pixels. */
      {16000, 16000, CODE(IMAGE_TOO_LARGE), "16000x16000", "4194304 pixels"},
      {2049, 2048, CODE(IMAGE_TOO_LARGE), "2049x2048", "4194304 pixels"},
      {0x7fffffffu, 0x7fffffffu, CODE(IMAGE_TOO_LARGE), "2147483647x2147483647", "16384"},
      /* Not PNG sizes at all (1..2^31-1). */
      {0x80000000u, 1, CODE(BAD_IMAGE), "2147483648x1", "invalid dimensions"},
      {0, 0, CODE(BAD_IMAGE), "0x0", "invalid dimensions"},
  };
  const char *dir = test_tmpdir();
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t size;
    uint8_t *png = make_png_raw(cases[i].w, cases[i].h, empty_zlib, sizeof empty_zlib, &size);
    assert_true(size < 100);
    struct seg_req q;
    seg_init(&q, 100 + i, png, size, "a");
    expect_error(sock, &q, -1, cases[i].code, cases[i].size, cases[i].limit, NULL);
    /* The same file as a descriptor. */
    const char *path = test_path("%s/bomb%zu.png", dir, i);
    assert_int_equal(test_write_file(path, png, size), 0);
    free(png);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    seg_init(&q, 200 + i, NULL, 0, "a");
    seg_set_fd(&q);
    expect_error(sock, &q, fd, cases[i].code, cases[i].size, cases[i].limit, NULL);
    close(fd);
    assert_still_serving(&shared);
  }
  uint64_t rss1 = daemon_peak_rss_kib(&shared);
  print_message("peak RSS %llu KiB before the bombs, %llu KiB after\n",
                (unsigned long long)rss0, (unsigned long long)rss1);
  assert_true(rss1 - rss0 < 64 * 1024);

  /* 64 MiB of zeros where a 1024 x 1024 image needs 1 MiB + 1024 filter
   * bytes: the decoder must stop at the image's size. */
  size_t zeros_len = (size_t)64 << 20;
  uint8_t *zeros = calloc(1, zeros_len);
  assert_non_null(zeros);
  struct libdeflate_compressor *c = libdeflate_alloc_compressor(1);
  assert_non_null(c);
  size_t cap = libdeflate_zlib_compress_bound(c, zeros_len);
  uint8_t *z = malloc(cap);
  assert_non_null(z);
  size_t zn = libdeflate_zlib_compress(c, zeros, zeros_len, z, cap);
  libdeflate_free_compressor(c);
  free(zeros);
  assert_true(zn > 0 && zn < 1000000);
  size_t size;
  uint8_t *png = make_png_raw(1024, 1024, z, zn, &size);
  free(z);
  struct seg_req q;
  seg_init(&q, 300, png, size, "a");
  assert_int_equal(send_request(sock, &q.r), 0);
  struct result x = {.id = 300};
  assert_int_equal(collect(sock, &x, 1), 0);
  print_message("decompression bomb: %s %s\n", x.done ? "Done" : "Error", x.message);
  assert_true(x.done || x.error == CODE(BAD_IMAGE) + 1);
  result_free(&x);
  free(png);
  uint64_t rss2 = daemon_peak_rss_kib(&shared);
  print_message("peak RSS %llu KiB after the decompression bomb\n", (unsigned long long)rss2);
  assert_true(rss2 - rss0 < 64 * 1024);
  close(sock);
  assert_still_serving(&shared);
}

/* ImageFd descriptors that are not readable regular files, and files that
 * are not images: each a clear Error from a check of the descriptor (fstat
 * and its open mode, on the loop thread) or of the bytes, never a read that
 * blocks (the FIFO and the pipe have no writer: with one worker, a blocked
 * read would stall the next Segment) and never a read past the size
 * limit. */
static void test_bad_fds(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  size_t size;
  const uint8_t *png = test_png(&size);
  const char *good = test_path("%s/good.png", dir);
  assert_int_equal(test_write_file(good, png, size), 0);
  const char *half = test_path("%s/half.png", dir);
  assert_int_equal(test_write_file(half, png, size / 2), 0);
  const char *empty = test_path("%s/empty.png", dir);
  assert_int_equal(test_write_file(empty, "", 0), 0);
  /* One byte over --max-frame-bytes (sparse: nothing to write). */
  const char *big = test_path("%s/big.png", dir);
  int bfd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(bfd >= 0);
  assert_int_equal(write(bfd, png, 64), 64);
  assert_int_equal(ftruncate(bfd, 4000001), 0);
  close(bfd);
  const char *fifo = test_path("%s/fifo", dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  int pipefd[2], sp[2];
  assert_int_equal(pipe(pipefd), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);

  struct {
    const char *what;
    int fd;
    int code;
    const char *needle;
  } cases[] = {
      {"FIFO", open(fifo, O_RDONLY | O_NONBLOCK), CODE(BAD_REQUEST), "not a regular file"},
      {"pipe", pipefd[0], CODE(BAD_REQUEST), "not a regular file"},
      {"directory", open(dir, O_RDONLY | O_DIRECTORY), CODE(BAD_REQUEST), "not a regular file"},
      {"socket", sp[0], CODE(BAD_REQUEST), "not a regular file"},
      {"/dev/zero", open("/dev/zero", O_RDONLY), CODE(BAD_REQUEST), "not a regular file"},
      {"write-only", open(good, O_WRONLY), CODE(BAD_REQUEST), "not open for reading"},
      {"O_PATH", open(good, O_PATH), CODE(BAD_REQUEST), "not open for reading"},
      {"empty", open(empty, O_RDONLY), CODE(BAD_IMAGE), "the file is empty"},
      {"truncated", open(half, O_RDONLY), CODE(BAD_IMAGE), "truncated"},
      {"too big", open(big, O_RDONLY), CODE(IMAGE_TOO_LARGE), "4000001 bytes"},
  };
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    if (cases[i].fd < 0) fail_msg("%s: cannot open: %s", cases[i].what, strerror(errno));
    struct seg_req q;
    seg_init(&q, i + 1, NULL, 0, "a");
    seg_set_fd(&q);
    print_message("%s\n", cases[i].what);
    expect_error(sock, &q, cases[i].fd, cases[i].code, cases[i].needle, NULL);
    close(cases[i].fd);
    assert_still_serving(&shared);
  }
  /* The connection still pairs descriptors right: a good file now. */
  int fd = open(good, O_RDONLY);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 99, NULL, 0, "a");
  seg_set_fd(&q);
  assert_int_equal(send_request_fd(sock, &q.r, fd), 0);
  close(fd);
  struct result x = {.id = 99};
  assert_int_equal(collect(sock, &x, 1), 0);
  assert_true(x.done);
  result_free(&x);
  close(sock);
  close(pipefd[1]);
  close(sp[1]);
}

/* Raw pixels with absurd dimensions: zero, 2^31, sides whose product
 * overflows 32 bits, within the side but over the pixels, bit depths and
 * byte counts that do not match. */
static void test_raw_dimensions(void **state) {
  (void)state;
  static uint8_t pixels[256];
  static const struct {
    uint32_t w, h, depth;
    size_t len;
    int code;
    const char *needle;
  } cases[] = {
      {0, 10, 8, 0, CODE(BAD_REQUEST), "width and height must be at least 1 (got 0x10)"},
      {10, 0, 8, 0, CODE(BAD_REQUEST), "(got 10x0)"},
      {0x80000000u, 1, 8, 16, CODE(IMAGE_TOO_LARGE),
       "2147483648x1 is over the limit of 16384 pixels a side"},
      {65536, 65536, 8, 16, CODE(IMAGE_TOO_LARGE), "65536x65536 is over the limit"},
      {0xffffffffu, 0xffffffffu, 16, 16, CODE(IMAGE_TOO_LARGE), "4294967295x4294967295"},
      {16384, 16384, 8, 16, CODE(IMAGE_TOO_LARGE),
       "268435456 pixels is over the limit of 4194304"},
      {10, 10, 12, 100, CODE(BAD_REQUEST), "image.raw.bit_depth: must be 8 or 16, not 12"},
      {10, 10, 0xffffffffu, 100, CODE(BAD_REQUEST), "not 4294967295"},
      {10, 10, 16, 199, CODE(BAD_REQUEST), "199 bytes, but 10x10 at 16 bits needs 200"},
      {10, 10, 8, 0, CODE(BAD_REQUEST), "0 bytes, but 10x10 at 8 bits needs 100"},
  };
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    struct seg_req q;
    seg_init(&q, i + 1, NULL, 0, "a");
    seg_set_raw(&q, cases[i].w, cases[i].h, cases[i].depth, pixels, cases[i].len);
    expect_error(sock, &q, -1, cases[i].code, cases[i].needle, NULL);
    assert_still_serving(&shared);
  }
  close(sock);
}

/* Enumerations on the wire hold any int32, and a Request may carry fields
 * this daemon does not know. Out-of-range enum values are refused naming
 * the field; unknown fields are ignored (protobuf's rule, so an older
 * daemon serves a newer client; a change of meaning bumps Request.version),
 * except that a request whose kind is unknown has no kind and is refused;
 * a field with an invalid wire type does not parse and closes the
 * connection. */
static void test_wire_enums_and_unknown_fields(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  struct seg_req q;
  seg_init(&q, 1, png, size, "a");
  q.r.has_version = 1;
  q.r.version = 7;
  expect_error(sock, &q, -1, CODE(BAD_REQUEST), "version: 7 is not supported", NULL);
  assert_still_serving(&shared);
  seg_init(&q, 2, png, size, "a");
  q.s.has_priority = 1;
  q.s.priority = 5;
  expect_error(sock, &q, -1, CODE(BAD_REQUEST), "priority: unknown value 5", NULL);
  assert_still_serving(&shared);
  seg_init(&q, 3, png, size, "a");
  q.s.has_priority = 1;
  q.s.priority = -1; /* a ten-byte varint */
  expect_error(sock, &q, -1, CODE(BAD_REQUEST), "priority: unknown value -1", NULL);
  assert_still_serving(&shared);
  seg_init(&q, 4, png, size, "a");
  q.s.has_output = 1;
  q.s.output = 9;
  expect_error(sock, &q, -1, CODE(BAD_REQUEST), "output: unknown value 9", NULL);
  assert_still_serving(&shared);
  seg_init(&q, 5, png, size, "a");
  osseg__wire__vote__init(&q.vote);
  q.vote.has_kind = 1;
  q.vote.kind = 7;
  q.s.vote = &q.vote;
  expect_error(sock, &q, -1, CODE(BAD_REQUEST), "vote.kind: unknown value 7", NULL);
  assert_still_serving(&shared);

  /* Unknown fields in the Request, the Segment and the RawImage: served
   * as if they were absent. */
  const char *models[] = {"a"};
  struct ref ref;
  reference(&ref, png, size, models, 1, 0, NULL);
  struct osseg_image img;
  make_image(&img, 96, 80, 3);
  /* protobuf-c keeps (and packs) an unknown field as the bytes after its
   * tag: a length-prefixed one starts with its length. */
  uint8_t blob[16] = {15};
  memcpy(blob + 1, "from the future", 15);
  ProtobufCMessageUnknownField uf[3] = {
      {.tag = 99, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = sizeof blob,
       .data = blob},
      {.tag = 50, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = sizeof blob,
       .data = blob},
      {.tag = 9, .wire_type = PROTOBUF_C_WIRE_TYPE_32BIT, .len = 4, .data = blob + 1},
  };
  seg_init(&q, 6, NULL, 0, "a");
  seg_set_raw(&q, 96, 80, 8, img.data, (size_t)96 * 80);
  q.r.base.n_unknown_fields = 1;
  q.r.base.unknown_fields = &uf[0];
  q.s.base.n_unknown_fields = 1;
  q.s.base.unknown_fields = &uf[1];
  q.raw.base.n_unknown_fields = 1;
  q.raw.base.unknown_fields = &uf[2];
  assert_int_equal(send_request(sock, &q.r), 0);
  struct result x = {.id = 6};
  assert_int_equal(collect(sock, &x, 1), 0);
  compare(&x, &ref);
  result_free(&x);
  osseg_image_free(&img);
  ref_free(&ref);
  /* A Health with an unknown varint field. */
  Osseg__Wire__Request hr;
  simple_req(&hr, 7, OSSEG__WIRE__REQUEST__KIND_HEALTH);
  uint8_t five = 5;
  ProtobufCMessageUnknownField uv = {.tag = 1000, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT,
                                     .len = 1, .data = &five};
  hr.base.n_unknown_fields = 1;
  hr.base.unknown_fields = &uv;
  assert_int_equal(send_request(sock, &hr), 0);
  x.id = 7;
  assert_int_equal(collect(sock, &x, 1), 0);
  assert_int_equal(x.other, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
  result_free(&x);
  /* A request kind from the future (field 20, an empty message): no kind
   * this daemon knows. */
  Osseg__Wire__Request fr = OSSEG__WIRE__REQUEST__INIT;
  fr.id = 8;
  uint8_t empty_message = 0; /* length 0 */
  ProtobufCMessageUnknownField uk = {.tag = 20, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                     .len = 1, .data = &empty_message};
  fr.base.n_unknown_fields = 1;
  fr.base.unknown_fields = &uk;
  assert_int_equal(send_request(sock, &fr), 0);
  x.id = 8;
  assert_int_equal(collect(sock, &x, 1), 0);
  assert_int_equal(x.error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x.message, "kind: the request has none of"));
  result_free(&x);
  close(sock);

  /* Wire type 7 does not exist: the frame does not parse. id = 1, then
   * field 3 with wire type 7. */
  sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  static const uint8_t bad_wire[] = {0x08, 0x01, (3 << 3) | 7, 0x00};
  uint8_t *buf = NULL;
  size_t len = 0;
  frame_append_raw(&buf, &len, bad_wire, sizeof bad_wire);
  assert_int_equal(write_all(sock, buf, len), 0);
  free(buf);
  assert_true(closed_by_peer(sock));
  close(sock);
  assert_still_serving(&shared);
}

/* Health's view of the daemon settles: nothing in flight and only Health's
 * own connection open, within 10 s. */
static void assert_settles(void) {
  double t0 = now_s();
  for (;;) {
    Osseg__Wire__Response *h = health(&shared);
    unsigned in_flight = h->health->in_flight, conns = h->health->connections;
    osseg__wire__response__free_unpacked(h, NULL);
    if (in_flight == 0 && conns == 1) return;
    if (now_s() - t0 > 10)
      fail_msg("still %u request(s) in flight and %u connections", in_flight, conns);
    usleep(10000);
  }
}

/* Connections that end in the middle of a frame: the daemon drops them
 * (and the partial frame's buffer, which LeakSanitizer checks at exit),
 * cancels what they had in flight and keeps serving. */
static void test_truncated_frames(void **state) {
  (void)state;
  assert_settles();
  /* Half a header. */
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  static const uint8_t half_header[2] = {0xe8, 0x03};
  assert_int_equal(write_all(sock, half_header, 2), 0);
  close(sock);
  assert_settles();
  /* A header declaring 1000 bytes, then 10 of them. */
  static const uint8_t partial[14] = {0xe8, 0x03, 0x00, 0x00, 0x08, 0x01};
  sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  assert_int_equal(write_all(sock, partial, sizeof partial), 0);
  close(sock);
  assert_settles();
  /* The same, then a half-close: the daemon closes its side too. */
  sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  assert_int_equal(write_all(sock, partial, sizeof partial), 0);
  assert_int_equal(shutdown(sock, SHUT_WR), 0);
  assert_true(closed_by_peer(sock));
  close(sock);
  assert_settles();
  /* A slow Segment in flight, then half of another frame, then gone. */
  size_t size;
  const uint8_t *png = busy_png(&size);
  uint8_t *buf = NULL;
  size_t len = 0;
  struct seg_req q;
  seg_init(&q, 1, png, size, "a");
  frame_append(&buf, &len, &q.r);
  size_t first = len;
  seg_init(&q, 2, png, size, "a");
  frame_append(&buf, &len, &q.r);
  sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  assert_int_equal(write_all(sock, buf, first + (len - first) / 2), 0);
  free(buf);
  usleep(20000);
  close(sock);
  assert_settles();
  assert_still_serving(&shared);
}

/* Ground truth for a class the models do not have, with runs past the
 * image, or RLE that does not parse: BAD_REQUEST naming the class. For PNG
 * bytes and raw pixels all of it is checked on the loop thread (the PNG's
 * size from its header), like the image's own limits, so these requests
 * never reach the queue: with one worker busy and a second slow request
 * queued behind it, every one of these Errors arrives before that second
 * request is done. For a descriptor the size is known only once the worker
 * reads the file: still BAD_REQUEST naming the class. */
static void test_bad_ground_truth(void **state) {
  (void)state;
  size_t size, bsize;
  const uint8_t *png = test_png(&size);
  const uint8_t *big = busy_png(&bsize);
  static uint8_t pixels[96 * 80];
  static const uint8_t empty_zlib[] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
  size_t bomb_size;
  uint8_t *bomb = make_png_raw(100000, 100000, empty_zlib, sizeof empty_zlib, &bomb_size);
  static const struct {
    int raw, bomb;
    const char *cls, *rle, *cls2, *rle2;
    int code;
    const char *n1, *n2;
  } cases[] = {
      {0, 0, "Kneecap", "1 2", NULL, NULL, CODE(BAD_REQUEST), "no class 'Kneecap'", NULL},
      {0, 0, "Radius", "7600 100", NULL, NULL, CODE(BAD_REQUEST), "'Radius'", "7680"},
      {1, 0, "Radius", "7600 100", NULL, NULL, CODE(BAD_REQUEST), "'Radius'", "7680"},
      {0, 0, "Ulna", "1 x", NULL, NULL, CODE(BAD_REQUEST), "'Ulna'", "offset 2"},
      {0, 0, "Ulna", "5", NULL, NULL, CODE(BAD_REQUEST), "'Ulna'", NULL},
      {1, 0, "Ulna", "0 3", NULL, NULL, CODE(BAD_REQUEST), "'Ulna'", NULL},
      {0, 0, "Ulna", "99999999999 1", NULL, NULL, CODE(BAD_REQUEST), "'Ulna'", NULL},
      {0, 0, "Ulna", "1 2", "Ulna", "5 2", CODE(BAD_REQUEST), "class 'Ulna' given twice", NULL},
      {0, 0, "Ulna", "1 2", "Radius", "1 7681", CODE(BAD_REQUEST), "'Radius'", NULL},
      /* A bomb is the image's fault even with good ground truth. */
      {0, 1, "Ulna", "1 2", NULL, NULL, CODE(IMAGE_TOO_LARGE), "100000x100000", NULL},
  };
  enum { N = sizeof cases / sizeof *cases };
  uint8_t *buf = NULL;
  size_t len = 0;
  struct result x[N + 2];
  memset(x, 0, sizeof x);
  for (int i = 0; i < 2; i++) { /* one runs, one waits */
    struct seg_req q;
    seg_init(&q, 1000 + (uint64_t)i, big, bsize, "a");
    frame_append(&buf, &len, &q.r);
    x[N + i].id = 1000 + (uint64_t)i;
  }
  for (size_t i = 0; i < N; i++) {
    struct seg_req q;
    seg_init(&q, i + 1, cases[i].bomb ? bomb : png, cases[i].bomb ? bomb_size : size, "a");
    if (cases[i].raw) seg_set_raw(&q, 96, 80, 8, pixels, sizeof pixels);
    seg_add_gt(&q, cases[i].cls, cases[i].rle);
    if (cases[i].cls2) seg_add_gt(&q, cases[i].cls2, cases[i].rle2);
    frame_append(&buf, &len, &q.r);
    x[i].id = i + 1;
  }
  int sock = try_connect(shared.sock);
  assert_true(sock >= 0);
  assert_int_equal(write_all(sock, buf, len), 0);
  free(buf);
  free(bomb);
  assert_int_equal(collect(sock, x, N + 2), 0);
  assert_true(x[N].done && x[N + 1].done);
  for (size_t i = 0; i < N; i++) {
    if (x[i].error != cases[i].code + 1)
      fail_msg("case %zu: expected code %d, got %d (%s)", i, cases[i].code, x[i].error - 1,
               x[i].message);
    if (!strstr(x[i].message, cases[i].n1) || (cases[i].n2 && !strstr(x[i].message, cases[i].n2)))
      fail_msg("case %zu: '%s' does not name '%s' and '%s'", i, x[i].message, cases[i].n1,
               cases[i].n2 ? cases[i].n2 : "");
    if (x[i].order > x[N + 1].order)
      fail_msg("case %zu was answered after the queued request: it went through the queue", i);
  }
  for (size_t i = 0; i < N + 2; i++) result_free(&x[i]);

  /* A descriptor: the size comes from the file, in the worker. */
  const char *path = test_path("%s/hand.png", test_tmpdir());
  assert_int_equal(test_write_file(path, png, size), 0);
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 50, NULL, 0, "a");
  seg_set_fd(&q);
  seg_add_gt(&q, "Radius", "7600 100");
  expect_error(sock, &q, fd, CODE(BAD_REQUEST), "ground_truth", "Radius", "7680", NULL);
  close(fd);
  close(sock);
  assert_still_serving(&shared);
}

static void test_bad_inputs(void **state) {
  (void)state;
  size_t size;
  const uint8_t *png = test_png(&size);
  /* A declared length over the limit: closed without reading it. */
  int fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  uint8_t big[4] = {0x00, 0x00, 0x00, 0x10}; /* 256 MiB */
  assert_int_equal(write_all(fd, big, 4), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  Osseg__Wire__Response *h = health(&shared);
  assert_int_equal(h->health->max_frame_bytes, 4000000);
  osseg__wire__response__free_unpacked(h, NULL);

  /* Garbage that does not unpack as a Request. */
  fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  uint8_t junk[4 + 16] = {16, 0, 0, 0};
  memset(junk + 4, 0xff, 16);
  assert_int_equal(write_all(fd, junk, sizeof junk), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  /* A zero-length frame (no id) does not either. */
  fd = try_connect(shared.sock);
  uint8_t zero[4] = {0};
  assert_int_equal(write_all(fd, zero, 4), 0);
  assert_true(closed_by_peer(fd));
  close(fd);
  h = health(&shared);
  osseg__wire__response__free_unpacked(h, NULL);

  /* Invalid requests are answered and the connection stays usable. */
  fd = try_connect(shared.sock);
  assert_true(fd >= 0);
  struct seg_req q;
  seg_init(&q, 1, png, size, "nosuchmodel");
  assert_int_equal(send_request(fd, &q.r), 0);
  /* Signature and IHDR intact, the image data garbage. */
  uint8_t corrupt[96];
  memcpy(corrupt, png, 33);
  memset(corrupt + 33, 0x5a, sizeof corrupt - 33);
  seg_init(&q, 2, corrupt, sizeof corrupt, "a");
  assert_int_equal(send_request(fd, &q.r), 0);
  uint8_t pixels[100] = {0};
  seg_init(&q, 3, NULL, 0, "a");
  osseg__wire__raw_image__init(&q.raw);
  q.raw.width = 10;
  q.raw.height = 11; /* 110 pixels, 100 bytes sent */
  q.raw.bit_depth = 8;
  q.raw.pixels.data = pixels;
  q.raw.pixels.len = sizeof pixels;
  q.s.image_case = OSSEG__WIRE__SEGMENT__IMAGE_RAW;
  q.s.raw = &q.raw;
  assert_int_equal(send_request(fd, &q.r), 0);
  seg_init(&q, 4, png, size, "a");
  q.s.has_threshold = 1;
  q.s.threshold = 2.0f;
  assert_int_equal(send_request(fd, &q.r), 0);
  Osseg__Wire__Request hr;
  simple_req(&hr, 5, OSSEG__WIRE__REQUEST__KIND_HEALTH);
  assert_int_equal(send_request(fd, &hr), 0);
  struct result x[5];
  memset(x, 0, sizeof x);
  for (int i = 0; i < 5; i++) x[i].id = (uint64_t)i + 1;
  assert_int_equal(collect(fd, x, 5), 0);
  assert_int_equal(x[0].error, CODE(UNKNOWN_MODEL) + 1);
  assert_non_null(strstr(x[0].message, "models[0]: no model named 'nosuchmodel'"));
  assert_int_equal(x[1].error, CODE(BAD_IMAGE) + 1);
  assert_int_equal(x[2].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[2].message, "image.raw.pixels"));
  assert_int_equal(x[3].error, CODE(BAD_REQUEST) + 1);
  assert_non_null(strstr(x[3].message, "threshold"));
  assert_int_equal(x[4].other, OSSEG__WIRE__RESPONSE__KIND_HEALTH);
  for (int i = 0; i < 5; i++) result_free(&x[i]);
  close(fd);
  assert_still_serving(&shared);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_png_bomb),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_bad_fds),
      cmocka_unit_test(test_raw_dimensions),
      cmocka_unit_test(test_wire_enums_and_unknown_fields),
      cmocka_unit_test(test_truncated_frames),
      cmocka_unit_test(test_bad_ground_truth),
  };
  return harness_main_shared(tests, &shared, "--max-frame-bytes", "4000000",
                             "--max-image-pixels", "4194304", "--workers", "1", NULL);
}
