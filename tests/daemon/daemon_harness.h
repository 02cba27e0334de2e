/* The harness of the ossegd integration tests (test_ossegd_*.c): start
 * bin/ossegd on a temporary socket with the tiny fixture models, speak the
 * wire protocol to it over raw sockets (the client library is not used, so
 * a test can send anything, malformed frames included), collect what comes
 * back, and compare masks with what the pipeline library computes in
 * process.
 *
 * Every daemon is stopped with SIGTERM, then SIGKILL after a timeout, so no
 * test hangs; daemons a failed test left behind are stopped by
 * harness_teardown. A daemon must exit 0: harness_main fails the program
 * when any daemon the harness reaped ended otherwise, even one stopped by
 * a group teardown (cmocka 1.1 reports a failed group teardown but still
 * returns 0). Under the sanitizer build, ossegd runs with LeakSanitizer on
 * and exits with HARNESS_SANITIZER_EXIT when it finds a leak, so a leak
 * fails the test that stops it (and the program).
 *
 * Everything here runs on the test's one thread; the helpers use cmocka's
 * asserts. */
#ifndef DAEMON_HARNESS_H
#define DAEMON_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <setjmp.h>

#include <cmocka.h>

#include "osseg.pb-c.h"
#include "osseg_pipeline.h"

#define CODE(x) OSSEG__WIRE__ERROR__CODE__##x

/* What a sanitizer-built ossegd exits with when it finds a leak or another
 * error (ASAN_OPTIONS exitcode, set by harness_setup). */
#define HARNESS_SANITIZER_EXIT 23

/* ------------------------------------------------------------ daemon --- */

struct daemon {
  pid_t pid;
  char sock[256];
  char log[256]; /* its stderr and stdout */
};

const char *model_file(const char *name); /* tests/data/models/NAME.onnx */
const char *demo_model(void);              /* data/models/unetpp_demo.onnx */
double now_s(void);                        /* CLOCK_MONOTONIC seconds */
int try_connect(const char *path);         /* a connected socket, or -1 */

/* Starts ossegd with the two standard models ("a" = UNet++ R18, "b" = UNet
 * EffB0, both 64x64, one oneDNN thread) plus extra arguments (NULL
 * terminated) in dir, and waits until it accepts a connection. Returns 0,
 * or the exit status if it ended first. */
int daemon_start(struct daemon *d, const char *dir, ...);
/* Starts argv (argv[0] a path: ossegd, or a wrapper such as
 * systemd-socket-activate that execs it) with env's "NAME=VALUE" strings
 * added to the environment ("@pid" as a VALUE: the child's own pid, e.g.
 * WATCHDOG_PID), output to dir/ossegd.log, d->sock = sock. With wait, it
 * waits until the socket accepts a connection like daemon_start (returns 0,
 * or the exit status if it ended first); else it returns 0 at once. */
int daemon_start_argv(struct daemon *d, const char *dir, const char *sock,
                      const char *const *env, const char *const *argv, int wait);
/* Runs ossegd with the two standard models and the extra arguments,
 * expecting it to exit; returns its status, *err its stderr. */
int daemon_fail(const char *sock, char **err, ...);
/* Runs bin/ossegd with just the arguments (NULL-terminated, at most 30);
 * returns its status, *out its stdout and *err its stderr (either may be
 * NULL). */
int ossegd_run(char **out, char **err, ...);
/* Appends ap's arguments (up to a NULL) to argv from argv[n], at most
 * max - 1 entries in all, then a NULL; returns the count. */
int argv_append_va(const char **argv, int n, int max, va_list ap);
/* SIGTERM, then SIGKILL after timeout_s; returns the exit status (128+sig
 * if killed). A status other than 0 is counted (harness_main fails) and
 * the daemon's log is printed. */
int daemon_stop(struct daemon *d, double timeout_s);
/* Waits for a daemon the test signalled itself; returns its exit status
 * (128+sig if killed by a signal), counted like daemon_stop's. */
int daemon_wait(struct daemon *d);
/* The daemon's peak resident set (VmHWM of /proc/PID/status) in KiB. */
uint64_t daemon_peak_rss_kib(const struct daemon *d);

/* ---------------------------------------------------------- protocol --- */

int write_all(int fd, const void *p, size_t n);
int send_request(int fd, const Osseg__Wire__Request *r);
/* Appends a framed request to a growing buffer (to send many at once). */
void frame_append(uint8_t **buf, size_t *len, const Osseg__Wire__Request *r);
/* Appends any payload as one frame (bytes protobuf-c would not write). */
void frame_append_raw(uint8_t **buf, size_t *len, const void *payload, size_t n);
/* Sends one frame with a descriptor attached to its first byte (none when
 * fd < 0). */
int send_request_fd(int sock, const Osseg__Wire__Request *r, int fd);
/* Reads exactly n bytes; 0, or -1 on EOF/error/timeout. */
int read_all(int fd, void *p, size_t n, int timeout_ms);
/* The next response, or NULL at EOF (or after 30 s). */
Osseg__Wire__Response *recv_response(int fd);
/* The same without cmocka asserts (usable in a forked child): NULL also
 * when the frame is over 64 MiB or does not parse. */
Osseg__Wire__Response *recv_response_nofail(int fd);
/* The response that ends request id (Done or Error), skipping its masks;
 * the caller frees it. */
Osseg__Wire__Response *recv_final(int fd, uint64_t id);
/* Whether the daemon closed the connection (EOF within 10 s). */
int closed_by_peer(int fd);

/* What came back for one request. */
struct result {
  uint64_t id;
  int ended;
  int nmasks;
  char *rle[OSSEG_MAX_CLASSES];
  uint64_t area[OSSEG_MAX_CLASSES];
  uint8_t *png[OSSEG_MAX_CLASSES]; /* OUTPUT_PNG_MASK */
  size_t png_len[OSSEG_MAX_CLASSES];
  int in_order;          /* masks came in class order, before Dice and Done */
  int done;
  Osseg__Wire__Done done_msg;
  int error;             /* Error.Code + 1, 0 = none */
  char message[512];
  int has_dice;
  size_t dice_n;
  uint32_t dice_cls[OSSEG_MAX_CLASSES];
  double dice[OSSEG_MAX_CLASSES], dice_mean;
  int dice_before_done;
  int other;             /* Health, ModelList, Stats */
  Osseg__Wire__Response *kept; /* the terminal non-Segment response */
  unsigned order;        /* it was the order-th of its collect() to end */
};

void result_free(struct result *r);
/* Reads responses until every one of the n results (ids set) has ended.
 * Returns 0, or -1 if the connection ended first. */
int collect(int fd, struct result *res, size_t n);

/* ------------------------------------------------------------ images --- */

/* A synthetic radiograph-like image: a gradient with bright blobs. */
void make_image(struct osseg_image *img, uint32_t w, uint32_t h, uint32_t seed);
uint8_t *make_png(uint32_t w, uint32_t h, uint32_t seed, size_t *size); /* free() */
/* The standard small test image (96x80) and a 1536x1536 one that keeps a
 * worker busy for a while; owned by the harness. */
const uint8_t *test_png(size_t *size);
const uint8_t *busy_png(size_t *size);
/* A PNG built chunk by chunk, to lie: a signature, an IHDR declaring
 * width x height 8-bit gray (correct CRC), one IDAT holding idat[0, n)
 * (which need not match the header) and IEND. A "bomb" when the
 * dimensions are huge and the data tiny. free() it. */
uint8_t *make_png_raw(uint32_t width, uint32_t height, const void *idat, size_t n,
                      size_t *size);

/* --------------------------------------------------------- reference --- */

/* Models "a" and "b" loaded in process (harness_setup). */
extern struct osseg_registry *ref_reg;

struct ref {
  char *rle[OSSEG_MAX_CLASSES];
  size_t n;
  struct osseg_dice_report dice;
  int has_dice;
};

/* The pipeline library's answer for a PNG, as `osseg predict` computes it. */
void reference(struct ref *out, const uint8_t *png, size_t size, const char *const *models,
               size_t nmodels, int soft, const struct osseg_ground_truth *gt);
void ref_free(struct ref *r);
/* x ended with Done, masks in order, equal to ref's. */
void compare(const struct result *x, const struct ref *ref);

/* ---------------------------------------------------------- requests --- */

/* A Segment request; the arrays live in the struct. */
struct seg_req {
  Osseg__Wire__Request r;
  Osseg__Wire__Segment s;
  Osseg__Wire__Vote vote;
  Osseg__Wire__RawImage raw;
  Osseg__Wire__ImageFd fd;
  Osseg__Wire__GroundTruth gt;
  Osseg__Wire__ClassRles rles;
  Osseg__Wire__ClassRle rle[OSSEG_MAX_CLASSES], *rlep[OSSEG_MAX_CLASSES];
  char *models[8];
};

void seg_init(struct seg_req *q, uint64_t id, const uint8_t *png, size_t size,
              const char *model);
/* Makes q's image raw pixels (not copied). */
void seg_set_raw(struct seg_req *q, uint32_t w, uint32_t h, uint32_t bit_depth,
                 const uint8_t *pixels, size_t len);
/* Makes q's image an ImageFd (the descriptor goes with send_request_fd). */
void seg_set_fd(struct seg_req *q);
/* Adds ground truth: RLE text for a class name (both not copied). */
void seg_add_gt(struct seg_req *q, const char *cls, const char *rle);
/* A Health, ListModels or Stats request. */
void simple_req(Osseg__Wire__Request *r, uint64_t id, int kind);
/* Sends a simple_req of kind (id 1) on a fresh connection and returns the
 * response, which must be of resp_kind (caller frees). */
Osseg__Wire__Response *ask_fresh(const struct daemon *d, int kind, int resp_kind);
/* Asks Health on a fresh connection; returns the response (caller frees). */
Osseg__Wire__Response *health(const struct daemon *d);
/* Asks Stats on a fresh connection; returns the response (caller frees). */
Osseg__Wire__Response *stats(const struct daemon *d);
/* Sends one Segment and returns its Error (Error.Code + 1 in *code, the
 * message in msg), or 0 in *code when it ended with Done. */
void segment_outcome(int fd, struct seg_req *q, int *code, char *msg, size_t msg_size);
/* The daemon still answers Health and serves the standard image with
 * model "a", equal to the pipeline's answer, on a fresh connection. */
void assert_still_serving(const struct daemon *d);

/* ------------------------------------------------------------- group --- */

/* Sets the sanitizer options of the daemons to come and loads the
 * reference models; the group setup of every integration test calls it
 * first. 0 or -1. */
int harness_setup(void);
/* Stops daemons left running by failed tests (a per-test teardown). */
void harness_stop_left(void);
/* Stops daemons left running by failed tests and frees the harness. */
void harness_teardown(void);
/* cmocka group setup and teardown for a program whose tests start their
 * own daemons: harness_setup, harness_teardown. */
int harness_group_setup(void **state);
int harness_group_teardown(void **state);
/* For a group sharing one daemon d, started with the extra arguments
 * (NULL-terminated, at most 31; string literals: they are not copied):
 *   return harness_main_shared(tests, &shared, "--workers", "1", NULL);
 * The group setup calls harness_setup, then daemon_start of d in a
 * temporary folder; the teardown stops d (failing unless it exits 0) and
 * calls harness_teardown. */
#define harness_main_shared(tests, d, ...) \
  (harness_share(d, __VA_ARGS__), \
   harness_main(tests, harness_shared_group_setup, harness_shared_group_teardown))
void harness_share(struct daemon *d, ...);
int harness_shared_group_setup(void **state);
int harness_shared_group_teardown(void **state);
/* Runs the group and returns the program's exit status: cmocka's failure
 * count, plus one if any daemon reaped by the harness exited non-zero. */
#define harness_main(tests, setup, teardown) \
  harness_exit(cmocka_run_group_tests(tests, setup, teardown))
int harness_exit(int cmocka_failures);

#endif
