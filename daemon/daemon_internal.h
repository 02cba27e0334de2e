/* Internals of ossegd shared between its files and with tests/daemon/. */
#ifndef OSSEGD_INTERNAL_H
#define OSSEGD_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "osseg.pb-c.h"
#include "ossegd.h"

/* ------------------------------------------------------------- frame.c --- */

/* Incremental reader of "u32 little-endian length + payload" frames. The
 * payload buffer is allocated only once the whole header has arrived and
 * its length was checked against max. */
struct ossegd__frame_reader {
  uint64_t max;      /* largest payload accepted */
  uint8_t hdr[4];
  unsigned nhdr;     /* header bytes seen */
  uint8_t *buf;      /* payload being filled (NULL while in the header) */
  size_t len, have;
};

void ossegd__frame_reader_init(struct ossegd__frame_reader *r, uint64_t max);
/* Frees a partial frame and starts over. */
void ossegd__frame_reader_reset(struct ossegd__frame_reader *r);
/* Consumes bytes of data[0, size) up to the end of one frame; *used says
 * how many. Returns 1 when a frame is complete: *frame (malloc'ed, the
 * caller frees it; NULL for a zero-length frame) and *frame_len. Returns 0
 * when the input ran out first, OSSEG_ELIMIT when the declared length is
 * over max (nothing allocated; the stream cannot be resynchronised) and
 * OSSEG_ENOMEM. */
int ossegd__frame_reader_feed(struct ossegd__frame_reader *r, const uint8_t *data, size_t size,
                              size_t *used, uint8_t **frame, size_t *frame_len);

/* Packs a response into a new frame (length prefix included); NULL when out
 * of memory. Free with free(). */
uint8_t *ossegd__pack_response(const Osseg__Wire__Response *r, size_t *len);

/* ---------------------------------------------------------- validate.c --- */

struct ossegd__limits {
  uint64_t max_image_pixels;
  uint32_t max_image_side;
};

enum ossegd__image_kind { OSSEGD_IMAGE_PNG, OSSEGD_IMAGE_RAW, OSSEGD_IMAGE_FD };

/* A validated Segment: the pipeline made for it, and pointers into the
 * request message (which must outlive it). */
struct ossegd__segment {
  struct osseg_pipeline *pipeline;
  enum ossegd__image_kind image;
  const char *image_name;
  /* The image's size when the loop thread knows it (raw pixels, a PNG's
   * header); 0 for ImageFd, whose file only a worker reads. */
  uint32_t width, height;
  int output;   /* OSSEG__WIRE__OUTPUT__* */
  int priority; /* OSSEG__WIRE__PRIORITY__* */
  uint32_t deadline_ms;
  /* Ground truth per pipeline class index (NULL = not given), RLE text,
   * already parsed once by validation (syntax, and runs inside the image
   * when its size is known). */
  const char *gt_rle[OSSEG_MAX_CLASSES];
  /* Or the polygons of ground_truth.label_json, parsed against the
   * pipeline's classes (owned; drawn by the worker at the image's size);
   * text longer than OSSEGD_LABEL_JSON_LOOP_BYTES waits in gt_label_json
   * for the worker to parse it. */
  struct osseg_labels *gt_labels;
  const char *gt_label_json;
  int has_gt;
};

/* Label JSON up to this size is parsed by validation, on the loop thread
 * (a few milliseconds at most), so a bad label is refused before the
 * request is queued; longer text is parsed by the worker, because one
 * request must not stall every connection (4 MiB take ~0.3 s). */
#define OSSEGD_LABEL_JSON_LOOP_BYTES ((size_t)64 << 10)

/* Parses label JSON against the pipeline's classes with the daemon's
 * limits. Returns 0, or -1 with *code (BAD_REQUEST, INTERNAL when out of
 * memory) and msg starting "ground_truth.label_json". Any thread. */
int ossegd__parse_label_json(const char *json, const struct osseg_pipeline *p,
                             struct osseg_labels **out, int *code, char *msg, size_t msg_size);

/* Validates a Segment request against the registry's models and the
 * limits, and creates its pipeline. Everything that can be checked without
 * decoding the image is: a PNG's header (size limits), RLE ground truth
 * (class names, syntax, runs inside the image). Returns 0, or -1 with
 * *code an Error code (OSSEG__WIRE__ERROR__CODE__*) and msg naming the
 * field. */
int ossegd__validate_segment(const Osseg__Wire__Segment *s, struct osseg_registry *reg,
                             const struct ossegd__limits *lim, struct ossegd__segment *out,
                             int *code, char *msg, size_t msg_size);
void ossegd__segment_release(struct ossegd__segment *s);

/* Validates the envelope (version, a kind). Same return rule. */
int ossegd__validate_request(const Osseg__Wire__Request *r, int *code, char *msg,
                             size_t msg_size);

/* ------------------------------------------------------------ access.c --- */

#include <sys/types.h>

/* A user or group by name or decimal id: 0, OSSEG_ENOTFOUND (no such
 * name), OSSEG_EINVAL (empty, or an id out of range), OSSEG_ENOMEM. Names
 * go through NSS (getpwnam_r/getgrnam_r), which may block on a directory
 * service: called at start-up and when a config is read, never per
 * connection. */
int ossegd__parse_user(const char *s, uid_t *out);
int ossegd__parse_group(const char *s, gid_t *out);

/* The allow-list with names resolved (ossegd_options.allow_*). */
struct ossegd__acl {
  int active;   /* a list was given */
  uid_t self;   /* the daemon's effective uid: always allowed, as is root */
  uid_t uids[OSSEGD_MAX_ACCESS];
  size_t nuids;
  gid_t gids[OSSEGD_MAX_ACCESS];
  size_t ngids;
};
int ossegd__acl_init(struct ossegd__acl *a, const struct ossegd_options *o,
                     struct osseg_diag *diag);

/* A connected peer as SO_PEERCRED tells it (at the time of connect()). */
struct ossegd__peer {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};
int ossegd__peer_get(int fd, struct ossegd__peer *out); /* 0 or OSSEG_EIO */
/* 1 when the peer on fd may use the daemon: no list, root, the daemon's
 * uid, a listed uid, or a listed group among its gid and supplementary
 * groups (read from the socket only when a group list exists). */
int ossegd__access_check(const struct ossegd__acl *a, int fd, const struct ossegd__peer *p);

/* ------------------------------------------------------------- audit.c --- */

/* The audit log (loop thread only). */
struct ossegd__audit {
  int fd;          /* -1: no audit log */
  int owned;       /* fd is our file (reopened on SIGHUP), not stderr */
  char *path;
  int image_name;  /* include Segment.image_name */
  uint64_t errors; /* lines not written (Stats.audit_errors) */
  int failing;     /* the last write failed: logged once */
  const struct osseg_log *log;
  char line[16384];
};

/* What one audit line of a Segment says. */
struct ossegd__audit_segment {
  const struct ossegd__peer *peer;
  uint64_t conn, id;
  const char *image_name;     /* NULL: none given */
  struct {
    const char *name;
    const char *sha256;       /* NULL: no such model */
    double ms;                /* its inference time */
  } models[OSSEG_MAX_MODELS];
  size_t nmodels;
  size_t more_models;         /* named by the request past OSSEG_MAX_MODELS */
  int timed;                  /* models[].ms are times of a run */
  int outcome;                /* -1 ok, else an Error code */
  double queue_ms, inference_ms, total_ms;
};

/* Opens options' audit_file (none, "stderr", or a path: O_APPEND, created
 * 0640); OSSEG_EIO names the file. */
int ossegd__audit_open(struct ossegd__audit *a, const struct ossegd_options *o,
                       const struct osseg_log *log, struct osseg_diag *diag);
/* SIGHUP (logrotate): opens the path again and switches to it; on failure
 * keeps the old descriptor and logs why. */
void ossegd__audit_reopen(struct ossegd__audit *a);
void ossegd__audit_close(struct ossegd__audit *a);
void ossegd__audit_segment(struct ossegd__audit *a, const struct ossegd__audit_segment *e);
/* A connection refused: code (an Error code) and reason ("access": not
 * on the allow-list; "max_connections"). */
void ossegd__audit_refused(struct ossegd__audit *a, const struct ossegd__peer *peer,
                           uint64_t conn, int code, const char *reason);

/* ------------------------------------------- server, session, worker --- */

#include <pthread.h>
#include <uv.h>

struct ossegd__session;
struct ossegd__metrics_file;

/* A frame a worker produced for the loop to write. The last one of a
 * request is embedded in the request (never allocated, so a request always
 * ends); frame NULL there means even the error could not be encoded and
 * the connection is closed. */
struct ossegd__completion {
  struct ossegd__completion *next;
  struct ossegd__request *req;
  uint8_t *frame;
  size_t len;
  int final;
};

/* A Segment request: created, answered and freed on the loop thread; in
 * between owned by the scheduler queue and then one worker. */
struct ossegd__request {
  struct ossegd__request *qnext;               /* scheduler queue */
  struct ossegd__request *sprev, *snext;       /* session's in-flight list */
  struct ossegd__session *s;                   /* loop thread only */
  uint64_t id;
  Osseg__Wire__Request *msg;                   /* owns the strings and bytes */
  int fd;                                      /* ImageFd's descriptor, or -1 */
  uint64_t fd_size;                            /* its size at validation */
  struct ossegd__segment seg;
  _Atomic int cancel;
  uint64_t received_ns, deadline_ns;
  /* Set by the worker before it queues `done`; read by the loop after. */
  int outcome;                                 /* -1 ok, else an Error code */
  int started;                                 /* a worker took it: queue_ms is set */
  double queue_ms;                             /* received -> taken by a worker */
  double total_ms;
  double model_ms[OSSEG_MAX_MODELS];           /* engine time per pipeline model */
  struct ossegd__completion done;
};

/* One connection. */
struct ossegd__session {
  uv_pipe_t pipe;
  struct ossegd *d;
  struct ossegd__peer peer; /* who connected (SO_PEERCRED) */
  uint64_t serial;          /* 1, 2, ... in the order connections came */
  struct ossegd__session *prev, *next;
  struct ossegd__frame_reader rd;
  unsigned refs;          /* the handle + one per request in flight */
  int closed;             /* uv_close called */
  int reading;
  int paused_inflight, paused_write;
  unsigned in_flight;
  struct ossegd__request *reqs;
  uv_shutdown_t shutdown;
  /* Bytes read but not yet fed to the frame reader because the in-flight
   * limit was reached in the middle of a read; fed before reading resumes,
   * so requests keep their order. At most one read buffer. */
  uint8_t *pending;
  size_t pending_len;
  int feeding;            /* inside feed(): no re-entry from a completion */
};

#define OSSEGD_NOUTCOMES 9 /* "ok" + the 8 Error codes */
#define OSSEGD_NBUCKETS 15 /* ossegd__bucket_le_ms, the last +infinity */

struct ossegd__worker {
  struct ossegd *d;
  pthread_t thread;
  int started;
  /* The watchdog's view of this worker (server.c): beat grows whenever the
   * worker waits for work (it wakes up at least every idle_wait_ms to bump
   * it), takes a request, or hands a frame to the loop; busy is 1 while it
   * runs a request. wd_beat is the loop's last look at beat. */
  _Atomic uint64_t beat;
  _Atomic int busy;
  uint64_t wd_beat;
  struct osseg_workspace *ws;
  struct osseg_runs gt[OSSEG_MAX_CLASSES];
  /* RLE text buffers kept between requests: [0] for this worker's thread,
   * [1] for its workspace's post-processing helper thread (the only two
   * threads that format its masks, each into its own). */
  char *text[2];
  size_t text_cap[2];
  pthread_t self; /* the worker's own thread, as it sees itself */
};

/* ---------------------------------------------------------- metrics.c --- */

/* A latency histogram with Prometheus semantics: cumulative counts of
 * observations <= ossegd__bucket_le_ms[i], their sum and their number. */
struct ossegd__histogram {
  uint64_t le[OSSEGD_NBUCKETS];
  double sum_ms;
  uint64_t count;
};

/* Per served model, in load order (the index is the model's everywhere
 * below). Loop thread only, like every counter in struct ossegd. */
struct ossegd__model_stats {
  char name[OSSEG_MAX_MODEL_NAME];
  enum osseg_precision precision;
  struct ossegd__histogram inference; /* engine ms of runs in Segments ended with Done */
  double max_ms;
  uint64_t requests[OSSEGD_NOUTCOMES]; /* Segments naming the model, by outcome */
  double load_ms, warmup_ms;           /* start-up (or the last reload) */
  uint64_t reloads;                    /* 0 until reloads exist */
};

struct ossegd {
  struct ossegd_options opt;
  struct ossegd__limits lim;
  struct ossegd__acl acl;
  struct ossegd__audit audit;
  char *socket_path;
  int socket_created;
  struct osseg_registry *reg;
  struct ossegd__model_stats models[OSSEGD_MAX_MODELS];
  size_t nmodels;

  uv_loop_t loop;
  int loop_init;
  uv_pipe_t listener;
  int listener_init;
  uv_async_t async;
  int async_init;
  uv_signal_t sigint, sigterm, sighup;
  int signals_init;
  /* Fires at the earliest deadline of a request that may still be queued
   * (deadline_due_ns, 0 = not armed); see ossegd__expire_queued. */
  uv_timer_t deadline_timer;
  int deadline_timer_init;
  uint64_t deadline_due_ns;
  _Atomic int stop_requested;

  /* Shared with workers, under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct ossegd__request *q_head[2], *q_tail[2]; /* interactive, batch */
  unsigned queued;
  unsigned queued_pri[2];                         /* of queued: interactive, batch */
  int workers_stop;
  struct ossegd__completion *c_head, *c_tail;

  struct ossegd__worker *workers;
  unsigned nworkers;
  /* With the watchdog, idle workers wake up this often to show they are
   * alive (0: they just wait). */
  uint32_t idle_wait_ms;

  /* The models being served, as specs (a config owned by the daemon: the
   * specs of ossegd_create, or those a reload switched to), and the
   * options a reload compares with. Loop thread; a reload's pool thread
   * reads them while the loop leaves them alone. */
  struct ossegd_config *specs;
  /* systemd (server.c, loop thread). */
  uv_timer_t drain_timer;      /* the SIGTERM grace period */
  int drain_timer_init;
  uint64_t drain_started_ns;
  int drain_cancelled;         /* the grace period ended: the rest was cancelled */
  uv_timer_t watchdog_timer;
  int watchdog_timer_init;
  uint64_t wd_steps;           /* osseg_engine_steps() at the last look */
  /* reload.c: the reload in progress (NULL: none) and whether another
   * SIGHUP came meanwhile (one more reload follows). */
  struct ossegd__reload *reload;
  int reload_again;
  uint64_t reloads_total, reload_failures;

  /* Loop thread only. */
  struct ossegd__session *sessions;
  unsigned nsessions;
  unsigned in_flight;
  int draining, finished;
  uint64_t start_ns;      /* monotonic */
  double start_unix_s;    /* the same moment in Unix time */
  /* Counters (metrics.c; proto/osseg.proto's Stats says what each counts). */
  uint64_t outcomes[OSSEGD_NOUTCOMES];
  struct ossegd__histogram total, queue_wait;
  uint64_t connections_total, bytes_in, bytes_out;
  /* Connections refused because the peer is not allowed: incremented by
   * the access check where it refuses one (loop thread). */
  uint64_t refused_peers;
  struct ossegd__metrics_file *metrics_file; /* NULL without --metrics-file */
  uint64_t connections_seen; /* accepted, refused or not: session serials */
  uint8_t readbuf[65536];
};

/* The bucket bounds of every histogram, ms: 5 ms .. 60 s, then +infinity. */
extern const double ossegd__bucket_le_ms[OSSEGD_NBUCKETS];
/* "ok", then the Error codes' names in code order: index = code + 1. */
extern const char *const ossegd__outcome_names[OSSEGD_NOUTCOMES];

/* metrics.c, all on the loop thread. */
void ossegd__histogram_observe(struct ossegd__histogram *h, double ms);
/* A request answered with an Error before a worker could have it (seg:
 * its Segment, NULL for other kinds). */
void ossegd__metrics_refused(struct ossegd *d, int code, const Osseg__Wire__Segment *seg);
/* A queued request that ended (worker, cancel or deadline in the queue). */
void ossegd__metrics_finished(struct ossegd *d, const struct ossegd__request *req);
/* A Stats message of the counters now; NULL when out of memory. The
 * message points into the daemon's strings: use it before they change
 * and free it with ossegd__stats_free. */
Osseg__Wire__Stats *ossegd__stats_build(struct ossegd *d);
void ossegd__stats_free(Osseg__Wire__Stats *st);
/* The Stats in the Prometheus text format (osseg_prometheus_format);
 * 0 or OSSEG_ENOMEM. Free *text with osseg__free. */
int ossegd__metrics_text(struct ossegd *d, char **text, size_t *len);

/* metrics_file.c (loop thread): --metrics-file. start writes the file once
 * (synchronously, so a path that cannot be written fails start-up) and
 * arms the timer that rewrites it every metrics_interval_ms from a libuv
 * pool thread; stop closes the timer (a write in progress finishes);
 * final writes it once more, synchronously, after the loop ended. */
int ossegd__metrics_file_start(struct ossegd *d, struct osseg_diag *diag);
void ossegd__metrics_file_stop(struct ossegd *d);
void ossegd__metrics_file_final(struct ossegd *d);
void ossegd__metrics_file_free(struct ossegd *d);

/* session.c (loop thread) */
void ossegd__on_connection(uv_stream_t *server, int status);
void ossegd__session_write(struct ossegd__session *s, uint8_t *frame, size_t len);
void ossegd__session_close(struct ossegd__session *s);
void ossegd__session_update_reading(struct ossegd__session *s);
void ossegd__request_finish(struct ossegd *d, struct ossegd__request *req);
/* The audit line of a finished Segment (see audit.c): p (NULL = not
 * validated) gives the models and their hashes, else the registry does;
 * started = 0 when no worker took it (else queue_ms is its wait),
 * total_ms = 0 when no worker timed it. */
void ossegd__audit_request(struct ossegd *d, const struct ossegd__session *s, uint64_t id,
                           const Osseg__Wire__Segment *seg, const struct osseg_pipeline *p,
                           const double *model_ms, int outcome, uint64_t received,
                           int started, double queue_ms, double total_ms);
/* Packs and writes an Error response. */
void ossegd__send_error(struct ossegd__session *s, uint64_t id, int code, const char *message);
void ossegd__maybe_finish(struct ossegd *d);
/* server.c: stop accepting and reading; finish once nothing is in flight. */
void ossegd__begin_drain(struct ossegd *d);

/* server.c (loop thread): a message to the service manager, printf-style
 * (ossegd_options.notify; nothing without one). */
void ossegd__notify(struct ossegd *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One inference of model name through reg with workspace ws (start-up and
 * reload); errors name the model. Any thread. */
int ossegd__warm_up(struct osseg_registry *reg, struct osseg_workspace *ws, const char *name,
                    struct osseg_diag *diag);

/* reload.c (loop thread): SIGHUP with a reload callback. Reads the new
 * configuration and loads the new and changed models on a libuv pool
 * thread, then switches on the loop thread. A SIGHUP during a reload runs
 * one more reload after it. */
struct ossegd__reload;
void ossegd__reload_start(struct ossegd *d);

/* session.c (loop thread): deadlines of queued requests. arm makes the
 * deadline timer fire no later than deadline_ns. When it fires, every
 * request whose deadline has passed and that no worker has taken yet is
 * taken out of the queue and answered DEADLINE_EXCEEDED at once, instead of
 * waiting for a worker to reach it; requests already running are the
 * worker's (the pipeline checks the deadline between steps). */
void ossegd__deadline_arm(struct ossegd *d, uint64_t deadline_ns);
void ossegd__on_deadline_timer(uv_timer_t *t);

/* worker.c */
void *ossegd__worker_main(void *arg);
/* Queues a request; OSSEG_ELIMIT when the queue is full. */
int ossegd__schedule(struct ossegd *d, struct ossegd__request *req);
/* Takes a request out of the queue if it is still waiting (1), else 0. */
int ossegd__unschedule(struct ossegd *d, struct ossegd__request *req);
unsigned ossegd__queue_depth(struct ossegd *d);
/* Waiting requests by priority: out[0] interactive, out[1] batch. */
void ossegd__queue_depths(struct ossegd *d, unsigned out[2]);
void ossegd__drain_completions(uv_async_t *async);
void ossegd__request_free(struct ossegd__request *req);

#endif
