/* osseg segment / osseg batch: images to ossegd, rows to a submission CSV.
 *
 * One connection carries up to --in-flight requests at once. Responses of
 * different images interleave; each image collects its rows in its own
 * buffer, and the rows reach the CSV only when its Done arrives, so a
 * failed image leaves no rows. Rows are formatted exactly as `osseg
 * predict` formats them (osseg_csv_put_field; the RLE text as the daemon
 * sent it), so both commands give byte-identical files for the same images
 * and model.
 *
 * segment writes OUT.csv through the kernels' CSV writer (a temporary file
 * that replaces OUT.csv when complete). batch appends to OUT.csv as images
 * finish, one write() per image, so an interrupted batch keeps its work;
 * rerun with the same -o, it skips the images already complete there. */
#include "client_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "image_list.h"
#include "text_buf.h"
#include "csv_index.h"
#include "csv_input.h"
#include "label_file.h"
#include "osseg_imaging.h"
#include "osseg_kernels.h"

/* -------------------------------------------------------------- buffers --- */

void client_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* -------------------------------------------------------------- options --- */

/* Splits a comma-separated list in place into out[0, max); returns the
 * count or -1 when there are more than max or an empty item. */
static int split_list(char *s, char **out, size_t max) {
  /* Checked before cutting, so that a message can quote the text whole. */
  size_t items = 1;
  for (const char *p = s; *p; p++) items += *p == ',';
  if (items > max || !*s || s[strlen(s) - 1] == ',' || strstr(s, ",,") || *s == ',') return -1;
  size_t n = 0;
  for (char *tok = s;;) {
    char *comma = strchr(tok, ',');
    if (comma) *comma = '\0';
    if (!*tok || n == max) return -1;
    out[n++] = tok;
    if (!comma) break;
    tok = comma + 1;
  }
  return (int)n;
}

static int parse_prob(const char *cmd, const char *typed, float *t, const char *what) {
  int rc = cli_parse_probability(typed, t);
  if (rc == -1) cli_error(cmd, "%s a number in (0, 1), not '%s'", what, typed);
  if (rc == -2)
    cli_error(cmd, "%s a number in (0, 1), not '%s' (it rounds to %g in single precision)",
              what, typed, (double)*t);
  return rc ? -1 : 0;
}

int seg_parse_args(struct seg_options *o, int argc, char **argv, void (*usage)(FILE *f)) {
  const char *cmd = o->cmd;
  o->vote = -1;
  o->vote_threshold = -1;
  o->in_flight = 2;
  enum { O_SOCKET = 256, O_MODEL, O_VOTE, O_THRESHOLD, O_CLASS_THR, O_CLASSES, O_GT, O_LABELS,
         O_PNG_DIR, O_PRIORITY, O_DEADLINE, O_JSON, O_FD, O_IN_FLIGHT };
  static const struct option opts[] = {
      {"socket", required_argument, NULL, O_SOCKET},
      {"model", required_argument, NULL, O_MODEL},
      {"vote", required_argument, NULL, O_VOTE},
      {"threshold", required_argument, NULL, O_THRESHOLD},
      {"class-threshold", required_argument, NULL, O_CLASS_THR},
      {"classes", required_argument, NULL, O_CLASSES},
      {"gt", required_argument, NULL, O_GT},
      {"labels", required_argument, NULL, O_LABELS},
      {"png-dir", required_argument, NULL, O_PNG_DIR},
      {"priority", required_argument, NULL, O_PRIORITY},
      {"deadline-ms", required_argument, NULL, O_DEADLINE},
      {"json", no_argument, NULL, O_JSON},
      {"fd", no_argument, NULL, O_FD},
      {"in-flight", required_argument, NULL, O_IN_FLIGHT},
      {"output", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *vote_text = NULL;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
    switch (c) {
      case O_SOCKET: o->socket = optarg; break;
      case O_MODEL: {
        char *list[SEG_MAX_MODELS + 1];
        int n = split_list(optarg, list, SEG_MAX_MODELS + 1);
        if (n < 0) {
          cli_error(cmd, "--model takes NAME[,NAME...] without empty names, not '%s'", optarg);
          return CLI_USAGE;
        }
        if (o->nmodels + (size_t)n > SEG_MAX_MODELS) {
          cli_error(cmd, "at most %d models", SEG_MAX_MODELS);
          return CLI_USAGE;
        }
        for (int i = 0; i < n; i++) o->models[o->nmodels++] = list[i];
        break;
      }
      case O_VOTE:
        vote_text = optarg;
        if (strcmp(optarg, "soft") == 0) {
          o->vote = 1;
        } else if (strcmp(optarg, "hard") == 0) {
          o->vote = 0;
        } else if (strncmp(optarg, "hard:", 5) == 0 &&
                   cli_parse_nonneg_double(optarg + 5, &o->vote_threshold) == 0) {
          o->vote = 0;
        } else {
          cli_error(cmd, "--vote must be hard, hard:T (T >= 0) or soft, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_THRESHOLD:
        if (parse_prob(cmd, optarg, &o->threshold, "--threshold must be") != 0) return CLI_USAGE;
        o->has_threshold = 1;
        break;
      case O_CLASS_THR: {
        char *eq = strchr(optarg, '=');
        if (!eq || eq == optarg || o->nct == SEG_MAX_CLASSES) {
          cli_error(cmd, "--class-threshold takes NAME=T, not '%s'", optarg);
          return CLI_USAGE;
        }
        *eq = '\0';
        char what[160];
        snprintf(what, sizeof what, "--class-threshold %.100s: the threshold must be", optarg);
        if (parse_prob(cmd, eq + 1, &o->ct_values[o->nct], what) != 0) return CLI_USAGE;
        o->ct_names[o->nct++] = optarg;
        break;
      }
      case O_CLASSES: {
        int n = split_list(optarg, o->classes, SEG_MAX_CLASSES);
        if (n < 0) {
          cli_error(cmd, "--classes takes 1 to %d comma-separated names, not '%s'",
                    SEG_MAX_CLASSES, optarg);
          return CLI_USAGE;
        }
        o->nclasses = (size_t)n;
        break;
      }
      case O_GT: o->gt_path = optarg; break;
      case O_LABELS: o->labels_dir = optarg; break;
      case O_PNG_DIR: o->png_dir = optarg; break;
      case O_PRIORITY:
        if (strcmp(optarg, "interactive") == 0) o->priority = 0;
        else if (strcmp(optarg, "batch") == 0) o->priority = 1;
        else {
          cli_error(cmd, "--priority must be interactive or batch, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case O_DEADLINE:
        if (cli_parse_u32(optarg, 1, UINT32_MAX, &o->deadline_ms) != 0) {
          cli_error(cmd, "--deadline-ms must be a positive number of milliseconds, not '%s'",
                    optarg);
          return CLI_USAGE;
        }
        break;
      case O_JSON: o->json = 1; break;
      case O_FD: o->use_fd = 1; break;
      case O_IN_FLIGHT:
        if (cli_parse_u32(optarg, 1, 64, &o->in_flight) != 0) {
          cli_error(cmd, "--in-flight must be 1..64, not '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case 'o': o->output = optarg; break;
      case 'h': usage(stdout); return CLI_OK;
      case ':':
        cli_error(cmd, "option %s needs a value", argv[optind - 1]);
        return CLI_USAGE;
      default:
        cli_error(cmd, "unknown option '%s'", argv[optind - 1]);
        usage(stderr);
        return CLI_USAGE;
    }
  }
  const char *missing = !o->socket        ? "--socket PATH is required"
                        : o->nmodels == 0 ? "--model is required"
                        : !o->output      ? "-o OUT.csv is required"
                        : optind >= argc  ? "no images given"
                                          : NULL;
  if (missing) {
    cli_error(cmd, "%s", missing);
    usage(stderr);
    return CLI_USAGE;
  }
  if (o->gt_path && o->labels_dir) {
    cli_error(cmd, "--gt and --labels both give ground truth; use one");
    return CLI_USAGE;
  }
  if (o->vote_threshold >= 0 && o->vote_threshold >= (double)o->nmodels) {
    cli_error(cmd,
              "--vote %s: a pixel would need more than %g votes of %zu model(s), so every "
              "mask would be empty; give a threshold below %zu",
              vote_text, o->vote_threshold, o->nmodels, o->nmodels);
    return CLI_USAGE;
  }
  o->inputs = argv + optind;
  o->ninputs = (size_t)(argc - optind);
  return -1;
}

/* ------------------------------------------------------------- requests --- */

/* One image in flight. */
struct slot {
  int busy;          /* sent, or finished and waiting for earlier images */
  int finished;      /* Done arrived; rows wait to be written in order */
  uint64_t id;
  size_t image;      /* index in the image list */
  struct buf rows;   /* its CSV rows so far */
  double dice_mean;
  int has_dice;
  double dice[SEG_MAX_CLASSES];
  unsigned char dice_has[SEG_MAX_CLASSES];
  uint64_t sent_ns; /* when its request started to go out */
};

struct run {
  struct seg_options *o;
  const char *cmd;
  osseg_client_t *client;
  struct image_list images;
  /* Class names from ListModels (the first model's, or --classes). */
  char **class_names;
  size_t nclass_names;
  Osseg__Wire__Response *models_resp;
  /* Ground truth. */
  struct osseg_csv gt;
  struct csv_index gt_index;
  /* Output. */
  struct osseg_csv_writer *writer; /* segment */
  int append_fd;                   /* batch */
  unsigned char *skip;             /* batch: complete already */
  size_t skipped;
  /* Progress and results. */
  size_t done, failed, to_do;
  size_t next_write;               /* images before it are written or failed */
  uint64_t t0_ns;
  double dice_sum[SEG_MAX_CLASSES];
  size_t dice_count[SEG_MAX_CLASSES];
  int progress_shown;
  /* Ids whose responses are expected and not wanted: requests this run
   * cancelled (the rest of their masks, then their Done or Error CANCELLED)
   * and the Cancels themselves (acknowledged by an empty Done carrying the
   * Cancel's id). An id leaves the list with its final response. */
  uint64_t *abandoned;
  size_t nabandoned, abandoned_cap;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void progress_clear(struct run *r) {
  if (r->progress_shown) {
    fputs("\r\033[K", stderr);
    r->progress_shown = 0;
  }
}

static void progress_show(struct run *r) {
  if (!r->o->progress) return;
  double s = (double)(now_ns() - r->t0_ns) / 1e9;
  size_t finished = r->done + r->failed;
  double rate = s > 0 ? (double)finished / s : 0;
  char eta[32] = "--:--";
  if (rate > 0 && finished < r->to_do) {
    unsigned long left = (unsigned long)((double)(r->to_do - finished) / rate + 0.5);
    snprintf(eta, sizeof eta, "%lu:%02lu", left / 60, left % 60);
  } else if (finished >= r->to_do) {
    snprintf(eta, sizeof eta, "0:00");
  }
  fprintf(stderr, "\r\033[Kosseg %s: %zu/%zu images, %zu failed, %.2f images/s, ETA %s", r->cmd,
          finished, r->to_do, r->failed, rate, eta);
  r->progress_shown = 1;
}

/* Reports an image that failed, and counts it. */
__attribute__((format(printf, 3, 4))) static void image_failed(struct run *r, size_t image,
                                                               const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  progress_clear(r);
  cli_error(r->cmd, "%s: %s", r->images.paths[image], msg);
  if (r->o->json) {
    printf("{\"image\":");
    client_json_string(stdout, image_base_name(r->images.paths[image]));
    printf(",\"status\":\"error\",\"error\":");
    client_json_string(stdout, msg);
    printf("}\n");
    fflush(stdout);
  }
  r->failed++;
  progress_show(r);
}

/* Ground truth of one image as ClassRles, for the classes of the request
 * that GT.csv has rows for. Storage in gt_* arrays owned by the caller. */
struct gt_msg {
  Osseg__Wire__GroundTruth gt;
  Osseg__Wire__ClassRles rles;
  Osseg__Wire__ClassRle items[SEG_MAX_CLASSES];
  Osseg__Wire__ClassRle *ptrs[SEG_MAX_CLASSES];
  char *text[SEG_MAX_CLASSES]; /* NUL-terminated copies of the rle fields */
};

static void gt_msg_free(struct gt_msg *g) {
  for (size_t i = 0; i < SEG_MAX_CLASSES; i++) {
    free(g->text[i]);
    g->text[i] = NULL;
  }
}

static int gt_msg_build(struct run *r, const char *image, struct gt_msg *g) {
  osseg__wire__ground_truth__init(&g->gt);
  osseg__wire__class_rles__init(&g->rles);
  size_t n = 0, ilen = strlen(image);
  for (size_t c = 0; c < r->nclass_names; c++) {
    const char *cls = r->class_names[c];
    size_t clen = strlen(cls);
    size_t row = csv_index_find(&r->gt_index, csv_index_hash(image, ilen, cls, clen), image, ilen,
                                cls, clen);
    if (row == CSV_INDEX_NONE) continue;
    const struct osseg_csv_row *rw = &r->gt.rows[row];
    char *t = malloc((size_t)rw->rle_len + 1);
    if (!t) return -1;
    memcpy(t, rw->rle, rw->rle_len);
    t[rw->rle_len] = '\0';
    g->text[n] = t;
    osseg__wire__class_rle__init(&g->items[n]);
    g->items[n].name = (char *)cls;
    g->items[n].rle = t;
    g->ptrs[n] = &g->items[n];
    n++;
  }
  if (n == 0) return 0;
  g->rles.n_classes = n;
  g->rles.classes = g->ptrs;
  g->gt.source_case = OSSEG__WIRE__GROUND_TRUTH__SOURCE_RLES;
  g->gt.rles = &g->rles;
  return 1;
}

/* Sends image i in slot s. 0, or -1 when the image failed (reported) and
 * -2 when the connection failed (reported). */
static int send_image(struct run *r, struct slot *s, size_t i) {
  struct seg_options *o = r->o;
  const char *path = r->images.paths[i];
  const char *name = image_base_name(path);
  for (size_t j = 0; j < i; j++)
    if (strcmp(image_base_name(r->images.paths[j]), name) == 0) {
      image_failed(r, i, "another image has the same file name; image_name would repeat");
      return -1;
    }
  char *png = NULL;
  size_t png_len = 0;
  int fd = -1;
  struct stat st;
  struct label_file labels = {0};
  if (o->labels_dir) {
    char msg[sizeof labels.path + 128];
    if (label_file_read(&labels, o->labels_dir, path, msg, sizeof msg) != 0) {
      image_failed(r, i, "%s", msg);
      return -1;
    }
  }
  if (o->use_fd) {
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      int e = fd >= 0 && errno == 0 ? EISDIR : errno;
      if (fd >= 0) close(fd);
      image_failed(r, i, "%s", fd >= 0 ? "not a regular file" : strerror(e));
      label_file_free(&labels);
      return -1;
    }
  } else if (cli_read_file(path, 0, &png, &png_len) != 0) {
    image_failed(r, i, "%s", strerror(errno));
    label_file_free(&labels);
    return -1;
  }
  struct osseg_client_segment seg;
  uint64_t id = osseg_client_next_id(r->client);
  if (o->use_fd)
    osseg_client_segment_fd(&seg, id, (uint64_t)st.st_size, name);
  else
    osseg_client_segment_png(&seg, id, png, png_len, name);
  osseg_client_segment_set_models(&seg, (const char *const *)o->models, o->nmodels);
  if (o->vote >= 0) osseg_client_segment_set_vote(&seg, o->vote, o->vote_threshold);
  if (o->has_threshold) {
    seg.seg.has_threshold = 1;
    seg.seg.threshold = o->threshold;
  }
  Osseg__Wire__ClassThreshold cts[SEG_MAX_CLASSES], *ctp[SEG_MAX_CLASSES];
  for (size_t k = 0; k < o->nct; k++) {
    osseg__wire__class_threshold__init(&cts[k]);
    cts[k].name = o->ct_names[k];
    cts[k].threshold = o->ct_values[k];
    ctp[k] = &cts[k];
  }
  seg.seg.n_class_thresholds = o->nct;
  seg.seg.class_thresholds = ctp;
  seg.seg.n_classes = o->nclasses;
  seg.seg.classes = o->classes;
  seg.seg.has_priority = 1;
  seg.seg.priority = o->priority ? OSSEG__WIRE__PRIORITY__PRIORITY_BATCH
                                 : OSSEG__WIRE__PRIORITY__PRIORITY_INTERACTIVE;
  if (o->deadline_ms) {
    seg.seg.has_deadline_ms = 1;
    seg.seg.deadline_ms = o->deadline_ms;
  }
  struct gt_msg *g = NULL;
  int rc = 0;
  if (o->gt_path) {
    g = calloc(1, sizeof *g);
    int has = g ? gt_msg_build(r, name, g) : -1;
    if (has < 0) rc = -3;
    else if (has) seg.seg.ground_truth = &g->gt;
  }
  if (labels.text) osseg_client_segment_set_label_json(&seg, labels.text);
  /* The round trip runs from here (the request about to go out) to its
   * Done: the socket both ways, every ClassMask frame read, as a client
   * sees it. */
  uint64_t sent_ns = now_ns();
  if (rc == 0) rc = osseg_client_send(r->client, &seg.req, fd);
  if (g) gt_msg_free(g);
  free(g);
  label_file_free(&labels);
  free(png);
  if (fd >= 0) close(fd);
  if (rc == -3) {
    image_failed(r, i, "out of memory");
    return -1;
  }
  if (rc == OSSEG_CLIENT_EINVAL || rc == OSSEG_CLIENT_ENOMEM) {
    image_failed(r, i, "%s", osseg_client_message(r->client));
    return -1;
  }
  if (rc) {
    progress_clear(r);
    cli_error(r->cmd, "%s: sending %s: %s", o->socket, path, osseg_client_message(r->client));
    return -2;
  }
  s->busy = 1;
  s->id = id;
  s->image = i;
  s->rows.len = 0;
  s->has_dice = 0;
  memset(s->dice_has, 0, sizeof s->dice_has);
  s->sent_ns = sent_ns;
  return 0;
}

/* Writes mask PNGs of one image into --png-dir from its CSV rows' RLE. */
static int write_pngs(struct run *r, const char *image, const Osseg__Wire__ClassMask *m) {
  char path[4096];
  int len = snprintf(path, sizeof path, "%s/%s.%s.png", r->o->png_dir, image, m->name);
  if (len < 0 || (size_t)len >= sizeof path || strchr(m->name, '/')) return -1;
  struct osseg_runs runs = {0};
  struct osseg_image img = {0};
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  const char *rle = m->rle ? m->rle : "";
  int rc = osseg_image_init(&img, m->width, m->height, 1, 8);
  if (rc == 0)
    rc = osseg_rle_parse(rle, strlen(rle), (uint64_t)m->width * m->height, &runs, &diag);
  if (rc == 0) {
    for (size_t k = 0; k < runs.n; k++) memset(img.data + runs.v[k].start, 255, runs.v[k].len);
    rc = osseg_png_encode_file(path, &img, 6, &diag);
  }
  if (rc) {
    progress_clear(r);
    cli_error(r->cmd, "%s: %s", path, diag.message[0] ? diag.message : osseg_strerror(rc));
  }
  osseg_image_free(&img);
  osseg_runs_free(&runs);
  return rc ? -1 : 0;
}

static int on_class_mask(struct run *r, struct slot *s, const Osseg__Wire__ClassMask *m) {
  const char *image = image_base_name(r->images.paths[s->image]);
  const char *rle = m->rle ? m->rle : "";
  size_t ilen = strlen(image), clen = strlen(m->name), rlen = strlen(rle);
  if (buf_reserve(&s->rows, osseg_csv_field_bound(ilen) + osseg_csv_field_bound(clen) + rlen + 3))
    return -1;
  char *p = s->rows.data + s->rows.len;
  p = osseg_csv_put_field(p, image, ilen);
  *p++ = ',';
  p = osseg_csv_put_field(p, m->name, clen);
  *p++ = ',';
  memcpy(p, rle, rlen);
  p += rlen;
  *p++ = '\n';
  s->rows.len = (size_t)(p - s->rows.data);
  if (r->o->png_dir && write_pngs(r, image, m) != 0) return -2;
  return 0;
}

static int write_rows(struct run *r, const struct buf *rows) {
  if (r->writer) return osseg_csv_write_raw(r->writer, rows->data, rows->len);
  size_t off = 0;
  while (off < rows->len) {
    ssize_t n = write(r->append_fd, rows->data + off, rows->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    off += (size_t)n;
  }
  return 0;
}

/* Writes the rows of finished images in the order of the image list (as
 * osseg predict does, whatever order the answers came in) and frees their
 * slots; stops at the first image still in the daemon. */
static void flush_rows(struct run *r, struct slot *slots, size_t nslots, size_t sent) {
  while (r->next_write < sent) {
    struct slot *s = NULL;
    for (size_t k = 0; k < nslots && !s; k++)
      if (slots[k].busy && slots[k].image == r->next_write) s = &slots[k];
    if (s && !s->finished) return; /* still in the daemon */
    if (s) {
      if (write_rows(r, &s->rows) != 0) {
        r->done--;
        image_failed(r, s->image, "cannot write its rows to %s: %s", r->o->output,
                     strerror(errno));
      }
      s->busy = s->finished = 0;
    }
    r->next_write++;
  }
}

static void on_done(struct run *r, struct slot *s, const Osseg__Wire__Done *d) {
  const char *path = r->images.paths[s->image];
  const char *name = image_base_name(path);
  s->finished = 1;
  r->done++;
  if (s->has_dice)
    for (size_t c = 0; c < SEG_MAX_CLASSES; c++)
      if (s->dice_has[c]) {
        r->dice_sum[c] += s->dice[c];
        r->dice_count[c]++;
      }
  double inference = 0;
  for (size_t k = 0; k < d->n_inference; k++) inference += d->inference[k]->ms;
  if (r->o->json) {
    printf("{\"image\":");
    client_json_string(stdout, name);
    printf(",\"status\":\"ok\",\"width\":%u,\"height\":%u,\"queue_ms\":%.3f,\"decode_ms\":%.3f,"
           "\"preprocess_ms\":%.3f,\"inference_ms\":%.3f,\"inference\":[",
           d->width, d->height, d->queue_ms, d->decode_ms, d->preprocess_ms, inference);
    for (size_t k = 0; k < d->n_inference; k++) {
      printf("%s{\"model\":", k ? "," : "");
      client_json_string(stdout, d->inference[k]->model);
      printf(",\"ms\":%.3f}", d->inference[k]->ms);
    }
    printf("],\"postprocess_ms\":%.3f,\"total_ms\":%.3f,\"round_trip_ms\":%.3f",
           d->postprocess_ms, d->total_ms, (double)(now_ns() - s->sent_ns) / 1e6);
    if (s->has_dice) printf(",\"dice\":%.9g", s->dice_mean);
    printf("}\n");
    fflush(stdout);
  } else if (!r->o->progress) {
    char dice[32] = "";
    if (s->has_dice) snprintf(dice, sizeof dice, ", Dice %.4f", s->dice_mean);
    fprintf(stderr,
            "osseg %s: %s: %.1f ms (queue %.1f, decode %.1f, preprocess %.1f, inference %.1f, "
            "postprocess %.1f)%s\n",
            r->cmd, name, d->total_ms, d->queue_ms, d->decode_ms, d->preprocess_ms, inference,
            d->postprocess_ms, dice);
  }
  progress_show(r);
}

static int abandon(struct run *r, uint64_t id) {
  if (r->nabandoned == r->abandoned_cap) {
    size_t cap = r->abandoned_cap ? 2 * r->abandoned_cap : 8;
    uint64_t *a = realloc(r->abandoned, cap * sizeof *a);
    if (!a) return -1;
    r->abandoned = a;
    r->abandoned_cap = cap;
  }
  r->abandoned[r->nabandoned++] = id;
  return 0;
}

/* Whether resp belongs to an abandoned id; forgets the id at its final
 * response (Done or Error). */
static int abandoned_response(struct run *r, const Osseg__Wire__Response *resp) {
  for (size_t k = 0; k < r->nabandoned; k++) {
    if (r->abandoned[k] != resp->id) continue;
    if (resp->kind_case == OSSEG__WIRE__RESPONSE__KIND_DONE ||
        resp->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR)
      r->abandoned[k] = r->abandoned[--r->nabandoned];
    return 1;
  }
  return 0;
}

/* Gives up on the request of slot s: cancels it in the daemon and
 * remembers both ids, so that what still comes for them is dropped
 * quietly. A Cancel that cannot be sent is left to the connection's end. */
static void cancel_slot(struct run *r, struct slot *s) {
  uint64_t cancel_id = 0;
  if (abandon(r, s->id) != 0) return; /* its answers are then reported as unknown */
  if (osseg_client_cancel(r->client, s->id, &cancel_id) == 0) abandon(r, cancel_id);
}

static struct slot *find_slot(struct slot *slots, size_t n, uint64_t id) {
  for (size_t k = 0; k < n; k++)
    if (slots[k].busy && slots[k].id == id) return &slots[k];
  return NULL;
}

/* Handles one response. 0, or -2 when the stream makes no sense any more
 * (reported). */
static int on_response(struct run *r, struct slot *slots, size_t nslots,
                       const Osseg__Wire__Response *resp) {
  if (abandoned_response(r, resp)) return 0;
  struct slot *s = find_slot(slots, nslots, resp->id);
  if (s && s->finished) s = NULL; /* its request has ended */
  if (!s) {
    /* An answer to a request that has ended (or never was): not ours. */
    progress_clear(r);
    cli_error(r->cmd, "%s: response for unknown request id %llu ignored", r->o->socket,
              (unsigned long long)resp->id);
    return 0;
  }
  int rc;
  switch (resp->kind_case) {
    case OSSEG__WIRE__RESPONSE__KIND_CLASS_MASK:
      rc = on_class_mask(r, s, resp->class_mask);
      if (rc) {
        /* The rest of its responses are still coming; cancel, and fail the
         * image now. Its later responses and the Cancel's acknowledgement
         * are dropped without a word. */
        cancel_slot(r, s);
        if (rc == -1) image_failed(r, s->image, "out of memory");
        else image_failed(r, s->image, "cannot write its mask PNG");
        s->busy = 0;
      }
      return 0;
    case OSSEG__WIRE__RESPONSE__KIND_DICE: {
      const Osseg__Wire__DiceReport *d = resp->dice;
      s->has_dice = 1;
      s->dice_mean = d->mean;
      for (size_t k = 0; k < d->n_classes; k++)
        if (d->classes[k]->index < SEG_MAX_CLASSES) {
          s->dice[d->classes[k]->index] = d->classes[k]->dice;
          s->dice_has[d->classes[k]->index] = 1;
        }
      return 0;
    }
    case OSSEG__WIRE__RESPONSE__KIND_DONE:
      on_done(r, s, resp->done);
      return 0;
    case OSSEG__WIRE__RESPONSE__KIND_ERROR:
      image_failed(r, s->image, "daemon error %s: %s",
                   osseg_client_error_code_name(resp->error->code), resp->error->message);
      s->busy = 0;
      return 0;
    default:
      image_failed(r, s->image, "unexpected response kind %d to a Segment request",
                   (int)resp->kind_case);
      s->busy = 0;
      return 0;
  }
}

/* -------------------------------------------------------------- resuming --- */

/* batch: reads OUT.csv if it exists, marks the images complete in it (as
 * many rows as the request gives classes, in one run of rows), rewrites it
 * without incomplete images when there are any (an interrupted write), and
 * opens it for appending. 0 or -1 (reported). */
static int open_append(struct run *r, size_t expected) {
  const char *path = r->o->output;
  char *data = NULL;
  size_t size = 0;
  int exists = cli_read_file(path, 0, &data, &size) == 0;
  if (!exists && errno != ENOENT) {
    cli_error(r->cmd, "%s: %s", path, strerror(errno));
    return -1;
  }
  int rewrite = 0;
  struct osseg_csv csv = {0};
  struct csv_index done_ix = {0};
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (exists && size > 0) {
    /* A last line without its newline was cut short by an interruption. */
    size_t keep = size;
    if (data[size - 1] != '\n') {
      while (keep > 0 && data[keep - 1] != '\n') keep--;
      rewrite = 1;
    }
    if (keep == 0) {
      rewrite = 1; /* not even a complete header */
    } else if (osseg_csv_parse(&csv, path, data, keep, NULL, &diag) != 0) {
      cli_error(r->cmd, "%s (not resuming into a file that is not a prediction CSV)",
                diag.message);
      free(data);
      return -1;
    }
    if (csv_index_init(&done_ix, CSV_KEY_IMAGE, csv.nrows / (expected ? expected : 1) + 1)) {
      cli_error(r->cmd, "out of memory");
      osseg_csv_close(&csv);
      free(data);
      return -1;
    }
    /* Runs of rows of one image; complete = `expected` rows. */
    for (size_t i = 0; i < csv.nrows;) {
      size_t j = i + 1;
      while (j < csv.nrows && csv.rows[j].image_len == csv.rows[i].image_len &&
             memcmp(csv.rows[j].image, csv.rows[i].image, csv.rows[i].image_len) == 0)
        j++;
      if (expected == 0 || j - i == expected)
        csv_index_insert(&done_ix, &csv.rows[i], i);
      else
        rewrite = 1;
      i = j;
    }
  } else {
    rewrite = 1; /* new or empty: write the header */
  }
  int rc = 0;
  if (rewrite) {
    struct osseg_csv_writer *w = NULL;
    rc = osseg_csv_writer_open(&w, path, &diag);
    for (size_t i = 0; rc == 0 && i < csv.nrows; i++) {
      const struct osseg_csv_row *row = &csv.rows[i];
      size_t found = csv_index_find(&done_ix, csv_index_hash(row->image, row->image_len, "", 0),
                                    row->image, row->image_len, "", 0);
      if (found == CSV_INDEX_NONE) continue;
      rc = osseg_csv_write_row(w, row->image, row->image_len, row->cls, row->cls_len, row->rle,
                               row->rle_len);
    }
    if (rc == 0) {
      rc = osseg_csv_writer_close(w, &diag);
    } else {
      osseg_csv_writer_abort(w);
    }
    w = NULL;
    if (rc) cli_error(r->cmd, "%s", diag.message[0] ? diag.message : osseg_strerror(rc));
  }
  if (rc == 0) {
    for (size_t i = 0; i < r->images.n; i++) {
      const char *name = image_base_name(r->images.paths[i]);
      size_t len = strlen(name);
      if (done_ix.slots &&
          csv_index_find(&done_ix, csv_index_hash(name, len, "", 0), name, len, "", 0) !=
              CSV_INDEX_NONE) {
        r->skip[i] = 1;
        r->skipped++;
      }
    }
    r->append_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (r->append_fd < 0) {
      cli_error(r->cmd, "%s: %s", path, strerror(errno));
      rc = -1;
    }
  }
  csv_index_free(&done_ix);
  osseg_csv_close(&csv);
  free(data);
  return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ run --- */

/* Asks for the models' class lists: the names the ground truth is looked up
 * by, and the row count of a complete image when resuming. */
static int fetch_classes(struct run *r) {
  uint64_t id;
  Osseg__Wire__Response *resp = NULL;
  int rc = osseg_client_list_models(r->client, &id);
  if (rc == 0) rc = osseg_client_recv(r->client, &resp, 60000);
  if (rc) {
    cli_error(r->cmd, "%s: asking for the models: %s", r->o->socket,
              osseg_client_message(r->client));
    return -1;
  }
  if (resp->id != id || resp->kind_case != OSSEG__WIRE__RESPONSE__KIND_MODELS) {
    if (resp->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR)
      cli_error(r->cmd, "%s: asking for the models: daemon error %s: %s", r->o->socket,
                osseg_client_error_code_name(resp->error->code), resp->error->message);
    else
      cli_error(r->cmd, "%s: unexpected answer to ListModels", r->o->socket);
    osseg__wire__response__free_unpacked(resp, NULL);
    return -1;
  }
  r->models_resp = resp;
  if (r->o->nclasses) {
    r->class_names = r->o->classes;
    r->nclass_names = r->o->nclasses;
    return 0;
  }
  for (size_t k = 0; k < resp->models->n_models; k++)
    if (strcmp(resp->models->models[k]->name, r->o->models[0]) == 0) {
      r->class_names = resp->models->models[k]->classes;
      r->nclass_names = resp->models->models[k]->n_classes;
      return 0;
    }
  cli_error(r->cmd, "%s: the daemon has no model '%s'", r->o->socket, r->o->models[0]);
  return -1;
}

int seg_run(struct seg_options *o) {
  struct run r = {.o = o, .cmd = o->cmd, .append_fd = -1};
  int status = CLI_FAILED;
  struct slot *slots = NULL;
  char err[OSSEG_CLIENT_MSG_SIZE];

  for (size_t i = 0; i < o->ninputs; i++)
    if (image_list_add(&r.images, r.cmd, o->inputs[i]) != 0) goto out;
  if (r.images.n == 0) goto out;
  if (o->png_dir && mkdir(o->png_dir, 0777) != 0 && errno != EEXIST) {
    cli_error(r.cmd, "%s: cannot create the PNG directory: %s", o->png_dir, strerror(errno));
    goto out;
  }
  if (o->gt_path) {
    char *p = (char *)o->gt_path;
    if (csv_input_load_all(r.cmd, &p, 1, 1, &r.gt, &r.gt_index) != 0) goto out;
  }
  if (osseg_client_connect(&r.client, o->socket, CLIENT_CONNECT_TIMEOUT_MS, err) != 0) {
    cli_error(r.cmd, "%s", err);
    goto out;
  }
  if ((o->gt_path || o->resume) && fetch_classes(&r) != 0) goto out;
  r.skip = calloc(r.images.n, 1);
  slots = calloc(o->in_flight, sizeof *slots);
  if (!r.skip || !slots) {
    cli_error(r.cmd, "out of memory");
    goto out;
  }
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (o->resume) {
    if (open_append(&r, r.nclass_names) != 0) goto out;
  } else if (osseg_csv_writer_open(&r.writer, o->output, &diag) != 0) {
    cli_error(r.cmd, "%s", diag.message);
    goto out;
  }
  r.to_do = r.images.n - r.skipped;
  if (r.skipped && !o->json)
    fprintf(stderr, "osseg %s: %zu of %zu image(s) already in %s, skipped\n", r.cmd, r.skipped,
            r.images.n, o->output);
  r.t0_ns = now_ns();
  progress_show(&r);

  size_t next = 0, busy = 0;
  int broken = 0;
  for (;;) {
    while (!broken && busy < o->in_flight && next < r.images.n) {
      size_t i = next++;
      if (r.skip[i]) continue;
      struct slot *s = NULL;
      for (size_t k = 0; k < o->in_flight && !s; k++)
        if (!slots[k].busy) s = &slots[k];
      int rc = send_image(&r, s, i);
      if (rc == -2) broken = 1;
      if (rc == 0) busy++;
    }
    if (busy == 0 || broken) break;
    Osseg__Wire__Response *resp = NULL;
    int rc = osseg_client_recv(r.client, &resp, -1);
    if (rc) {
      progress_clear(&r);
      cli_error(r.cmd, "%s: %s", o->socket, osseg_client_message(r.client));
      broken = 1;
      break;
    }
    on_response(&r, slots, o->in_flight, resp);
    osseg__wire__response__free_unpacked(resp, NULL);
    flush_rows(&r, slots, o->in_flight, next);
    busy = 0;
    for (size_t k = 0; k < o->in_flight; k++) busy += slots[k].busy;
  }
  /* After a connection failure, every image not finished has failed; the
   * finished ones are still written. */
  if (broken) {
    for (size_t k = 0; k < o->in_flight; k++)
      if (slots[k].busy && !slots[k].finished) {
        image_failed(&r, slots[k].image, "no answer: the connection to the daemon failed");
        slots[k].busy = 0;
      }
    flush_rows(&r, slots, o->in_flight, next);
    for (; next < r.images.n; next++)
      if (!r.skip[next]) image_failed(&r, next, "not sent: the connection to the daemon failed");
  }
  progress_clear(&r);
  if (o->progress)
    fprintf(stderr, "osseg %s: %zu image(s) in %.1f s\n", r.cmd, r.done + r.failed,
            (double)(now_ns() - r.t0_ns) / 1e9);

  if (r.writer) {
    int rc = osseg_csv_writer_close(r.writer, &diag);
    r.writer = NULL;
    if (rc) {
      cli_error(r.cmd, "%s", diag.message);
      goto out;
    }
  } else if (r.append_fd >= 0) {
    int rc = fsync(r.append_fd);
    if (rc != 0 && errno != EINVAL && errno != EROFS) {
      cli_error(r.cmd, "%s: %s", o->output, strerror(errno));
      goto out;
    }
  }
  double total = 0;
  size_t scored = 0;
  for (size_t c = 0; c < SEG_MAX_CLASSES; c++)
    if (r.dice_count[c]) {
      total += r.dice_sum[c] / (double)r.dice_count[c];
      scored++;
    }
  if ((o->gt_path || o->labels_dir) && scored)
    fprintf(stderr, "osseg %s: mean Dice %.6f over %zu class(es) against %s\n", r.cmd,
            total / (double)scored, scored, o->gt_path ? o->gt_path : o->labels_dir);
  if (r.failed)
    cli_error(r.cmd, "%zu of %zu image(s) failed; %s has the rows of the others", r.failed,
              r.to_do, o->output);
  status = r.failed ? CLI_FAILED : CLI_OK;

out:
  osseg_csv_writer_abort(r.writer);
  if (r.append_fd >= 0) close(r.append_fd);
  if (slots)
    for (size_t k = 0; k < o->in_flight; k++) free(slots[k].rows.data);
  free(slots);
  free(r.skip);
  free(r.abandoned);
  osseg_client_close(r.client);
  if (r.models_resp) osseg__wire__response__free_unpacked(r.models_resp, NULL);
  csv_index_free(&r.gt_index);
  osseg_csv_close(&r.gt);
  image_list_free(&r.images);
  return status;
}

/* --------------------------------------------------------- simple asks --- */

int client_ask(const char *cmd, const char *socket,
               int (*send_fn)(osseg_client_t *c, uint64_t *id), int timeout_ms,
               Osseg__Wire__Response **resp) {
  char err[OSSEG_CLIENT_MSG_SIZE];
  osseg_client_t *c = NULL;
  *resp = NULL;
  if (osseg_client_connect(&c, socket, CLIENT_CONNECT_TIMEOUT_MS, err) != 0) {
    cli_error(cmd, "%s", err);
    return CLI_FAILED;
  }
  uint64_t id;
  int rc = send_fn(c, &id);
  Osseg__Wire__Response *r = NULL;
  if (rc == 0) rc = osseg_client_recv(c, &r, timeout_ms);
  if (rc) {
    cli_error(cmd, "%s: %s", socket, osseg_client_message(c));
    osseg_client_close(c);
    return CLI_FAILED;
  }
  osseg_client_close(c);
  if (r->kind_case == OSSEG__WIRE__RESPONSE__KIND_ERROR) {
    cli_error(cmd, "%s: daemon error %s: %s", socket,
              osseg_client_error_code_name(r->error->code), r->error->message);
    osseg__wire__response__free_unpacked(r, NULL);
    return CLI_FAILED;
  }
  if (r->id != id) {
    cli_error(cmd, "%s: answer for request %llu, expected %llu", socket,
              (unsigned long long)r->id, (unsigned long long)id);
    osseg__wire__response__free_unpacked(r, NULL);
    return CLI_FAILED;
  }
  *resp = r;
  return 0;
}
