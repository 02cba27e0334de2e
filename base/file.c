/* Read-only file mappings. */
#include "osseg_base.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int osseg__map_file(const char *path, uint64_t max_bytes, void **map, size_t *size,
                     struct osseg_diag *diag) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return osseg__fail(diag, OSSEG_EIO, "%s: not a regular file", path);
  }
  if (st.st_size == 0) {
    close(fd);
    return osseg__fail(diag, OSSEG_EPARSE, "%s: empty file", path);
  }
  if (max_bytes && (uint64_t)st.st_size > max_bytes) {
    close(fd);
    return osseg__fail(diag, OSSEG_ELIMIT, "%s: %lld bytes exceeds the size limit %llu",
                       path, (long long)st.st_size, (unsigned long long)max_bytes);
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return osseg__fail(diag, OSSEG_EIO, "%s: mmap: %s", path, strerror(errno));
  *map = p;
  *size = (size_t)st.st_size;
  return 0;
}

void osseg__unmap_file(void *map, size_t size) {
  if (map) munmap(map, size);
}
