/* osseg view: prints the file:// URL of the web viewer (clients/viewer).
 *
 * The viewer is a static page that works from file:// (classic scripts and
 * a Blob worker, see clients/viewer/core.js), so no server is needed: this
 * command only finds the page and prints its URL, with the files given on
 * the command line as a hint in the URL's fragment (a page cannot open
 * local files by itself; the user picks or drops them) and listed below it.
 *
 * The page is looked for, in order, at
 *   1. BINDIR/../share/osseg/viewer/index.html beside the running osseg
 *      (the layout cmake --install makes), then
 *   2. the source tree the tool was built from (OSSEG_VIEWER_SOURCE_DIR). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"

#define CMD "view"

#ifndef OSSEG_VIEWER_SOURCE_DIR
#define OSSEG_VIEWER_SOURCE_DIR ""
#endif

static const char usage_text[] =
    "usage: osseg view [DIR|FILE ...]\n"
    "\n"
    "Prints the file:// URL of the osseg web viewer, a static page that\n"
    "opens X-ray PNGs, label JSONs, ground-truth and prediction CSVs chosen in\n"
    "it or dropped on it, in the browser only (nothing is sent anywhere).\n"
    "The DIRs and FILEs given are checked, listed with their absolute paths\n"
    "for the file dialog and put in the URL's fragment as a reminder: a page\n"
    "cannot open local files by itself.\n"
    "\n"
    "      --dir         print only the viewer's folder\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0 done, 1 viewer not found or a file missing, 2 usage error.\n";

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The viewer folder into out (PATH_MAX bytes), or -1. */
static int find_viewer(char *out) {
  char exe[PATH_MAX], cand[PATH_MAX + 64];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      snprintf(cand, sizeof cand, "%s/../share/osseg/viewer/index.html", exe);
      if (is_file(cand) && realpath(cand, out)) {
        *strrchr(out, '/') = '\0';
        return 0;
      }
    }
  }
  if (OSSEG_VIEWER_SOURCE_DIR[0]) {
    snprintf(cand, sizeof cand, "%s/index.html", OSSEG_VIEWER_SOURCE_DIR);
    if (is_file(cand) && realpath(cand, out)) {
      *strrchr(out, '/') = '\0';
      return 0;
    }
  }
  return -1;
}

/* Writes s percent-encoded for a URL path or fragment ('/' kept). */
static void put_url(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        strchr("/-._~", c))
      putchar(c);
    else
      printf("%%%c%c", hex[c >> 4], hex[c & 15]);
  }
}

int osseg_cmd_view(int argc, char **argv) {
  static const struct option opts[] = {{"dir", no_argument, NULL, 'd'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int only_dir = 0;
  opterr = 0;
  optind = 1;
  int o;
  while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (o) {
      case 'd':
        only_dir = 1;
        break;
      case 'h':
        fputs(usage_text, stdout);
        return CLI_OK;
      default:
        cli_error(CMD, "unknown option '%s' (see 'osseg view --help')", argv[optind - 1]);
        return CLI_USAGE;
    }
  }
  char dir[PATH_MAX];
  if (find_viewer(dir) != 0) {
    cli_error(CMD, "viewer not found (looked for share/osseg/viewer/index.html beside the "
                   "osseg binary and for %s/index.html)",
              OSSEG_VIEWER_SOURCE_DIR[0] ? OSSEG_VIEWER_SOURCE_DIR : "the source tree");
    return CLI_FAILED;
  }
  if (only_dir) {
    printf("%s\n", dir);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
  }
  int nfiles = argc - optind;
  char (*abs)[PATH_MAX] = nfiles ? calloc((size_t)nfiles, sizeof *abs) : NULL;
  if (nfiles && !abs) {
    cli_error(CMD, "out of memory");
    return CLI_FAILED;
  }
  for (int i = 0; i < nfiles; i++) {
    if (!realpath(argv[optind + i], abs[i])) {
      cli_error(CMD, "%s: %s", argv[optind + i], strerror(errno));
      free(abs);
      return CLI_FAILED;
    }
  }
  printf("file://");
  put_url(dir);
  printf("/index.html");
  for (int i = 0; i < nfiles; i++) {
    putchar(i ? '|' : '#');
    put_url(abs[i]);
  }
  putchar('\n');
  if (nfiles) {
    printf("\nOpen the URL in a browser, then choose (\"Open files…\" or \"Open folder…\")\n"
           "or drop on the page:\n");
    for (int i = 0; i < nfiles; i++) {
      struct stat st;
      int isdir = stat(abs[i], &st) == 0 && S_ISDIR(st.st_mode);
      printf("  %s%s\n", abs[i], isdir ? "/ (its .png, .json and .csv files)" : "");
    }
  }
  free(abs);
  return fflush(stdout) == 0 ? CLI_OK : CLI_FAILED;
}
