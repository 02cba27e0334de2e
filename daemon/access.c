/* Access: users and groups by name or number, peer credentials, and the
 * allow-list check made for every accepted connection (loop thread). */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon_internal.h"

/* A decimal id: digits only, below (id_t)-1 (which means "no id" to the
 * set*id calls and cannot be anyone's). 1 when s is one, 0 when it is not a
 * number, -1 when it is a number out of range. */
static int parse_id(const char *s, uint32_t *out) {
  if (!s[0]) return 0;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    v = v * 10 + (uint64_t)(*p - '0');
    if (v >= UINT32_MAX) return -1;
  }
  *out = (uint32_t)v;
  return 1;
}

/* Buffer size for the *_r lookups. */
static size_t lookup_buffer_size(int name) {
  long n = sysconf(name);
  return n > 0 && n < (1 << 20) ? (size_t)n : 16384;
}

int ossegd__parse_user(const char *s, uid_t *out) {
  uint32_t id;
  int num = parse_id(s, &id);
  if (num < 0 || !s[0]) return OSSEG_EINVAL;
  if (num > 0) {
    *out = (uid_t)id;
    return 0;
  }
  size_t size = lookup_buffer_size(_SC_GETPW_R_SIZE_MAX);
  for (;;) {
    char *buf = malloc(size);
    if (!buf) return OSSEG_ENOMEM;
    struct passwd pw, *res = NULL;
    int rc = getpwnam_r(s, &pw, buf, size, &res);
    if (rc == 0 && res) *out = res->pw_uid;
    free(buf);
    if (rc == ERANGE && size < (1u << 24)) {
      size *= 2;
      continue;
    }
    return rc == 0 && res ? 0 : OSSEG_ENOTFOUND;
  }
}

int ossegd__parse_group(const char *s, gid_t *out) {
  uint32_t id;
  int num = parse_id(s, &id);
  if (num < 0 || !s[0]) return OSSEG_EINVAL;
  if (num > 0) {
    *out = (gid_t)id;
    return 0;
  }
  size_t size = lookup_buffer_size(_SC_GETGR_R_SIZE_MAX);
  for (;;) {
    char *buf = malloc(size);
    if (!buf) return OSSEG_ENOMEM;
    struct group gr, *res = NULL;
    int rc = getgrnam_r(s, &gr, buf, size, &res);
    if (rc == 0 && res) *out = res->gr_gid;
    free(buf);
    if (rc == ERANGE && size < (1u << 24)) {
      size *= 2;
      continue;
    }
    return rc == 0 && res ? 0 : OSSEG_ENOTFOUND;
  }
}

int ossegd__acl_init(struct ossegd__acl *a, const struct ossegd_options *o,
                     struct osseg_diag *diag) {
  memset(a, 0, sizeof *a);
  a->self = geteuid();
  if (o->nallow_users > OSSEGD_MAX_ACCESS || o->nallow_groups > OSSEGD_MAX_ACCESS)
    return osseg__fail(diag, OSSEG_ELIMIT, "at most %d users and %d groups may be allowed",
                       OSSEGD_MAX_ACCESS, OSSEGD_MAX_ACCESS);
  for (size_t i = 0; i < o->nallow_users; i++) {
    int rc = ossegd__parse_user(o->allow_users[i], &a->uids[i]);
    if (rc)
      return osseg__fail(diag, rc, "allowed user '%s': %s", o->allow_users[i],
                         rc == OSSEG_ENOTFOUND ? "no such user" : "not a user name or id");
  }
  for (size_t i = 0; i < o->nallow_groups; i++) {
    int rc = ossegd__parse_group(o->allow_groups[i], &a->gids[i]);
    if (rc)
      return osseg__fail(diag, rc, "allowed group '%s': %s", o->allow_groups[i],
                         rc == OSSEG_ENOTFOUND ? "no such group" : "not a group name or id");
  }
  a->nuids = o->nallow_users;
  a->ngids = o->nallow_groups;
  a->active = a->nuids + a->ngids > 0;
  return 0;
}

int ossegd__peer_get(int fd, struct ossegd__peer *out) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred)
    return OSSEG_EIO;
  out->pid = cred.pid;
  out->uid = cred.uid;
  out->gid = cred.gid;
  return 0;
}

static int gid_listed(const struct ossegd__acl *a, gid_t g) {
  for (size_t i = 0; i < a->ngids; i++)
    if (a->gids[i] == g) return 1;
  return 0;
}

/* Whether one of the peer's supplementary groups is listed.
 *
 * SO_PEERGROUPS (Linux 4.13) gives the groups the peer's credentials had
 * when it called connect(), captured by the kernel together with
 * SO_PEERCRED's uid and gid: the groups of the very process that connected,
 * with no race. The two alternatives are weaker: /proc/PID/status Groups:
 * is read later, by pid, so the peer may have exited and its pid been
 * reused by another process (or /proc be mounted hidepid, or the pid be of
 * another namespace); getgrouplist() reports the groups the user database
 * gives the uid's account, not those of the process (a process that dropped
 * a group would still pass), and may block on a directory service. It is
 * only the fallback for kernels without SO_PEERGROUPS. */
static int groups_listed(const struct ossegd__acl *a, int fd, const struct ossegd__peer *p) {
  gid_t stack[64];
  gid_t *g = stack;
  socklen_t len = sizeof stack;
  int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
  if (rc != 0 && errno == ERANGE && len > sizeof stack) {
    g = malloc(len);
    if (!g) return 0;
    rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
  }
  int found = 0;
  if (rc == 0) {
    for (size_t i = 0; i < len / sizeof *g && !found; i++) found = gid_listed(a, g[i]);
  } else if (errno == ENOPROTOOPT) {
    size_t size = lookup_buffer_size(_SC_GETPW_R_SIZE_MAX);
    char *buf = malloc(size);
    struct passwd pw, *res = NULL;
    if (buf && getpwuid_r(p->uid, &pw, buf, size, &res) == 0 && res) {
      int n = (int)(sizeof stack / sizeof *stack);
      if (g != stack) free(g);
      g = stack;
      if (getgrouplist(res->pw_name, res->pw_gid, g, &n) < 0 && n > 0) {
        g = malloc((size_t)n * sizeof *g);
        if (g && getgrouplist(res->pw_name, res->pw_gid, g, &n) < 0) n = 0;
      }
      for (int i = 0; g && i < n && !found; i++) found = gid_listed(a, g[i]);
    }
    free(buf);
  }
  if (g != stack) free(g);
  return found;
}

int ossegd__access_check(const struct ossegd__acl *a, int fd, const struct ossegd__peer *p) {
  if (!a->active || p->uid == 0 || p->uid == a->self) return 1;
  for (size_t i = 0; i < a->nuids; i++)
    if (a->uids[i] == p->uid) return 1;
  if (gid_listed(a, p->gid)) return 1;
  return a->ngids > 0 && groups_listed(a, fd, p);
}
