/* Replays a libFuzzer corpus directory through LLVMFuzzerTestOneInput as an
 * ordinary test (zstd's regression_driver.c idea): every file must be handled
 * without a crash; sanitizers in the ASan build catch memory errors. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR|FILE...\n", argv[0]);
    return 2;
  }
  int files = 0;
  for (int a = 1; a < argc; a++) {
    DIR *d = opendir(argv[a]);
    struct dirent *e;
    char path[4096];
    for (;;) {
      if (d) {
        e = readdir(d);
        if (!e) break;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
      } else {
        snprintf(path, sizeof path, "%s", argv[a]);
      }
      FILE *f = fopen(path, "rb");
      if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
      }
      fseek(f, 0, SEEK_END);
      long n = ftell(f);
      rewind(f);
      uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
      size_t got = buf ? fread(buf, 1, (size_t)(n > 0 ? n : 0), f) : 0;
      fclose(f);
      LLVMFuzzerTestOneInput(buf, got);
      free(buf);
      files++;
      if (!d) break;
    }
    if (d) closedir(d);
  }
  printf("replayed %d inputs\n", files);
  return files > 0 ? 0 : 1;
}
