/* osseg_output_*: atomic replace of regular files, write-through for
 * devices and FIFOs, symlinks kept, temporary files that cannot be
 * hijacked, clean abort and errors. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "osseg_base.h"
#include "test_support.h"

/* Entries of dir other than . and .. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

static void expect_contents(const char *path, const char *want) {
  size_t size;
  char *got = test_read_file(path, &size);
  assert_non_null(got);
  assert_int_equal(size, strlen(want));
  assert_memory_equal(got, want, size);
  free(got);
}

/* Removes a test folder and what is in it (one level). */
static void remove_dir(const char *dir) {
  char *out = NULL;
  const char *rm[] = {"/bin/rm", "-rf", dir, NULL};
  assert_int_equal(test_run(rm, &out, NULL, 10), 0);
  free(out);
}

static void test_regular_file_replaced_atomically(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char path[4096];
  snprintf(path, sizeof path, "%s/out.csv", dir);
  assert_int_equal(test_write_file(path, "old", 3), 0);
  assert_int_equal(chmod(path, 0604), 0);
  struct stat before, after;
  assert_int_equal(stat(path, &before), 0);

  struct osseg_output o;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_open(&o, path, &d), 0);
  assert_true(o.atomic);
  assert_int_equal(osseg_output_write(&o, "new contents\n", 13, &d), 0);
  /* Until commit the destination is the old file, and the new bytes are in
   * a hidden temporary beside it with a random part in its name. */
  expect_contents(path, "old");
  assert_int_equal(count_entries(dir), 2);
  assert_non_null(o.tmp);
  char prefix[4200];
  snprintf(prefix, sizeof prefix, "%s/.out.csv.tmp-", dir);
  assert_int_equal(strncmp(o.tmp, prefix, strlen(prefix)), 0);
  assert_int_equal(strlen(o.tmp), strlen(prefix) + 12);
  assert_int_equal(osseg_output_commit(&o, &d), 0);
  expect_contents(path, "new contents\n");
  assert_int_equal(stat(path, &after), 0);
  assert_true(S_ISREG(after.st_mode));
  assert_true(after.st_ino != before.st_ino); /* replaced, not rewritten */
  assert_int_equal(after.st_mode & 07777, 0604); /* mode kept */
  assert_int_equal(count_entries(dir), 1);
  remove_dir(dir);
}

static void test_missing_file_created(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char path[4096];
  snprintf(path, sizeof path, "%s/new.png", dir);
  mode_t old_mask = umask(027);
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(path, "png", 3, &d), 0);
  umask(old_mask);
  expect_contents(path, "png");
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0640); /* 0666 & ~umask */
  assert_int_equal(count_entries(dir), 1);
  remove_dir(dir);
}

static void test_symlink_kept_target_updated(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char real[4096], link1[4096], link2[4096], sub[4096];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  snprintf(real, sizeof real, "%s/sub/real.csv", dir);
  snprintf(link1, sizeof link1, "%s/link1", dir);
  snprintf(link2, sizeof link2, "%s/link2", dir);
  assert_int_equal(test_write_file(real, "old", 3), 0);
  /* link2 -> link1 (relative) -> sub/real.csv (relative to link1's folder) */
  assert_int_equal(symlink("sub/real.csv", link1), 0);
  assert_int_equal(symlink("link1", link2), 0);

  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(link2, "through two links", 17, &d), 0);
  struct stat st;
  char buf[256];
  assert_int_equal(lstat(link2, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  assert_int_equal(readlink(link2, buf, sizeof buf), 5);
  assert_memory_equal(buf, "link1", 5);
  assert_int_equal(lstat(link1, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  assert_int_equal(lstat(real, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  expect_contents(real, "through two links");
  /* The temporary file lived beside the target, and is gone. */
  assert_int_equal(count_entries(sub), 1);
  assert_int_equal(count_entries(dir), 3);

  /* An absolute link to a missing file creates the file; the link stays. */
  char dangling[4096], made[4096];
  snprintf(dangling, sizeof dangling, "%s/dangling", dir);
  snprintf(made, sizeof made, "%s/sub/made.csv", dir);
  assert_int_equal(symlink(made, dangling), 0);
  assert_int_equal(osseg_output_write_file(dangling, "made", 4, &d), 0);
  assert_int_equal(lstat(dangling, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  expect_contents(made, "made");
  remove_dir(dir);
}

struct reader {
  const char *path;
  char data[256];
  size_t len;
};

static void *read_fifo(void *arg) {
  struct reader *r = arg;
  int fd = open(r->path, O_RDONLY);
  if (fd < 0) return NULL;
  ssize_t n;
  while (r->len < sizeof r->data &&
         (n = read(fd, r->data + r->len, sizeof r->data - r->len)) > 0)
    r->len += (size_t)n;
  close(fd);
  return NULL;
}

static void test_fifo_written_through(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char path[4096];
  snprintf(path, sizeof path, "%s/pipe", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  struct reader r = {.path = path};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, read_fifo, &r), 0);
  struct osseg_output o;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_open(&o, path, &d), 0);
  assert_false(o.atomic);
  assert_null(o.tmp);
  FILE *f;
  assert_int_equal(osseg_output_stream(&o, &f, &d), 0);
  fprintf(f, "row %d\n", 1);
  assert_int_equal(osseg_output_commit(&o, &d), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(r.len, 6);
  assert_memory_equal(r.data, "row 1\n", 6);
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISFIFO(st.st_mode));
  assert_int_equal(count_entries(dir), 1);
  remove_dir(dir);
}

static void test_char_device_written_through(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char path[4096], link[4096];
  snprintf(path, sizeof path, "%s/null", dir);
  snprintf(link, sizeof link, "%s/to-null", dir);
  test_mknod_null(path);
  assert_int_equal(symlink(path, link), 0);
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(path, "gone", 4, &d), 0);
  assert_int_equal(osseg_output_write_file(link, "gone", 4, &d), 0);
  assert_true(test_is_null_device(path));
  struct stat st;
  assert_int_equal(lstat(link, &st), 0);
  assert_true(S_ISLNK(st.st_mode));

  /* A write error on a device (1, 7 is /dev/full) names the path and why. */
  char full[4096], want[4200];
  snprintf(full, sizeof full, "%s/full", dir);
  assert_int_equal(mknod(full, S_IFCHR | 0666, makedev(1, 7)), 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(full, "x", 1, &d), OSSEG_EIO);
  snprintf(want, sizeof want, "%s: write failed: %s", full, strerror(ENOSPC));
  assert_string_equal(d.message, want);
  assert_int_equal(lstat(full, &st), 0);
  assert_true(S_ISCHR(st.st_mode));
  assert_int_equal(count_entries(dir), 3);
  remove_dir(dir);
}

static const char *fixed_names(void *ctx, unsigned attempt) {
  static char name[32];
  snprintf(name, sizeof name, "%s%u", (const char *)ctx, attempt);
  return name;
}

static void test_planted_symlink_not_followed(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char path[4096], victim[4096], plant[4200];
  snprintf(path, sizeof path, "%s/out.csv", dir);
  snprintf(victim, sizeof victim, "%s/victim", dir);
  assert_int_equal(test_write_file(victim, "precious", 8), 0);
  /* Symlinks to the victim at the first three names that will be tried,
   * and a dangling one (which O_CREAT alone would create through). */
  osseg__output_name_hook(fixed_names, "n");
  for (int i = 0; i < 3; i++) {
    snprintf(plant, sizeof plant, "%s/.out.csv.tmp-n%d", dir, i);
    assert_int_equal(symlink(victim, plant), 0);
  }
  snprintf(plant, sizeof plant, "%s/.out.csv.tmp-n3", dir);
  assert_int_equal(symlink("made-by-attacker", plant), 0);
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(path, "output", 6, &d), 0);
  expect_contents(path, "output");
  expect_contents(victim, "precious");
  struct stat st;
  assert_int_equal(lstat(plant, &st), 0);
  assert_true(S_ISLNK(st.st_mode));
  assert_int_equal(count_entries(dir), 6); /* out.csv, victim, 4 links */

  /* Every name taken: a clean error, the victim still untouched. */
  for (int i = 4; i < 100; i++) {
    snprintf(plant, sizeof plant, "%s/.out.csv.tmp-n%d", dir, i);
    assert_int_equal(symlink(victim, plant), 0);
  }
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(path, "again", 5, &d), OSSEG_EIO);
  osseg__output_name_hook(NULL, NULL);
  char want[4200];
  snprintf(want, sizeof want, "%s: cannot create a file in its folder: File exists", path);
  assert_string_equal(d.message, want);
  expect_contents(path, "output");
  expect_contents(victim, "precious");
  remove_dir(dir);
}

static void test_abort_leaves_target(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char path[4096], fresh[4096];
  snprintf(path, sizeof path, "%s/out.csv", dir);
  snprintf(fresh, sizeof fresh, "%s/fresh.csv", dir);
  assert_int_equal(test_write_file(path, "old", 3), 0);
  struct osseg_output o;
  struct osseg_diag d;
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_open(&o, path, &d), 0);
  assert_int_equal(osseg_output_write(&o, "partial", 7, &d), 0);
  osseg_output_abort(&o);
  osseg_output_abort(&o); /* released: a no-op */
  expect_contents(path, "old");
  assert_int_equal(count_entries(dir), 1);
  /* A new file is not created at all. */
  assert_int_equal(osseg_output_open(&o, fresh, &d), 0);
  FILE *f;
  assert_int_equal(osseg_output_stream(&o, &f, &d), 0);
  fputs("partial", f);
  osseg_output_abort(&o);
  assert_int_equal(count_entries(dir), 1);
  struct osseg_output zero = {0};
  osseg_output_abort(&zero); /* never opened: a no-op */
  remove_dir(dir);
}

static void test_errors(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char sub[4096], link[4096], want[4200];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  snprintf(link, sizeof link, "%s/link", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  assert_int_equal(symlink("sub", link), 0);
  struct osseg_output o;
  struct osseg_diag d;

  /* A folder, directly or through a link: nothing created or replaced. */
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_open(&o, sub, &d), OSSEG_EINVAL);
  snprintf(want, sizeof want, "%s: is a directory", sub);
  assert_string_equal(d.message, want);
  osseg_output_abort(&o);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(link, "x", 1, &d), OSSEG_EINVAL);
  snprintf(want, sizeof want, "%s: is a directory", link);
  assert_string_equal(d.message, want);
  struct stat st;
  assert_int_equal(lstat(sub, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(count_entries(sub), 0);

  /* A missing folder. */
  osseg_diag_clear(&d);
  char path[4096];
  snprintf(path, sizeof path, "%s/no/x.csv", dir);
  assert_int_equal(osseg_output_write_file(path, "x", 1, &d), OSSEG_EIO);
  snprintf(want, sizeof want, "%s: cannot create a file in its folder: No such file or directory",
           path);
  assert_string_equal(d.message, want);

  /* A symlink loop. */
  char loop[4096];
  snprintf(loop, sizeof loop, "%s/loop", dir);
  assert_int_equal(symlink("loop", loop), 0);
  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_write_file(loop, "x", 1, &d), OSSEG_EIO);
  snprintf(want, sizeof want, "%s: %s", loop, strerror(ELOOP));
  assert_string_equal(d.message, want);

  osseg_diag_clear(&d);
  assert_int_equal(osseg_output_open(&o, "", &d), OSSEG_EINVAL);
  assert_int_equal(count_entries(dir), 3);
  remove_dir(dir);
}

/* Fail the Nth allocation for every N: a clean OSSEG_ENOMEM, the old file
 * intact, no temporary left (ASan checks for leaks). */
static void test_alloc_failure_sweep(void **state) {
  (void)state;
  const char *dir = test_tmpdir();
  char path[4096], link[4096];
  snprintf(path, sizeof path, "%s/out", dir);
  snprintf(link, sizeof link, "%s/link", dir);
  assert_int_equal(test_write_file(path, "old", 3), 0);
  assert_int_equal(symlink("out", link), 0);
  for (uint64_t nth = 1;; nth++) {
    struct osseg_diag d;
    osseg_diag_clear(&d);
    osseg__alloc_fail_at(nth);
    int rc = osseg_output_write_file(link, "new", 3, &d);
    uint64_t attempted = osseg__alloc_fail_at(0);
    if (rc == 0) {
      assert_true(attempted < nth);
      expect_contents(path, "new");
      break;
    }
    assert_int_equal(rc, OSSEG_ENOMEM);
    assert_non_null(strstr(d.message, link));
    expect_contents(path, "old");
    assert_int_equal(count_entries(dir), 2);
  }
  remove_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_regular_file_replaced_atomically),
      cmocka_unit_test(test_missing_file_created),
      cmocka_unit_test(test_symlink_kept_target_updated),
      cmocka_unit_test(test_fifo_written_through),
      cmocka_unit_test(test_char_device_written_through),
      cmocka_unit_test(test_planted_symlink_not_followed),
      cmocka_unit_test(test_abort_leaves_target),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_alloc_failure_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
