/* ossegd: the osseg daemon as a library (the `ossegd` executable only maps
 * its command line onto struct ossegd_options).
 *
 * Contract (each line is tested in tests/daemon/):
 *
 *   Start-up. ossegd_create loads every model into an osseg_registry, warms
 *   each one up with one inference, and only then creates the Unix stream
 *   socket (socket_mode, default 0660; given to socket_group when set)
 *   and listens (or listens on listen_fd, see systemd below): a client
 *   that can connect and is allowed is served. A
 *   socket file left behind by a dead daemon is removed; a socket someone
 *   listens on, or a path that is not a socket, is an error. Errors name
 *   the model file, the socket path, or the unknown user or group (diag);
 *   names are resolved before any model is loaded.
 *
 *   Access. Every accepted connection's peer is identified by SO_PEERCRED
 *   (uid, gid, pid, as of its connect()). With an allow-list (allow_users,
 *   allow_groups) the peer is let in when it is root, the daemon's own
 *   uid, a listed uid, or has a listed group as its gid or among its
 *   supplementary groups (SO_PEERGROUPS, see access.c); otherwise it gets
 *   one Error PERMISSION_DENIED (id 0), nothing it sent is read, the
 *   connection is closed, and the refusal is logged with uid and pid,
 *   counted in Stats.refused_peers and audited. Without a list the
 *   socket's mode and group are the only gate.
 *
 *   Threads. One libuv loop thread (the caller of ossegd_run) does all
 *   socket I/O, framing, validation, scheduling, ListModels/Health/Stats
 *   (answered at once, never queued behind inference) and all session
 *   state changes. `workers` threads each own an osseg_workspace and run
 *   Segment requests through a per-request osseg_pipeline; inference itself
 *   is serialised by the engine's one executor per process. Workers see a
 *   validated request and produce encoded response frames; they hand them
 *   to the loop through one mutex-protected queue and uv_async_send (which
 *   coalesces: the callback drains the whole queue).
 *
 *   Ownership. A request (its unpacked message, pipeline and raw pixels) is
 *   created and freed on the loop thread; between, the scheduler and then
 *   one worker own it; the worker never touches its session. A session
 *   (one connection) is reference-counted: the open handle holds one
 *   reference and every request in flight one, so a connection that closes
 *   while its requests run stays valid until their completions are drained.
 *   A disconnect sets the cancel flag of its requests.
 *
 *   Limits (all in struct ossegd_options; Health reports frame bytes, image
 *   pixels and image side):
 *   - max_frame_bytes: a frame declaring more is refused before anything is
 *     allocated for it and the connection is closed; so is a frame that
 *     does not unpack as a Request.
 *   - max_image_pixels / max_image_side: PNG headers and raw dimensions are
 *     checked against them (IMAGE_TOO_LARGE, the message names the image's
 *     dimensions and the limit). The side is at most OSSEG_MAX_SIDE, what
 *     the imaging and kernel layers handle.
 *   - max_connections: connections past it are accepted and closed at once.
 *   - max_in_flight: requests of one connection accepted and not done; at
 *     the limit the daemon stops reading the connection (bytes already read
 *     wait, unparsed) and resumes below half: pipelining more than the
 *     limit is slowed down, never refused.
 *   - max_in_flight_total: requests accepted and not done, all connections
 *     together; a Segment past it is answered BUSY.
 *   - request_timeout_ms: the deadline of a Segment that gives no
 *     deadline_ms (0 = none).
 *   - max_queue: Segment requests waiting for a worker, both priorities
 *     together; a full queue answers BUSY.
 *   - max_output_bytes: bytes queued for writing on one connection; above it
 *     the daemon stops reading that connection (a client that does not read
 *     its masks is backpressure too) and resumes below half.
 *
 *   Requests. Every field is validated on the loop thread; an invalid
 *   request gets an Error (BAD_REQUEST, UNKNOWN_MODEL, IMAGE_TOO_LARGE) whose
 *   message names the field, and the connection stays open. That includes
 *   a PNG's header (its size, before any pixel memory exists) and RLE
 *   ground truth (class names, syntax, runs inside the image when its size
 *   is known: raw pixels or a PNG header). Enumerations outside their enum
 *   are invalid; unknown fields (which protobuf-c keeps in the message) are
 *   ignored, so a newer client's additions do not break an older daemon.
 *   Interactive requests are served before batch ones. A Segment is
 *   answered by one ClassMask per produced class (none for
 *   OUTPUT_DICE_ONLY), a DiceReport
 *   when ground truth was given, then Done; or an Error (BAD_IMAGE,
 *   CANCELLED, DEADLINE_EXCEEDED, ...) that ends it. A deadline that passes
 *   while the request is still queued is answered DEADLINE_EXCEEDED when it
 *   passes (a timer on the loop, armed for the earliest deadline in
 *   flight), not when a worker would have reached the request; one that
 *   passes while it runs interrupts the pipeline between steps.
 *   OUTPUT_PNG_MASK masks are 1-bit gray PNGs (1 = the class's pixels).
 *   Ground truth: RLE text is parsed by the worker (a run past the image is
 *   BAD_REQUEST); label JSON of up to OSSEGD_LABEL_JSON_LOOP_BYTES (64 KiB)
 *   is parsed and checked on the loop thread, so an unknown label or a bad
 *   point is BAD_REQUEST before the request is queued, longer text (to the
 *   4 MiB limit) by the worker with the same messages, so that no request
 *   stalls the loop; the polygons are drawn at the decoded image's size and
 *   every produced class is scored.
 *   A Cancel is acknowledged by an empty Done (all numbers 0) carrying the
 *   Cancel's own id; the cancelled request then ends with CANCELLED (or
 *   normally if it had already finished). Done.inference lists every model of the request with
 *   its own engine time (osseg_timings.model_ms, measured per model by the
 *   pipeline; they add up to the request's inference time), and Stats'
 *   per-model runs, mean and max are made of the same numbers.
 *   ImageFd: the descriptor that came (SCM_RIGHTS) with the frame must be a
 *   regular file open for reading (not O_WRONLY, not O_PATH) of 1 to
 *   max_frame_bytes bytes: checked with fstat and fcntl on the loop thread,
 *   so a FIFO, socket, directory or device is refused (BAD_REQUEST) without
 *   being read, and an empty file is BAD_IMAGE, a larger one
 *   IMAGE_TOO_LARGE. A worker reads exactly the size fstat gave, from
 *   offset 0, and closes it. Connections are libuv ipc pipes, which receive
 *   descriptors in order without remembering which frame carried them, so
 *   each ImageFd frame takes the oldest descriptor not yet taken; a client
 *   that sends a descriptor with any other frame, or an ImageFd frame
 *   without one, shifts that pairing (an ImageFd frame finds no descriptor
 *   -> BAD_REQUEST only when none is waiting; stray descriptors are closed
 *   when the connection closes). Exact per-frame pairing needs the
 *   daemon's own recvmsg(); not done.
 *
 *   Audit (audit_file: none, stderr, or a file opened O_APPEND|O_CLOEXEC,
 *   created 0640, reopened on SIGHUP for logrotate). One JSON line per
 *   finished Segment, whatever its outcome (refused at validation, BUSY,
 *   cancelled, expired or done), and one per refused connection (reason
 *   "access": PERMISSION_DENIED; "max_connections": BUSY); Health,
 *   ListModels, Stats and Cancel are not audited (they carry no patient
 *   data and monitoring polls them). Fields: time (RFC 3339, UTC, ms),
 *   event ("segment" or "refused"), conn (the connection's serial), uid,
 *   gid, pid (SO_PEERCRED), id (the request's), image_name (only with
 *   audit_image_name; JSON-escaped, invalid UTF-8 replaced, cut at 255
 *   bytes), models (name, sha256 of the file the registry loaded, or null
 *   for an unknown name, and inference_ms once it ran), outcome ("ok" or
 *   "error") and code (null or the Error code name), queue_ms,
 *   inference_ms, total_ms. Never pixel data. A line is written with one
 *   write(2); a failed write is counted (Stats.audit_errors) and logged
 *   once until writing works again.
 *
 *   Metrics. Every counter behind Stats changes on the loop thread only
 *   (daemon/metrics.c); workers never touch one. What a worker measures
 *   for a request (queue wait, total, engine time per model) it writes
 *   into the request before handing it back, and the loop records it when
 *   it finishes the request; queue depths are read under the scheduler's
 *   mutex. A Segment counts in outcomes once, and in the per-model counts
 *   once for each distinct registered model it names (an ensemble counts
 *   for each of its models), whatever its outcome; model names a client
 *   sent are compared, never used as labels. Histograms share fixed
 *   bounds: 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10, 20, 30, 60 s,
 *   +infinity. With metrics_file, the Stats in the Prometheus text format
 *   (proto/osseg_prometheus.h) are written to that file when the daemon
 *   starts (a path that cannot be written fails ossegd_create), every
 *   metrics_interval_ms, and once more when ossegd_run returns. The text is
 *   made on the loop thread (a few KB, microseconds); the file is written
 *   by a libuv pool thread through osseg_output (a temporary file in the
 *   same folder, fsync, rename), so a reader sees the old file or the new
 *   one, never a part, and a slow disk never stalls the loop. A failed
 *   write is logged (once until a write succeeds again) and retried at the
 *   next interval.
 *
 *   Shutdown. SIGINT or SIGTERM (or ossegd_stop) stops accepting and
 *   reading (the socket file is removed, unless it came from socket
 *   activation), lets the requests in flight (running and queued) finish
 *   and their responses be written, closes the connections and returns 0
 *   from ossegd_run. When drain_timeout_ms passes first, what is still
 *   queued is answered CANCELLED at once and what runs is interrupted
 *   through its cancel flag (between engine steps) and answered CANCELLED;
 *   the responses are flushed and ossegd_run returns 0 all the same.
 *
 *   systemd (main.c holds all of libsystemd; the library never reads the
 *   environment). Socket activation: listen_fd is served instead of
 *   binding socket_path; it must be a listening AF_UNIX stream socket,
 *   else ossegd_create fails naming the descriptor, before any model is
 *   loaded. Connections made before the daemon is ready wait in the
 *   socket's backlog and are served once it is. The notify callback gets,
 *   on the loop thread: "STATUS=loading model X (i of N)" before each load;
 *   "READY=1" with "STATUS=ready: N model(s), W worker(s)" when ossegd_run
 *   starts (every model loaded and warmed up, the socket listening, the
 *   workers running); "STOPPING=1" with "STATUS=draining N request(s)" once
 *   the socket no longer accepts; "RELOADING=1" (with MONOTONIC_USEC and a
 *   STATUS) when a reload starts and "READY=1" with a STATUS saying how it
 *   went when it ends, whatever the outcome. With watchdog_usec, "WATCHDOG=1"
 *   every half interval while the loop runs and every worker shows
 *   progress (server.c: on_watchdog_timer says what counts).
 *
 *   Reload (SIGHUP with a reload callback; the audit file is reopened in
 *   any case). The callback makes the new configuration on a libuv pool
 *   thread; a bad one changes nothing (logged, STATUS says so). Models
 *   whose path, options or file SHA-256 changed, and new ones, are loaded
 *   and warmed up on that thread into a staging registry while requests
 *   are served; then, on the loop thread, all of them replace the served
 *   ones at once and models no longer configured are removed (gone from
 *   ListModels and Health). Requests validated before keep the models of
 *   their pipelines (reference-counted) and finish on them; requests
 *   validated after see only the new set. A model that fails to load or
 *   warm up keeps the one served so far (or, when new, is not served), and
 *   the log and STATUS say why. Limits (frame bytes, image pixels and side,
 *   connections, in flight, queue, output bytes, request and drain
 *   timeouts), the allow-list and audit_image_name apply from the switch
 *   on; socket path, mode and group, workers, threads, workspace bytes,
 *   audit and metrics files are logged as needing a restart and stay. Per
 *   model, Stats' load_ms and warmup_ms become the reload's and reloads
 *   counts the replacements. A SIGHUP during a reload runs one more reload
 *   after it; during a drain it is ignored.
 *
 *   Allocation failures during start-up fail ossegd_create; on the request
 *   path they end the request with INTERNAL (or close the connection when
 *   not even the error can be sent).
 */
#ifndef OSSEGD_H
#define OSSEGD_H

#include <stddef.h>
#include <stdint.h>

#include "osseg_base.h"
#include "osseg_pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OSSEGD_MAX_MODELS 32 /* models a daemon may serve */
#define OSSEGD_MAX_ACCESS 64 /* users, and groups, on the allow-list */

struct ossegd_config;

/* A message to the service manager (sd_notify's state string: lines such
 * as "READY=1", "STATUS=...", "STOPPING=1", "RELOADING=1", "WATCHDOG=1").
 * Called on the thread running ossegd_create and ossegd_run (the loop
 * thread); must not block. */
struct ossegd_notify {
  void (*fn)(void *ctx, const char *state);
  void *ctx;
};

/* SIGHUP's reload: fn makes a fresh configuration (ossegd reads its file
 * again and lays the command line over it) and stores it in *out, which the
 * daemon then owns; it returns 0, or non-zero after reporting what is wrong
 * itself (the daemon keeps everything as it is). Called on a libuv pool
 * thread, one call at a time, while the loop keeps serving. */
struct ossegd_reload {
  int (*fn)(void *ctx, struct ossegd_config **out);
  void *ctx;
};

struct ossegd_options {
  const char *socket_path;
  unsigned socket_mode;       /* permission bits of the socket file, default 0660 */
  const char *socket_group;   /* group of the socket file (name or number);
                                 NULL = the daemon's own */
  /* The allow-list (names or numeric ids): a peer whose uid, or one of whose
   * groups, is listed may use the daemon; so may root and the daemon's own
   * uid. Both lists empty = everyone who can open the socket. */
  const char *allow_users[OSSEGD_MAX_ACCESS];
  size_t nallow_users;
  const char *allow_groups[OSSEGD_MAX_ACCESS];
  size_t nallow_groups;
  /* The models, loaded under spec.name (required here). Strings are read
   * during ossegd_create only. */
  struct osseg_model_spec models[OSSEGD_MAX_MODELS];
  size_t nmodels;
  struct osseg_engine_options engine; /* threads, log; precision per model */
  unsigned workers;           /* worker threads, default 2 */
  uint64_t max_frame_bytes;   /* default 64 MiB */
  uint64_t max_image_pixels;  /* default 16384 * 16384 */
  uint32_t max_image_side;    /* default and at most OSSEG_MAX_SIDE, 16384 */
  unsigned max_connections;   /* default 256 */
  unsigned max_in_flight;     /* per connection, default 64 */
  unsigned max_in_flight_total; /* all connections together, default 1024 */
  unsigned max_queue;         /* waiting Segments, default 256 */
  uint64_t max_output_bytes;  /* per connection, default 64 MiB */
  uint32_t request_timeout_ms; /* deadline of a Segment without deadline_ms;
                                  0 = none (default) */
  uint64_t workspace_bytes;   /* per worker, 0 = no cap */
  /* The audit log: NULL = none (the default here; ossegd's config default
   * is "stderr"), "stderr" = file descriptor 2, else a file opened with
   * O_APPEND (created 0640) and reopened on SIGHUP. */
  const char *audit_file;
  int audit_image_name;       /* Segment.image_name in audit lines; default 0 */
  /* The Stats in the Prometheus text format, written to this file (for
   * node_exporter's textfile collector) at start-up and then every
   * metrics_interval_ms; NULL = none. Read during ossegd_create only. */
  const char *metrics_file;
  uint32_t metrics_interval_ms; /* default 15000 */
  /* Socket activation: a listening AF_UNIX stream socket (from systemd's
   * LISTEN_FDS) served instead of binding socket_path, which then only
   * names it in messages; its mode and group are the service manager's.
   * Anything else (not a socket, not AF_UNIX, not SOCK_STREAM, not
   * listening) fails ossegd_create. -1 (the default): bind socket_path.
   * Once ossegd_create succeeded, the daemon closes it when it ends. */
  int listen_fd;
  struct ossegd_notify notify; /* fn NULL: none (the default) */
  /* The service manager's watchdog interval (WATCHDOG_USEC), 0 = none:
   * WATCHDOG=1 is sent every half interval while the loop runs and every
   * worker shows progress (see server.c). */
  uint64_t watchdog_usec;
  /* Grace period of a SIGTERM/SIGINT drain: requests still in flight when
   * it ends are cancelled (CANCELLED). Default 30000; 0 = cancel at once. */
  uint32_t drain_timeout_ms;
  struct ossegd_reload reload; /* fn NULL: SIGHUP only reopens the audit file */
  /* Daemon messages (start-up, connection errors); called on the loop
   * thread, and on worker threads for engine messages via engine.log. */
  struct osseg_log log;
};

void ossegd_options_default(struct ossegd_options *o);

struct ossegd;

/* Loads and warms up the models, binds and listens (see above). Must be
 * called on the thread that will call ossegd_run. */
int ossegd_create(struct ossegd **out, const struct ossegd_options *o, struct osseg_diag *diag);
/* Serves until SIGINT/SIGTERM or ossegd_stop, then drains; returns 0. */
int ossegd_run(struct ossegd *d);
/* Asks a running daemon to drain and return; thread-safe. */
void ossegd_stop(struct ossegd *d);
/* Removes the socket file and frees everything; after ossegd_run returned
 * (or instead of calling it). NULL allowed. */
void ossegd_free(struct ossegd *d);

const char *ossegd_version(void);

/* ------------------------------------------------------------- config --- */

/* A configuration (daemon/config.c): struct ossegd_options together with
 * the strings it points to. A file is parsed with libinih into a fresh
 * config, checked, and only then used, so a bad file changes nothing (a
 * reload on SIGHUP relies on this); nothing is global. Every key, its
 * default and its range: systemd/ossegd.conf.example.
 *
 * Problems are reported through a log callback (level OSSEG_LOG_ERROR), one
 * message each, all of them, in line order: "FILE:LINE: what" for a line,
 * "FILE: what" for the whole file. The library never prints. */
struct ossegd_config;

/* A config holding the defaults: ossegd_options_default, and the audit log
 * on stderr. */
int ossegd_config_create(struct ossegd_config **out);
/* Parses path on top of the defaults into a fresh config. Checks the
 * syntax, sections and keys (unknown or given twice), numbers (range,
 * units), user and group names (resolved now: NSS), model sections (a
 * readable regular file, options as osseg_model_spec_check sees them).
 * Nothing is loaded, created or opened for writing. Returns 0, OSSEG_EPARSE
 * when anything was reported (*out NULL), OSSEG_EIO when the file cannot be
 * read (reported too), OSSEG_ENOMEM. */
int ossegd_config_load(struct ossegd_config **out, const char *path,
                       const struct osseg_log *errors);
/* The options; valid while the config lives. Callers lay command-line flags
 * over them; strings they store there must outlive the config's use. */
struct ossegd_options *ossegd_config_options(struct ossegd_config *c);
/* Adds a model, or replaces the one of the same name entirely (strings and
 * thresholds are copied into the config). OSSEG_ELIMIT past
 * OSSEGD_MAX_MODELS. */
int ossegd_config_set_model(struct ossegd_config *c, const struct osseg_model_spec *spec);
/* What only the complete options (file and flags) can tell: a socket path,
 * at least one model, and the files of models set with
 * ossegd_config_set_model. `path` names the file in messages (NULL: none).
 * Returns 0 or OSSEG_EPARSE. */
int ossegd_config_check(struct ossegd_config *c, const char *path,
                        const struct osseg_log *errors);
void ossegd_config_free(struct ossegd_config *c); /* NULL allowed */

#ifdef __cplusplus
}
#endif
#endif /* OSSEGD_H */
