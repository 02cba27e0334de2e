/* osseg segment: segment images with ossegd's models (over its socket) into
 * the submission CSV `osseg predict` writes. The work is in
 * client_segment.c, shared with osseg batch. */
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "client_segment.h"
#include "commands.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: osseg segment --socket SOCK --model M[,M2...] -o OUT.csv [options]\n"
          "                     IMAGE.png|DIR ...\n"
          "\n"
          "Sends each image to the ossegd daemon listening on SOCK and writes one row\n"
          "per (image, class) to OUT.csv (image_name,class,rle; image_name is the file\n"
          "name), as `osseg predict` does in-process. A DIR argument means every *.png\n"
          "in it, in name order. An image the daemon refuses is reported with the\n"
          "daemon's error code and skipped; the exit status is then 1.\n"
          "\n"
          "options:\n"
          "  --socket PATH          the daemon's Unix socket (required)\n"
          "  --model M[,M2...]      model names registered in the daemon (up to %d;\n"
          "                         several are combined by --vote)\n"
          "  --vote hard[:T]|soft   hard voting keeps pixels with more than T votes\n"
          "                         (default: models / 2 rounded down); soft averages\n"
          "                         probabilities\n"
          "  --threshold T          probability threshold in (0, 1), default each\n"
          "                         model's own in the daemon (0.5 unless configured)\n"
          "  --class-threshold C=T  threshold for class C only (repeatable)\n"
          "  --classes a,b,...      produce only these classes\n"
          "  --gt GT.csv            ground truth: Dice per image and the mean over all\n"
          "  --labels DIR           ground truth from the dataset's label JSON instead:\n"
          "                         DIR/X.json for image X.png (a missing file fails\n"
          "                         the image); every class is scored\n"
          "  --png-dir DIR          also write DIR/<image>.<class>.png masks\n"
          "  --priority P           interactive (default) or batch\n"
          "  --deadline-ms N        give up on an image after N ms in the daemon\n"
          "  --in-flight K          requests in flight on the connection, 1..64\n"
          "                         (default 2)\n"
          "  --fd                   pass each image as a file descriptor instead of\n"
          "                         sending its bytes\n"
          "  --json                 one JSON object per image on stdout, with timings\n"
          "  -o, --output FILE      the CSV to write (required)\n",
          SEG_MAX_MODELS);
}

int osseg_cmd_segment(int argc, char **argv) {
  struct seg_options o;
  memset(&o, 0, sizeof o);
  o.cmd = "segment";
  int rc = seg_parse_args(&o, argc, argv, usage);
  if (rc >= 0) return rc;
  return seg_run(&o);
}
