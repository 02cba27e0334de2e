/* osseg_client: a small blocking C client for ossegd's Unix socket.
 *
 * It speaks the framing of proto/osseg.proto (4-byte little-endian length +
 * one protobuf message) and nothing else: requests are the protobuf-c
 * structs of "osseg.pb-c.h" (Osseg__Wire__Request), responses come back
 * unpacked (Osseg__Wire__Response). The library links libprotobuf-c and
 * libc only (no oneDNN, no engine, no libuv), never prints, never reads the
 * environment and never raises SIGPIPE (it sends with MSG_NOSIGNAL).
 *
 * Errors: functions that can fail return 0 or a negative OSSEG_CLIENT_E*
 * code from OSSEG_CLIENT_ERRNO_MAP; osseg_client_strerror() gives its
 * generic text. A message naming the problem in full ("frame of 70000000
 * bytes is over the limit of 67108864") goes to the caller's buffer for
 * osseg_client_connect and to the handle afterwards
 * (osseg_client_message()).
 *
 * Fatal and transient errors: after ECLOSED, ETRUNCATED, ETOOBIG, EPARSE
 * or EIO the byte stream cannot be trusted any more; the handle is broken
 * and every later send/recv returns the same code until it is closed.
 * ETIMEDOUT from osseg_client_recv is transient: a frame read in part is
 * kept and the next call continues it, so a caller may poll with short
 * timeouts. ETIMEDOUT from a send that had already written part of a frame
 * is fatal (the peer would see half a frame).
 *
 * Thread safety: a handle is used by one thread at a time (calls on one
 * handle must not overlap). Distinct handles are independent. No global
 * state.
 *
 * Ownership: everything passed in (requests, paths, buffers) is borrowed
 * for the duration of the call only. File descriptors passed with
 * osseg_client_send stay the caller's: the kernel duplicates them into the
 * daemon, and the caller closes its own copy when it likes. A response
 * returned by osseg_client_recv belongs to the caller, who frees it with
 * osseg__wire__response__free_unpacked(resp, NULL). */
#ifndef OSSEG_CLIENT_H
#define OSSEG_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "osseg.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OSSEG_CLIENT_ERRNO_MAP(XX)                                                    \
  XX(INVAL, -1, "invalid argument")                                                   \
  XX(NOMEM, -2, "out of memory")                                                      \
  XX(CONNECT, -3, "cannot connect to the daemon")                                     \
  XX(IO, -4, "input/output error on the connection")                                  \
  XX(TIMEDOUT, -5, "timed out")                                                       \
  XX(CLOSED, -6, "the daemon closed the connection")                                  \
  XX(TRUNCATED, -7, "the connection ended in the middle of a frame")                  \
  XX(TOOBIG, -8, "frame over the size limit")                                         \
  XX(PARSE, -9, "malformed response frame")

enum osseg_client_error {
#define OSSEG_CLIENT__XX(name, value, text) OSSEG_CLIENT_E##name = (value),
  OSSEG_CLIENT_ERRNO_MAP(OSSEG_CLIENT__XX)
#undef OSSEG_CLIENT__XX
};

/* Generic text of a code ("unknown error" for anything else). */
const char *osseg_client_strerror(int code);

/* Size of the message buffers the API fills (with the NUL). */
#define OSSEG_CLIENT_MSG_SIZE 256

/* Default limit on the length of a response frame, the daemon's default
 * max_frame_bytes (64 MiB). */
#define OSSEG_CLIENT_DEFAULT_MAX_FRAME ((uint32_t)64 << 20)

typedef struct osseg_client osseg_client_t;

/* Connects to the daemon's Unix stream socket at socket_path, waiting at
 * most timeout_ms (< 0: no limit) for the connection to be accepted.
 * On success *c is a new handle; on failure *c is NULL and err (NULL or
 * OSSEG_CLIENT_MSG_SIZE bytes) says why, naming the path and errno text.
 * ECONNECT covers a missing socket, refused connection and a path too long
 * for sun_path; ETIMEDOUT a full backlog that did not drain in time. */
int osseg_client_connect(osseg_client_t **c, const char *socket_path, int timeout_ms,
                         char *err);

/* Wraps an already connected stream socket (e.g. one end of a
 * socketpair); the handle owns fd from then on and closes it. */
int osseg_client_from_fd(osseg_client_t **c, int fd, char *err);

/* Closes the socket and frees the handle. NULL is a no-op. Requests still
 * in flight are abandoned; the daemon cancels them when it sees the
 * connection go. */
void osseg_client_close(osseg_client_t *c);

/* The longest response frame recv accepts (default
 * OSSEG_CLIENT_DEFAULT_MAX_FRAME); a longer declared length is refused
 * (ETOOBIG) before anything is allocated for it. */
void osseg_client_set_max_frame(osseg_client_t *c, uint32_t bytes);
/* How long one send may wait for the socket to take the frame (< 0: no
 * limit, the default). */
void osseg_client_set_send_timeout(osseg_client_t *c, int timeout_ms);

/* The message of the last failed call on c ("" if none). Valid until the
 * next call on c. */
const char *osseg_client_message(const osseg_client_t *c);
/* The socket, for poll() (POLLIN: a response may be readable). Do not read
 * or write it directly. */
int osseg_client_fd(const osseg_client_t *c);

/* A fresh request id: 1, 2, 3, ... per handle. */
uint64_t osseg_client_next_id(osseg_client_t *c);

/* Packs req and writes it as one frame. fd is -1, or a descriptor sent
 * with the frame's first byte (SCM_RIGHTS), as a Segment with an ImageFd
 * image needs. Handles partial writes and EINTR. 0 or a negative code. */
int osseg_client_send(osseg_client_t *c, const Osseg__Wire__Request *req, int fd);

/* Reads one response frame, waiting at most timeout_ms (< 0: no limit;
 * 0: only what has already arrived). *resp gets the unpacked response
 * (free with osseg__wire__response__free_unpacked(*resp, NULL)); NULL on
 * error. Handles short reads and EINTR; EOF between frames is ECLOSED, EOF
 * inside one ETRUNCATED. */
int osseg_client_recv(osseg_client_t *c, Osseg__Wire__Response **resp, int timeout_ms);

/* ------------------------------------------------------ request builders --- */

/* A Segment request and the sub-messages it points to, in one struct the
 * caller owns (on the stack, usually): nothing is allocated. After an init
 * function, s->req is ready to send; the caller may then set further
 * Segment fields in s->seg (models, vote, thresholds, classes, ground
 * truth, priority, deadline; see osseg_client_segment_set_models), whose
 * pointed-to data it keeps alive until the send returns. The image bytes
 * are borrowed, not copied. */
struct osseg_client_segment {
  Osseg__Wire__Request req;
  Osseg__Wire__Segment seg;
  Osseg__Wire__RawImage raw;
  Osseg__Wire__ImageFd fd;
  Osseg__Wire__Vote vote;
  Osseg__Wire__GroundTruth gt;
};

/* image_name may be NULL (the daemon then says "image"). */
void osseg_client_segment_png(struct osseg_client_segment *s, uint64_t id, const void *png,
                              size_t len, const char *image_name);
/* width x height samples of bit_depth 8 or 16 (16-bit little-endian). */
void osseg_client_segment_raw(struct osseg_client_segment *s, uint64_t id, uint32_t width,
                              uint32_t height, uint32_t bit_depth, const void *pixels,
                              size_t len, const char *image_name);
/* The image travels as a file descriptor: pass it to osseg_client_send.
 * size_hint is informational (0 = unknown). */
void osseg_client_segment_fd(struct osseg_client_segment *s, uint64_t id, uint64_t size_hint,
                             const char *image_name);
/* Borrows names[0, n). */
void osseg_client_segment_set_models(struct osseg_client_segment *s, const char *const *names,
                                     size_t n);
/* Hard (soft = 0) or soft voting; threshold < 0 leaves the daemon's
 * default (hard: models / 2 rounded down). */
void osseg_client_segment_set_vote(struct osseg_client_segment *s, int soft, double threshold);

/* Ground truth as the dataset's label JSON text, {"annotations": [{"label":
 * ..., "points": [[x, y], ...]}, ...]}, borrowed and NUL-terminated (a
 * protobuf string: it cannot hold a NUL byte, so refuse a file that has
 * one rather than send part of it). The daemon checks it when the request
 * arrives (BAD_REQUEST naming an unknown label, or the line:column of a
 * syntax error), draws the polygons at the image's size and scores every
 * class; see GroundTruth.label_json in osseg.proto for the rules and
 * limits. Replaces any ground truth set before. */
void osseg_client_segment_set_label_json(struct osseg_client_segment *s, const char *json);

/* Sends a request without a body (ListModels, HealthRequest, StatsRequest)
 * or a Cancel of the request `target`, with a fresh id stored in *id (may
 * be NULL). Each is answered by one response carrying that id: a Cancel by
 * an empty Done (all numbers 0; the protocol has no other acknowledgement),
 * which a caller that keeps the Cancel's id can tell from a Segment's
 * Done. The cancelled request still ends with its own final response
 * (Error CANCELLED, or its Done if it had finished), after which no more
 * responses carry its id. */
int osseg_client_list_models(osseg_client_t *c, uint64_t *id);
int osseg_client_health(osseg_client_t *c, uint64_t *id);
int osseg_client_stats(osseg_client_t *c, uint64_t *id);
int osseg_client_cancel(osseg_client_t *c, uint64_t target, uint64_t *id);

/* The name of an Error code ("BAD_REQUEST"), "UNKNOWN" for other values. */
const char *osseg_client_error_code_name(int code);

#ifdef __cplusplus
}
#endif
#endif /* OSSEG_CLIENT_H */
