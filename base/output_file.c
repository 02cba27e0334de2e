/* Writing an output file safely: see osseg_output_open in osseg_base.h.
 *
 * The rules come from git's lockfile.c / tempfile.c:
 *   - Only a regular file (or a name where nothing exists yet) is replaced,
 *     and only atomically: the bytes go to a temporary file created in the
 *     same folder with O_CREAT|O_EXCL|O_NOFOLLOW, which is fsync'ed and
 *     renamed over the destination on commit. Readers see the old file or
 *     the whole new one, never a partial write.
 *   - The temporary name has a random part and creation retries on EEXIST,
 *     so nobody can predict it, and O_EXCL|O_NOFOLLOW means a symlink
 *     planted at a name we try is never followed: creation fails and the
 *     next name is tried.
 *   - A device, FIFO or socket is opened and written through: replacing
 *     /dev/null with a regular file, or a FIFO someone reads, would be
 *     wrong. No O_TRUNC, which means nothing for those anyway.
 *   - A symlink as the destination is followed, link by link, and what it
 *     points at decides; the link itself is never replaced, so a symlinked
 *     output keeps being a symlink and its target gets the new bytes.
 * Only the last component of the path is resolved by hand; folders on the
 * way are the kernel's business, as for any open(). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "osseg_base.h"

#define MAX_SYMLINK_HOPS 40
#define MAX_TMP_ATTEMPTS 100
#define RANDOM_CHARS 12
/* Longest part of the destination's name kept in the temporary name, so
 * that ".NAME.tmp-XXXXXXXXXXXX" stays within NAME_MAX (255). */
#define MAX_NAME_IN_TMP 200

static const char *(*name_hook)(void *ctx, unsigned attempt);
static void *name_hook_ctx;

void osseg__output_name_hook(const char *(*fn)(void *ctx, unsigned attempt), void *ctx) {
  name_hook = fn;
  name_hook_ctx = ctx;
}

/* a[0, alen) followed by b[0, blen), NUL-terminated, osseg__malloc'ed. */
static char *join(const char *a, size_t alen, const char *b, size_t blen) {
  size_t n;
  if (osseg__add_size(alen, blen, &n) || osseg__add_size(n, 1, &n)) return NULL;
  char *s = osseg__malloc(n);
  if (!s) return NULL;
  memcpy(s, a, alen);
  memcpy(s + alen, b, blen);
  s[alen + blen] = '\0';
  return s;
}

/* Length of the folder part of path, up to and including the last '/'. */
static size_t dir_len(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? (size_t)(slash - path + 1) : 0;
}

/* Follows path while it is a symlink. On success *target is the path that
 * is not a symlink (osseg__malloc'ed), *exists says whether it exists and
 * *st holds its lstat. */
static int resolve(const char *path, char **target, int *exists, struct stat *st,
                   struct osseg_diag *diag) {
  char *cur = osseg__strndup(path, strlen(path));
  if (!cur) return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", path);
  for (int hops = 0;; hops++) {
    if (lstat(cur, st) != 0) {
      int e = errno;
      if (e == ENOENT) {
        *exists = 0;
        *target = cur;
        return 0;
      }
      osseg__free(cur);
      return osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISLNK(st->st_mode)) {
      *exists = 1;
      *target = cur;
      return 0;
    }
    if (hops == MAX_SYMLINK_HOPS) {
      osseg__free(cur);
      return osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(ELOOP));
    }
    char link[PATH_MAX];
    ssize_t n = readlink(cur, link, sizeof link);
    if (n < 0 || (size_t)n >= sizeof link) {
      int e = n < 0 ? errno : ENAMETOOLONG;
      osseg__free(cur);
      return osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(e));
    }
    /* A relative link is relative to the folder holding it. */
    size_t keep = link[0] == '/' ? 0 : dir_len(cur);
    char *next = join(cur, keep, link, (size_t)n);
    osseg__free(cur);
    if (!next) return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", path);
    cur = next;
  }
}

/* Fills out with RANDOM_CHARS unpredictable characters. getrandom only
 * fails on ancient kernels or an interrupted call; the clock and the
 * address space layout then still make the name hard to guess, and
 * O_EXCL keeps it safe even if guessed. */
static void random_suffix(char *out) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  unsigned char bytes[RANDOM_CHARS];
  if (getrandom(bytes, sizeof bytes, GRND_NONBLOCK) != (ssize_t)sizeof bytes) {
    uint64_t x = osseg_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)out;
    for (size_t i = 0; i < sizeof bytes; i++) {
      x += 0x9e3779b97f4a7c15u; /* splitmix64 */
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
      bytes[i] = (unsigned char)(z ^ (z >> 31));
    }
  }
  for (size_t i = 0; i < sizeof bytes; i++) out[i] = alphabet[bytes[i] & 63];
}

/* Creates the temporary file for target in target's folder. */
static int create_tmp(struct osseg_output *o, const struct stat *old, struct osseg_diag *diag) {
  size_t dlen = dir_len(o->target);
  const char *base = o->target + dlen;
  size_t blen = strlen(base);
  if (blen > MAX_NAME_IN_TMP) blen = MAX_NAME_IN_TMP;
  int e = 0;
  for (unsigned attempt = 0; attempt < MAX_TMP_ATTEMPTS; attempt++) {
    char suffix[64] = ".tmp-"; /* the rest is zeros */
    if (name_hook)
      snprintf(suffix + 5, sizeof suffix - 5, "%s", name_hook(name_hook_ctx, attempt));
    else
      random_suffix(suffix + 5);
    /* "DIR/" "." NAME ".tmp-XXXXXXXXXXXX" */
    size_t n = dlen + 1 + blen + strlen(suffix) + 1;
    char *tmp = osseg__malloc(n);
    if (!tmp) return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", o->path);
    snprintf(tmp, n, "%.*s.%.*s%s", (int)dlen, o->target, (int)blen, base, suffix);
    /* 0666 and the umask give a new output the mode any new file gets. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0) {
      o->fd = fd;
      o->tmp = tmp;
      break;
    }
    e = errno;
    osseg__free(tmp);
    if (e != EEXIST) break;
  }
  if (o->fd < 0)
    return osseg__fail(diag, OSSEG_EIO, "%s: cannot create a file in its folder: %s", o->path,
                       strerror(e));
  if (old) {
    /* Replacing a file keeps its owner where we may (root does; anyone else
     * gets their own file, as with an editor's save) and its mode, set
     * after the owner because chown clears set-id bits. */
    if ((old->st_uid != geteuid() || old->st_gid != getegid()) &&
        fchown(o->fd, old->st_uid, old->st_gid) != 0) {
      /* Not permitted: the new file stays ours. */
    }
    if (fchmod(o->fd, old->st_mode & 07777) != 0)
      return osseg__fail(diag, OSSEG_EIO, "%s: cannot set the mode: %s", o->path,
                         strerror(errno));
  }
  return 0;
}

/* Releases everything; unlinks the temporary file if there is one. */
static void release(struct osseg_output *o) {
  if (o->stream)
    fclose(o->stream);
  else if (o->fd >= 0)
    close(o->fd);
  if (o->tmp) unlink(o->tmp);
  osseg__free(o->tmp);
  osseg__free(o->target);
  osseg__free(o->path);
  memset(o, 0, sizeof *o);
  o->fd = -1;
}

int osseg_output_open(struct osseg_output *o, const char *path, struct osseg_diag *diag) {
  memset(o, 0, sizeof *o);
  o->fd = -1;
  if (!path || !*path) return osseg__fail(diag, OSSEG_EINVAL, "empty output path");
  o->path = osseg__strndup(path, strlen(path));
  if (!o->path) return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", path);
  struct stat st;
  int exists, rc = resolve(path, &o->target, &exists, &st, diag);
  if (rc) goto fail;
  if (exists && S_ISDIR(st.st_mode)) {
    rc = osseg__fail(diag, OSSEG_EINVAL, "%s: is a directory", path);
    goto fail;
  }
  if (!exists || S_ISREG(st.st_mode)) {
    if (o->target[dir_len(o->target)] == '\0') {
      rc = osseg__fail(diag, OSSEG_EINVAL, "%s: not a file name", path);
      goto fail;
    }
    o->atomic = 1;
    rc = create_tmp(o, exists ? &st : NULL, diag);
    if (rc) goto fail;
    return 0;
  }
  /* A device, FIFO or socket: write through. Opening a FIFO waits for a
   * reader, as a shell redirection does. */
  o->fd = open(o->target, O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (o->fd < 0) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: %s", path, strerror(errno));
    goto fail;
  }
  /* Someone may have swapped the node for a file or folder since lstat;
   * writing into a regular file without truncating it would leave a mix. */
  if (fstat(o->fd, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
    rc = osseg__fail(diag, OSSEG_EIO, "%s: changed while being opened", path);
    goto fail;
  }
  return 0;
fail:
  release(o);
  return rc;
}

int osseg_output_write(struct osseg_output *o, const void *data, size_t size,
                       struct osseg_diag *diag) {
  const char *p = data;
  while (size > 0) {
    ssize_t w = write(o->fd, p, size);
    if (w < 0) {
      if (errno == EINTR) continue;
      return osseg__fail(diag, OSSEG_EIO, "%s: write failed: %s", o->path, strerror(errno));
    }
    p += w;
    size -= (size_t)w;
  }
  return 0;
}

int osseg_output_stream(struct osseg_output *o, FILE **f, struct osseg_diag *diag) {
  if (!o->stream) {
    o->stream = fdopen(o->fd, "w");
    if (!o->stream) return osseg__fail(diag, OSSEG_ENOMEM, "%s: out of memory", o->path);
  }
  *f = o->stream;
  return 0;
}

int osseg_output_commit(struct osseg_output *o, struct osseg_diag *diag) {
  int rc = 0;
  if (o->stream) {
    int bad = fflush(o->stream) != 0 || ferror(o->stream);
    int e = errno;
    if (bad) rc = osseg__fail(diag, OSSEG_EIO, "%s: write failed: %s", o->path, strerror(e));
  }
  /* Only the atomic path syncs: the rename must not reach the disk before
   * the data does, or a crash could leave an empty file under the name. */
  if (rc == 0 && o->atomic && fsync(o->fd) != 0)
    rc = osseg__fail(diag, OSSEG_EIO, "%s: write failed: %s", o->path, strerror(errno));
  if (rc == 0) {
    int bad = o->stream ? fclose(o->stream) != 0 : close(o->fd) != 0;
    int e = errno;
    o->stream = NULL;
    o->fd = -1;
    if (bad) rc = osseg__fail(diag, OSSEG_EIO, "%s: write failed: %s", o->path, strerror(e));
  }
  if (rc == 0 && o->atomic) {
    if (rename(o->tmp, o->target) != 0)
      rc = osseg__fail(diag, OSSEG_EIO, "%s: cannot replace: %s", o->path, strerror(errno));
    else
      osseg__free(o->tmp), o->tmp = NULL;
  }
  release(o);
  return rc;
}

void osseg_output_abort(struct osseg_output *o) {
  if (o->path) release(o);
}

int osseg_output_write_file(const char *path, const void *data, size_t size,
                            struct osseg_diag *diag) {
  struct osseg_output o;
  int rc = osseg_output_open(&o, path, diag);
  if (rc) return rc;
  rc = osseg_output_write(&o, data, size, diag);
  if (rc) {
    osseg_output_abort(&o);
    return rc;
  }
  return osseg_output_commit(&o, diag);
}
