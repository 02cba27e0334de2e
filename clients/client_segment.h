/* What `osseg segment` and `osseg batch` share: their options, and sending
 * images to ossegd through the client library (osseg_client.h) with up to
 * K requests in flight, writing the submission CSV `osseg predict` writes.
 * Also the connect-ask-answer helper of `osseg health`, `models`, `stats`. */
#ifndef OSSEG_CLIENTS_CLIENT_SEGMENT_H
#define OSSEG_CLIENTS_CLIENT_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "osseg_client.h"

#define SEG_MAX_MODELS 8
#define SEG_MAX_CLASSES 64

/* How long the commands wait for the daemon to accept a connection. */
#define CLIENT_CONNECT_TIMEOUT_MS 5000

struct seg_options {
  const char *cmd;     /* "segment" or "batch", for messages */
  const char *socket;
  char *models[SEG_MAX_MODELS];
  size_t nmodels;
  int vote;            /* -1 = not given, 0 hard, 1 soft */
  double vote_threshold; /* < 0: the daemon's default */
  int has_threshold;
  float threshold;
  char *ct_names[SEG_MAX_CLASSES];
  float ct_values[SEG_MAX_CLASSES];
  size_t nct;
  char *classes[SEG_MAX_CLASSES];
  size_t nclasses;
  const char *gt_path;
  const char *labels_dir; /* --labels: label JSON per image (label_file.h) */
  const char *png_dir;
  int priority;        /* 0 interactive, 1 batch */
  uint32_t deadline_ms;
  int json;
  int use_fd;
  uint32_t in_flight;
  const char *output;
  int resume;          /* batch: skip images complete in output, append */
  int progress;        /* batch: progress line when stderr is a terminal */
  char **inputs;       /* image files and folders */
  size_t ninputs;
};

/* Parses argv (argv[0] = the command) into o. Returns -1 when the command
 * should run, else the exit status (usage printed, or --help). */
int seg_parse_args(struct seg_options *o, int argc, char **argv,
                   void (*usage)(FILE *f));
/* Runs the command; returns its exit status. */
int seg_run(struct seg_options *o);

/* Connects to socket, sends one request made by send_fn and waits for the
 * answer (up to timeout_ms); prints errors as "osseg CMD: ...". Returns 0
 * and *resp (free with osseg__wire__response__free_unpacked), or an exit
 * status: 1 for connection or daemon errors (an Error answer is printed
 * with its code). */
int client_ask(const char *cmd, const char *socket,
               int (*send_fn)(osseg_client_t *c, uint64_t *id), int timeout_ms,
               Osseg__Wire__Response **resp);

/* The options of health, models and stats: --socket SOCK [--json], and
 * --prometheus where prometheus is not NULL (stats; not with --json).
 * Returns -1 to run, else the exit status (cmd_health.c). */
int client_simple_args(const char *cmd, int argc, char **argv, void (*usage_fn)(FILE *),
                       const char **socket, int *json, int *prometheus);

/* Appends s as a JSON string literal to the stream. */
void client_json_string(FILE *f, const char *s);

#endif
