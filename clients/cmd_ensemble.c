/* osseg ensemble: hard-voting ensemble of prediction CSVs.
 *
 * Semantics of the competition's csv_ensemble: for each row of the first CSV,
 * in its order, the K masks of that (image, class) are summed and pixels
 * whose count is > T are kept. Unlike the original script, which decoded
 * every mask to 2048x2048 pixels and keyed rows on "image_class" (wrong for
 * image names containing '_'), this works on run lists throughout and keys
 * on the exact (image, class) pair.
 *
 * Speed: the CSVs are mapped and indexed one file per thread; the rows of
 * the first one are cut into chunks that the threads parse, vote and format
 * into chunk buffers with reused run lists (no allocation per row), written
 * in row order as they complete (see CHUNKS_PER_THREAD) through the CSV
 * writer: a regular OUT.csv is replaced (from a temporary file) only when
 * everything succeeded; a device, FIFO or symlink is written through.
 *
 * Reporting: a row missing from another file is counted (one warning per
 * file); an empty rle is the format's empty mask and is not reported. */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "csv_index.h"
#include "csv_input.h"
#include "osseg_pipeline.h"

#define CMD "ensemble"
/* At most OSSEG_MAX_MODELS input CSVs: the same "at most 8 models per
 * ensemble" as `osseg predict --model` (README, Limits). */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define MAX_THREADS 64

static const char usage_text[] =
    "usage: osseg ensemble [--threshold T] [--height H --width W] [--threads N]\n"
    "                      -o OUT.csv A.csv B.csv [C.csv ...]\n"
    "\n"
    "Hard-voting ensemble of K prediction CSVs (image_name,class,rle), one per\n"
    "model: 2 <= K <= " STRINGIFY(OSSEG_MAX_MODELS) ", the models per ensemble of osseg predict.\n"
    "For each row of A.csv, in A's order, the masks of that (image, class) in\n"
    "all K files are summed and the pixels voted by more than T files are kept.\n"
    "\n"
    "  -o, --output OUT.csv  where to write the ensemble (a file is replaced only\n"
    "                        when complete; a device or FIFO is written to)\n"
    "  -t, --threshold T     keep pixels whose vote count is > T; T >= 0, may be\n"
    "                        fractional. Default floor(K/2): a strict majority\n"
    "                        (2 of 3, 3 of 4, both of 2)\n"
    "      --height H        image height in pixels (default 2048)\n"
    "      --width W         image width in pixels (default 2048)\n"
    "      --threads N       worker threads (default: one per CPU)\n"
    "  -h, --help            this text\n"
    "\n"
    "A row of A.csv missing from another CSV counts as an empty mask there\n"
    "(one warning per file with the count). Rows of other CSVs that are not in\n"
    "A.csv are checked and ignored (one warning per file).\n"
    "Exit status: 0 done, 1 bad input (\"FILE:LINE: problem\"), 2 usage error.\n";

/* The rows of the first CSV are cut into many more chunks than threads;
 * threads take chunks in order, and whoever finishes a chunk while no one
 * else is writing writes every finished chunk that is next in line. So the
 * write of the output overlaps the voting, the last chunks balance the
 * threads, and chunk buffers are recycled instead of growing one big
 * buffer per thread (fewer fresh pages to fault in). */
#define CHUNKS_PER_THREAD 8

struct chunk {
  size_t begin, end;
  char *buf;
  size_t len, cap;
  int done;
  /* First failure: rc < 0 and the file/row it concerns (row NULL for
   * out-of-memory). */
  int rc;
  size_t err_csv;
  const struct osseg_csv_row *err_row;
  struct osseg_diag diag;
};

struct ctx {
  size_t k;
  struct osseg_csv *csv;
  struct csv_index *ix; /* ix[0] is built for duplicates only */
  unsigned char **used; /* used[i][row], i >= 1: row was voted */
  uint64_t npixels;
  unsigned min_votes;
  struct osseg_csv_writer *w;

  struct chunk *chunks;
  size_t nchunks;
  atomic_size_t next_chunk;
  atomic_int stop; /* a chunk failed: claim no more */

  pthread_mutex_t lock; /* guards the fields below and chunk.done */
  size_t next_write;
  int writing;
  int write_failed;
  char *spare[2 * MAX_THREADS]; /* recycled chunk buffers */
  size_t spare_cap[2 * MAX_THREADS];
  size_t nspare;
};

struct worker {
  struct ctx *ctx;
  size_t missing[OSSEG_MAX_MODELS];
};

static int reserve(struct chunk *ch, size_t extra) {
  if (ch->cap - ch->len >= extra) return 0;
  size_t cap = ch->cap ? ch->cap : 1u << 16;
  while (cap - ch->len < extra) cap *= 2;
  char *b = realloc(ch->buf, cap);
  if (!b) return OSSEG_ENOMEM;
  ch->buf = b;
  ch->cap = cap;
  return 0;
}

/* Votes the rows of one chunk into its buffer. */
static void run_chunk(struct ctx *c, struct worker *wk, struct chunk *ch,
                      struct osseg_runs *in, struct osseg_runs *out) {
  const struct osseg_runs *lists[OSSEG_MAX_MODELS];
  for (size_t i = 0; i < c->k; i++) lists[i] = &in[i];
  /* The output is about as large as the first input. */
  size_t guess = 0;
  for (size_t r = ch->begin; r < ch->end; r++) guess += c->csv[0].rows[r].rle_len + 64;
  if (reserve(ch, guess + 4096) < 0) {
    ch->rc = OSSEG_ENOMEM;
    return;
  }
  uint64_t next_h = 0;
  if (ch->begin < ch->end) {
    const struct osseg_csv_row *a = &c->csv[0].rows[ch->begin];
    next_h = csv_index_hash(a->image, a->image_len, a->cls, a->cls_len);
  }
  for (size_t r = ch->begin; r < ch->end; r++) {
    const struct osseg_csv_row *a = &c->csv[0].rows[r];
    uint64_t h = next_h;
    /* The next row's slots are fetched while this row is voted. */
    if (r + 2 < ch->end) __builtin_prefetch(a[2].image); /* hashed next round */
    if (r + 1 < ch->end) {
      const struct osseg_csv_row *n = a + 1;
      next_h = csv_index_hash(n->image, n->image_len, n->cls, n->cls_len);
      for (size_t i = 1; i < c->k; i++) csv_index_prefetch(&c->ix[i], next_h);
    }
    /* Find the row in every file first and start fetching their texts,
     * so that parsing one overlaps the memory latency of the others. */
    const struct osseg_csv_row *rows[OSSEG_MAX_MODELS];
    rows[0] = a;
    for (size_t i = 1; i < c->k; i++) {
      size_t found = csv_index_find(&c->ix[i], h, a->image, a->image_len, a->cls, a->cls_len);
      rows[i] = found == CSV_INDEX_NONE ? NULL : &c->csv[i].rows[found];
      if (found == CSV_INDEX_NONE) {
        wk->missing[i]++;
        continue;
      }
      c->used[i][found] = 1; /* each row is found by one A row only */
      for (uint32_t off = 0; off < rows[i]->rle_len && off < 512; off += 64)
        __builtin_prefetch(rows[i]->rle + off);
    }
    for (size_t i = 0; i < c->k; i++) {
      const struct osseg_csv_row *row = rows[i];
      in[i].n = 0;
      if (!row) continue;
      int rc = osseg_rle_parse(row->rle, row->rle_len, c->npixels, &in[i], &ch->diag);
      if (rc < 0) {
        ch->rc = rc;
        ch->err_csv = i;
        ch->err_row = row;
        return;
      }
    }
    if (c->min_votes > c->k) {
      out->n = 0; /* nothing can reach the threshold */
    } else {
      int rc = osseg_vote_runs(lists, c->k, c->min_votes, out);
      if (rc < 0) {
        ch->rc = rc;
        return;
      }
    }
    size_t need = osseg_csv_field_bound(a->image_len) + osseg_csv_field_bound(a->cls_len) +
                  osseg_rle_format_bound(out->n) + 3;
    if (reserve(ch, need) < 0) {
      ch->rc = OSSEG_ENOMEM;
      return;
    }
    char *p = osseg_csv_put_field(ch->buf + ch->len, a->image, a->image_len);
    *p++ = ',';
    p = osseg_csv_put_field(p, a->cls, a->cls_len);
    *p++ = ',';
    p += osseg_rle_format(out->v, out->n, p);
    *p++ = '\n';
    ch->len = (size_t)(p - ch->buf);
  }
}

/* Marks chunk i done and, unless another thread is at it, writes every
 * finished chunk that is next in line (without holding the lock while
 * writing). */
static void finish_chunk(struct ctx *c, size_t i) {
  pthread_mutex_lock(&c->lock);
  c->chunks[i].done = 1;
  if (c->writing) {
    pthread_mutex_unlock(&c->lock);
    return;
  }
  c->writing = 1;
  while (c->next_write < c->nchunks && c->chunks[c->next_write].done) {
    struct chunk *ch = &c->chunks[c->next_write++];
    int failed = c->write_failed || ch->rc < 0;
    pthread_mutex_unlock(&c->lock);
    if (!failed && osseg_csv_write_raw(c->w, ch->buf, ch->len) != 0) failed = 1;
    pthread_mutex_lock(&c->lock);
    if (failed) c->write_failed = 1;
    if (ch->rc == 0 && c->nspare < 2 * MAX_THREADS) {
      c->spare[c->nspare] = ch->buf;
      c->spare_cap[c->nspare++] = ch->cap;
    } else {
      free(ch->buf);
    }
    ch->buf = NULL;
    ch->cap = ch->len = 0;
  }
  c->writing = 0;
  pthread_mutex_unlock(&c->lock);
}

static void *worker_main(void *arg) {
  struct worker *wk = arg;
  struct ctx *c = wk->ctx;
  struct osseg_runs in[OSSEG_MAX_MODELS], out = {0};
  memset(in, 0, sizeof in);
  for (;;) {
    if (atomic_load(&c->stop)) break;
    size_t i = atomic_fetch_add(&c->next_chunk, 1);
    if (i >= c->nchunks) break;
    struct chunk *ch = &c->chunks[i];
    pthread_mutex_lock(&c->lock);
    if (c->nspare) {
      c->nspare--;
      ch->buf = c->spare[c->nspare];
      ch->cap = c->spare_cap[c->nspare];
    }
    pthread_mutex_unlock(&c->lock);
    run_chunk(c, wk, ch, in, &out);
    if (ch->rc < 0) atomic_store(&c->stop, 1);
    finish_chunk(c, i);
  }
  for (size_t i = 0; i < c->k; i++) osseg_runs_free(&in[i]);
  osseg_runs_free(&out);
  return NULL;
}

int osseg_cmd_ensemble(int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"threshold", required_argument, NULL, 't'},
                                       {"height", required_argument, NULL, 'H'},
                                       {"width", required_argument, NULL, 'W'},
                                       {"threads", required_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *out_path = NULL;
  double threshold = -1;
  uint32_t height = 2048, width = 2048, threads = cli_default_threads();
  opterr = 0;
  optind = 1;
  int o;
  while ((o = getopt_long(argc, argv, ":o:t:h", opts, NULL)) != -1) {
    switch (o) {
      case 'o':
        out_path = optarg;
        break;
      case 't':
        if (cli_parse_nonneg_double(optarg, &threshold) != 0) {
          cli_error(CMD, "--threshold: expected a number >= 0, got '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case 'H':
      case 'W':
        if (cli_parse_u32(optarg, 1, OSSEG_MAX_SIDE, o == 'H' ? &height : &width) != 0) {
          cli_error(CMD, "--%s: expected an integer in 1..%u, got '%s'",
                    o == 'H' ? "height" : "width", OSSEG_MAX_SIDE, optarg);
          return CLI_USAGE;
        }
        break;
      case 'j':
        if (cli_parse_u32(optarg, 1, 64, &threads) != 0) {
          cli_error(CMD, "--threads: expected an integer in 1..64, got '%s'", optarg);
          return CLI_USAGE;
        }
        break;
      case 'h':
        fputs(usage_text, stdout);
        return CLI_OK;
      case ':':
        cli_error(CMD, "option '%s' needs a value (see 'osseg ensemble --help')",
                  argv[optind - 1]);
        return CLI_USAGE;
      default:
        cli_error(CMD, "unknown option '%s' (see 'osseg ensemble --help')", argv[optind - 1]);
        return CLI_USAGE;
    }
  }
  size_t k = (size_t)(argc - optind);
  if (!out_path) {
    cli_error(CMD, "no output file: give -o OUT.csv (see 'osseg ensemble --help')");
    return CLI_USAGE;
  }
  if (k < 2 || k > OSSEG_MAX_MODELS) {
    cli_error(CMD, "expected 2 to %d input CSVs (at most %d models per ensemble), got %zu "
              "(see 'osseg ensemble --help')", OSSEG_MAX_MODELS, OSSEG_MAX_MODELS, k);
    return CLI_USAGE;
  }
  char **paths = argv + optind;
  /* count > T  <=>  count >= floor(T) + 1 for integer counts. */
  if (threshold < 0) threshold = (double)(k / 2);
  unsigned min_votes = threshold >= (double)k ? (unsigned)k + 1 : (unsigned)floor(threshold) + 1;
  if (min_votes > k)
    cli_error(CMD, "warning: threshold %g >= %zu inputs: every mask will be empty", threshold,
              k);

  int status = CLI_FAILED;
  struct osseg_csv csv[OSSEG_MAX_MODELS];
  struct csv_index ix[OSSEG_MAX_MODELS];
  unsigned char *used[OSSEG_MAX_MODELS];
  struct worker workers[MAX_THREADS];
  memset(csv, 0, sizeof csv);
  memset(ix, 0, sizeof ix);
  memset(used, 0, sizeof used);
  memset(workers, 0, sizeof workers);
  struct ctx c = {.k = k, .csv = csv, .ix = ix, .used = used,
                  .npixels = (uint64_t)height * width, .min_votes = min_votes};
  pthread_mutex_init(&c.lock, NULL);
  size_t *bounds = NULL;

  /* OSSEG_TIMING=1 prints where the time goes, for benchmarks. */
  const char *timing = getenv("OSSEG_TIMING");
  uint64_t t0 = osseg_now_ns(), t_load, t_vote;
  if (csv_input_load_all(CMD, paths, k, threads, csv, ix) != 0) goto out;
  for (size_t i = 1; i < k; i++) {
    if (!(used[i] = calloc(csv[i].nrows + 1, 1))) {
      cli_error(CMD, "out of memory");
      goto out;
    }
  }
  t_load = osseg_now_ns();
  /* Opened before the work so that an unwritable destination fails fast. */
  struct osseg_diag diag;
  osseg_diag_clear(&diag);
  if (osseg_csv_writer_open(&c.w, out_path, &diag) != 0) {
    cli_error(CMD, "%s", diag.message);
    goto out;
  }

  size_t nrows = csv[0].nrows;
  c.nchunks = (size_t)threads * CHUNKS_PER_THREAD;
  if (c.nchunks > nrows) c.nchunks = nrows ? nrows : 1;
  c.chunks = calloc(c.nchunks, sizeof *c.chunks);
  bounds = calloc(c.nchunks + 1, sizeof *bounds);
  if (!c.chunks || !bounds) {
    cli_error(CMD, "out of memory");
    goto out;
  }
  osseg_csv_split(&csv[0], c.nchunks, bounds);
  for (size_t i = 0; i < c.nchunks; i++) {
    c.chunks[i].begin = bounds[i];
    c.chunks[i].end = bounds[i + 1];
  }
  size_t nworkers = threads < c.nchunks ? threads : c.nchunks;
  for (size_t t = 0; t < nworkers; t++) workers[t].ctx = &c;
  cli_run_jobs(worker_main, workers, sizeof workers[0], nworkers);
  t_vote = osseg_now_ns();

  /* Chunks were claimed in row order and a failure stops only the claiming
   * of later chunks, so the first failed chunk holds the earliest bad row:
   * the same report for any number of threads. */
  for (size_t i = 0; i < c.nchunks; i++) {
    struct chunk *ch = &c.chunks[i];
    if (ch->rc == 0) continue;
    if (ch->err_row)
      csv_input_rle_error(CMD, &csv[ch->err_csv], ch->err_row, &ch->diag);
    else
      cli_error(CMD, "%s", osseg_strerror(ch->rc));
    goto out;
  }
  for (size_t i = 1; i < k; i++) {
    size_t missing = 0, unused = 0;
    for (size_t t = 0; t < nworkers; t++) missing += workers[t].missing[i];
    if (csv_input_check_unused(CMD, &csv[i], used[i], c.npixels, &unused) != 0) goto out;
    if (missing)
      cli_error(CMD, "warning: %s: %zu of the %zu rows of %s are missing; counted as empty masks",
                csv[i].path, missing, nrows, csv[0].path);
    if (unused)
      cli_error(CMD, "warning: %s: %zu rows have no (image, class) in %s; ignored", csv[i].path,
                unused, csv[0].path);
  }
  osseg_diag_clear(&diag);
  struct osseg_csv_writer *closing = c.w;
  c.w = NULL;
  /* A failed write is reported by close, with its reason. */
  if (osseg_csv_writer_close(closing, &diag) != 0) {
    cli_error(CMD, "%s", diag.message);
    goto out;
  }
  status = CLI_OK;
  if (timing && *timing == '1') {
    uint64_t t_end = osseg_now_ns();
    fprintf(stderr,
            "osseg ensemble: timing: load %.1f ms, vote+write %.1f ms (%zu threads), "
            "finish %.1f ms, total %.1f ms\n",
            (double)(t_load - t0) / 1e6, (double)(t_vote - t_load) / 1e6, nworkers,
            (double)(t_end - t_vote) / 1e6, (double)(t_end - t0) / 1e6);
  }
out:
  osseg_csv_writer_abort(c.w);
  for (size_t i = 0; i < c.nchunks && c.chunks; i++) free(c.chunks[i].buf);
  for (size_t i = 0; i < c.nspare; i++) free(c.spare[i]);
  free(c.chunks);
  free(bounds);
  pthread_mutex_destroy(&c.lock);
  for (size_t i = 0; i < k; i++) free(used[i]);
  csv_input_free(k, csv, ix);
  return status;
}
