/* Replays the request fuzzer's corpus (tests/data/daemon/fuzz_corpus) as an
 * ordinary test, under ASan in CI: every input must be handled without a
 * crash or leak, and the seed files written by
 * tools/fixtures/make_daemon_fuzz_corpus.py must do what their names say, so
 * the corpus keeps covering the paths it was made for:
 *   valid_*  every frame accepted (Segments validated), no Error;
 *   bad_*    at least one Error, the connection kept;
 *   close_*  the connection closed (close_truncated_*: left waiting inside
 *            a frame).
 * A bytewise_ prefix is the same stream fed one byte at a time. Files with
 * other names (inputs libFuzzer found) are only replayed. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fuzz_request.h"
#include "test_support.h"

static int starts(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_corpus(void **state) {
  (void)state;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/data/daemon/fuzz_corpus", test_source_dir());
  DIR *d = opendir(dir);
  assert_non_null(d);
  unsigned files = 0, valid = 0, bad = 0, closing = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    size_t size = 0;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    char *data = test_read_file(path, &size);
    if (!data) fail_msg("%s: cannot read", path);
    struct fuzz_request_result r;
    fuzz_request_run((const uint8_t *)data, size, &r);
    free(data);
    files++;
    const char *name = e->d_name;
    if (starts(name, "bytewise_")) name += strlen("bytewise_");
    if (starts(name, "valid_")) {
      valid++;
      if (r.errors || r.closed || r.partial || r.requests == 0)
        fail_msg("%s: %u requests, %u errors, closed %d, partial %d", e->d_name, r.requests,
                 r.errors, r.closed, r.partial);
      if (strstr(name, "segment") && r.segments == 0) fail_msg("%s: no Segment validated", e->d_name);
    } else if (starts(name, "bad_")) {
      bad++;
      if (r.errors == 0 || r.closed) fail_msg("%s: %u errors, closed %d", e->d_name, r.errors, r.closed);
    } else if (starts(name, "close_")) {
      closing++;
      int want_partial = starts(name, "close_truncated_");
      if (want_partial ? !r.partial || r.closed : !r.closed)
        fail_msg("%s: closed %d, partial %d", e->d_name, r.closed, r.partial);
    }
  }
  closedir(d);
  print_message("replayed %u inputs (%u valid, %u bad, %u closing)\n", files, valid, bad, closing);
  assert_true(valid >= 10 && bad >= 10 && closing >= 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_corpus)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
