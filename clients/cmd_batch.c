/* osseg batch: osseg segment over folders, for long runs: a progress line
 * on stderr when it is a terminal, and resumable output (OUT.csv is
 * appended to as images finish; a rerun with the same -o skips the images
 * already complete in it). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "client_segment.h"
#include "commands.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg batch --socket SOCK --model M[,M2...] -o OUT.csv [options]\n"
          "                   DIR|IMAGE.png ...\n"
          "\n"
          "Like osseg segment (same options; see 'osseg segment --help'), for large\n"
          "folders: each image's rows are appended to OUT.csv as soon as the daemon\n"
          "has finished it, so an interrupted run keeps its work, and running the same\n"
          "command again skips the images OUT.csv already has complete (one row per\n"
          "class) and appends the rest. Rows an interruption left incomplete are\n"
          "dropped first. When stderr is a terminal a progress line shows images/s\n"
          "and the time left. Requests go with batch priority unless --priority\n"
          "says otherwise.\n");
}

int osseg_cmd_batch(int argc, char **argv) {
  struct seg_options o;
  memset(&o, 0, sizeof o);
  o.cmd = "batch";
  o.priority = 1;
  int rc = seg_parse_args(&o, argc, argv, usage);
  if (rc >= 0) return rc;
  o.resume = 1;
  o.progress = isatty(STDERR_FILENO) && !o.json;
  return seg_run(&o);
}
