/* libFuzzer target: the daemon's request path on arbitrary bytes, as
 * session.c takes it, without sockets or threads: the bytes are a client's
 * stream, cut into frames by the frame reader (fed in pieces whose sizes
 * come from the input, so headers and payloads split anywhere), each frame
 * unpacked as a Request (a frame that does not unpack ends the stream, as it
 * closes the connection), the envelope validated, a Segment validated
 * against two tiny models and the limits (which creates its pipeline), and
 * every refusal packed into an Error response. Invariants the daemon relies
 * on abort: an Error code in the enum with a non-empty message, a validated
 * Segment with a pipeline of the requested models.
 *
 * The models are loaded once, from OSSEG_FUZZ_MODEL_DIR (compiled in).
 * fuzz_request_run is also called by the corpus replay test, which checks
 * what it counted against the name of each corpus file. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"
#include "fuzz_request.h"

#define CODE(x) OSSEG__WIRE__ERROR__CODE__##x

#ifndef OSSEG_FUZZ_MODEL_DIR
#error "OSSEG_FUZZ_MODEL_DIR must name tests/data/models"
#endif

static struct osseg_registry *reg;

static struct osseg_registry *registry(void) {
  if (reg) return reg;
  if (osseg_registry_create(&reg, NULL) != 0) abort();
  static const char *const files[] = {"unetpp_r18_tiny_op13", "unet_effb0_tiny_op13"};
  static const char *const names[] = {"a", "b"};
  for (int i = 0; i < 2; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.onnx", OSSEG_FUZZ_MODEL_DIR, files[i]);
    struct osseg_model_spec spec = {.name = names[i], .path = path};
    if (osseg_registry_load(reg, &spec, NULL, NULL) != 0) abort();
  }
  return reg;
}

/* What the daemon would send back: packed, then dropped. */
static void refuse(struct fuzz_request_result *res, uint64_t id, int code, const char *msg) {
  res->errors++;
  if (code < CODE(INTERNAL) || code > CODE(CANCELLED) || !msg[0]) abort();
  Osseg__Wire__Response r = OSSEG__WIRE__RESPONSE__INIT;
  Osseg__Wire__Error e = OSSEG__WIRE__ERROR__INIT;
  e.code = code;
  e.message = (char *)msg;
  r.id = id;
  r.kind_case = OSSEG__WIRE__RESPONSE__KIND_ERROR;
  r.error = &e;
  size_t len = 0;
  uint8_t *f = ossegd__pack_response(&r, &len);
  if (f && len < 4) abort();
  free(f);
}

/* One frame; 0 to go on, -1 when the daemon would close the connection. */
static int handle_frame(struct fuzz_request_result *res, const uint8_t *frame, size_t len) {
  Osseg__Wire__Request *msg = osseg__wire__request__unpack(NULL, len, frame);
  if (!msg) return -1;
  res->requests++;
  char text[512];
  memset(text, 0, sizeof text);
  int code = -1;
  if (ossegd__validate_request(msg, &code, text, sizeof text) != 0) {
    refuse(res, msg->id, code, text);
  } else if (msg->kind_case == OSSEG__WIRE__REQUEST__KIND_SEGMENT) {
    static const struct ossegd__limits lim = {.max_image_pixels = 1u << 20,
                                              .max_image_side = 4096};
    struct ossegd__segment seg;
    if (ossegd__validate_segment(msg->segment, registry(), &lim, &seg, &code, text,
                                 sizeof text) != 0) {
      refuse(res, msg->id, code, text);
    } else {
      if (!seg.pipeline || osseg_pipeline_model_count(seg.pipeline) != msg->segment->n_models)
        abort();
      ossegd__segment_release(&seg);
      res->segments++;
    }
  }
  osseg__wire__request__free_unpacked(msg, NULL);
  return 0;
}

void fuzz_request_run(const uint8_t *data, size_t size, struct fuzz_request_result *res) {
  memset(res, 0, sizeof *res);
  if (size == 0) return;
  /* The first byte picks the piece size (1..256 bytes per read); the rest
   * is the stream. */
  size_t piece = (size_t)data[0] + 1;
  data++;
  size--;
  struct ossegd__frame_reader rd;
  ossegd__frame_reader_init(&rd, 1u << 20);
  size_t off = 0;
  int open = 1;
  while (open && off < size) {
    size_t n = size - off < piece ? size - off : piece;
    const uint8_t *p = data + off;
    off += n;
    while (open && n > 0) {
      size_t used = 0, len = 0;
      uint8_t *frame = NULL;
      int rc = ossegd__frame_reader_feed(&rd, p, n, &used, &frame, &len);
      if (used > n || (rc != 1 && frame)) abort();
      p += used;
      n -= used;
      if (rc < 0) open = 0; /* over the limit: the connection closes */
      if (rc == 1) {
        if (handle_frame(res, frame, len) != 0) open = 0;
        free(frame);
      }
    }
  }
  res->closed = !open;
  res->partial = open && (rd.nhdr > 0 || rd.buf != NULL);
  ossegd__frame_reader_reset(&rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fuzz_request_result res;
  fuzz_request_run(data, size, &res);
  return 0;
}
