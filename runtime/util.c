/* util: see util.h. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* one message per thread: NVRTC compiles on a pool of threads (cuda.c),
 * tune.c compiles on OpenMP threads, and a message set by one must not be
 * torn or replaced by another's */
static _Thread_local char util_errbuf[2048];

int util_err(const char *fmt, ...) {
  char tmp[sizeof util_errbuf];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap); /* fmt may use util_errmsg() itself */
  va_end(ap);
  /* one line: newlines in nested messages become "; " */
  size_t j = 0;
  for (size_t i = 0; tmp[i] && j + 3 < sizeof util_errbuf; i++) {
    if (tmp[i] == '\n') {
      if (tmp[i + 1] == '\0') break;
      util_errbuf[j++] = ';';
      util_errbuf[j++] = ' ';
    } else {
      util_errbuf[j++] = tmp[i];
    }
  }
  util_errbuf[j] = '\0';
  return -1;
}

const char *util_errmsg(void) { return util_errbuf[0] ? util_errbuf : "unknown error"; }
void util_errclear(void) { util_errbuf[0] = '\0'; }

void *util_malloc(size_t n, const char *what) {
  void *p = malloc(n ? n : 1);
  if (!p) util_err("out of memory: %s needs %zu bytes", what, n);
  return p;
}

void *util_calloc(size_t n, size_t size, const char *what) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) util_err("out of memory: %s needs %zu bytes", what, n * size);
  return p;
}

void *util_realloc(void *p, size_t n, const char *what) {
  void *q = realloc(p, n ? n : 1);
  if (!q) util_err("out of memory: %s needs %zu bytes", what, n);
  return q;
}

char *util_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = util_malloc(n, "string");
  if (p) memcpy(p, s, n);
  return p;
}

const char *util_mode_name(unsigned mode) {
  mode_t m = (mode_t)mode;
  return S_ISREG(m)    ? "regular file"
         : S_ISDIR(m)  ? "directory"
         : S_ISFIFO(m) ? "FIFO"
         : S_ISCHR(m)  ? "character device"
         : S_ISBLK(m)  ? "block device"
         : S_ISSOCK(m) ? "socket"
                       : "special file";
}

/* Refuses what is not a regular file, by kind; a directory keeps its own
 * wording ("is a directory, expected <what>"). */
static int util_not_regular(const char *path, const char *what, mode_t m) {
  if (S_ISDIR(m)) return util_err("%s: is a directory, expected %s", path, what);
  return util_err("%s: not a regular file (%s)", path, util_mode_name(m));
}

int util_open_regular(const char *path, const char *what, uint64_t *size) {
  /* O_NONBLOCK: opening a FIFO for reading waits for a writer, forever when
   * there is none; a device's open may wait too. The flag is cleared again
   * once fstat has shown a regular file (it means nothing for one). */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0) {
    int e = errno;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) return util_not_regular(path, what, st.st_mode);
    return util_err("%s: cannot open: %s", path, strerror(e));
  }
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return util_err("%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return util_not_regular(path, what, st.st_mode);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  if (size) *size = (uint64_t)st.st_size;
  return fd;
}

int util_read_file(const char *path, char **data, size_t *len) {
  uint64_t size;
  int fd = util_open_regular(path, "a file", &size);
  if (fd < 0) return -1;
  /* the bound: what this machine can hold (the file may still grow while it
   * is read, so the loop checks it too) */
  uint64_t limit = util_mem_available();
  if (size >= limit) {
    close(fd);
    return util_err("%s: %" PRIu64 " bytes, more than the available memory (%" PRIu64 " bytes)", path, size, limit);
  }
  size_t cap = (size_t)size + 1, n = 0;
  char *b = util_malloc(cap, path);
  while (b) {
    if (n + 1 == cap) {
      if ((uint64_t)cap * 2 > limit) {
        free(b);
        close(fd);
        return util_err("%s: grew past the available memory (%" PRIu64 " bytes) while being read", path, limit);
      }
      char *nb = util_realloc(b, cap * 2, path);
      if (!nb) break;
      b = nb, cap *= 2;
    }
    ssize_t r = read(fd, b + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(b);
      close(fd);
      return util_err("%s: read error: %s", path, strerror(e));
    }
    if (r == 0) {
      close(fd);
      b[n] = '\0'; /* NUL terminator, not counted */
      *data = b;
      *len = n;
      return 0;
    }
    n += (size_t)r;
  }
  free(b);
  close(fd);
  return -1;
}

int util_read_text(const char *path, char **data, size_t *len) {
  if (util_read_file(path, data, len)) return -1;
  long bad = *len == 0 ? -2 : util_utf8_invalid_at(*data, *len);
  if (bad == -1) return 0;
  free(*data);
  *data = NULL;
  if (bad == -2) return util_err("%s: empty text", path);
  return util_err("%s: invalid UTF-8 at byte offset %ld", path, bad);
}

int util_fsync_dir_of(const char *path) {
  char *dir = util_strdup(path);
  if (!dir) return -1;
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(dir, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
  return 0;
}

int util_commit_tmp(const char *tmp, const char *path) {
  if (rename(tmp, path) != 0) {
    util_err("%s: rename from %s failed: %s", path, tmp, strerror(errno));
    unlink(tmp);
    return -1;
  }
  util_fsync_dir_of(path);
  return 0;
}

int util_write_segs_atomic(const char *path, const util_seg *seg, int nseg, char **tmp_out) {
  size_t n = strlen(path);
  char *tmp = util_malloc(n + sizeof UTIL_TMP_SUFFIX, "temp file name");
  if (!tmp) return -1;
  snprintf(tmp, n + sizeof UTIL_TMP_SUFFIX, "%s" UTIL_TMP_SUFFIX, path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    util_err("%s: cannot create temp file %s: %s", path, tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  for (int i = 0; i < nseg; i++) {
    const char *p = seg[i].p;
    size_t left = seg[i].n;
    while (left > 0) {
      ssize_t w = write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        util_err("%s: write failed: %s", path, w < 0 ? strerror(errno) : "no progress");
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
      }
      p += w;
      left -= (size_t)w;
    }
  }
  if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
    util_err("%s: fsync failed: %s", path, strerror(errno));
    close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
  }
  if (close(fd) != 0) {
    util_err("%s: close failed: %s", path, strerror(errno));
    unlink(tmp);
    free(tmp);
    return -1;
  }
  if (tmp_out) {
    *tmp_out = tmp;
    return 0;
  }
  int rc = util_commit_tmp(tmp, path);
  free(tmp);
  return rc;
}

int util_write_file_atomic(const char *path, const void *data, size_t len) {
  util_seg s = {data, len};
  return util_write_segs_atomic(path, &s, 1, NULL);
}

int util_is_tmp_of(const char *name, const char *base) {
  size_t b = strlen(base), x = sizeof UTIL_TMP_SUFFIX - 1, k = x - 6; /* ".tmp" then mkstemp's 6 */
  if (strlen(name) != b + x || strncmp(name, base, b) || strncmp(name + b, UTIL_TMP_SUFFIX, k)) return 0;
  for (size_t i = b + k; i < b + x; i++)
    if (!isalnum((unsigned char)name[i])) return 0;
  return 1;
}

int util_path(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, cap, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < cap) return 0;
  if (n < 0) util_err("cannot format a path from \"%.60s\"", fmt);
  else util_err("path too long: %.60s... is %d bytes, the limit is %zu", out, n, cap - 1);
  out[0] = '\0'; /* never usable by a caller that ignores the error */
  return -1;
}

int util_lock_dir(const char *dir, const char *what) {
  char path[4096];
  if (util_path(path, sizeof path, "%s/.lock", dir)) return -1;
  /* O_CLOEXEC: a compiler we spawn must not inherit (and outlive us with) the lock */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return util_err("%s: cannot create the lock file %s: %s", dir, path, strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char pid[32] = "";
    ssize_t n = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
    close(fd);
    if (e != EWOULDBLOCK) return util_err("%s: cannot lock %s: %s", dir, path, strerror(e));
    pid[n > 0 ? n : 0] = '\0';
    pid[strspn(pid, "0123456789")] = '\0';
    if (pid[0])
      return util_err("%s: another %s (pid %s) is using this directory; wait for it or choose another one", dir, what,
                      pid);
    return util_err("%s: another %s is using this directory; wait for it or choose another one", dir, what);
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  /* the pid is only for the other run's message: not writing it is no error */
  if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n) pid[0] = '\0';
  return fd;
}

int util_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int util_is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int util_mkdir_p(const char *path) {
  char *p = util_strdup(path);
  if (!p) return -1;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      util_err("%s: cannot create directory: %s", p, strerror(errno));
      free(p);
      return -1;
    }
    *s = '/';
  }
  if (mkdir(p, 0755) != 0 && errno != EEXIST) {
    util_err("%s: cannot create directory: %s", p, strerror(errno));
    free(p);
    return -1;
  }
  free(p);
  if (!util_is_dir(path)) return util_err("%s: exists and is not a directory", path);
  return 0;
}

int util_buf_add(util_buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *d = util_realloc(b->data, cap, "buffer");
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int util_buf_printf(util_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return -1;
  if (util_buf_add(b, NULL, 0) || b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *d = util_realloc(b->data, cap, "buffer");
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void util_buf_free(util_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- SHA-256 (FIPS 180-4) ---- */
static const uint32_t util_sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define UTIL_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void util_sha256_block(util_sha256 *s, const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = UTIL_ROR(w[i - 15], 7) ^ UTIL_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = UTIL_ROR(w[i - 2], 17) ^ UTIL_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
  uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (UTIL_ROR(e, 6) ^ UTIL_ROR(e, 11) ^ UTIL_ROR(e, 25)) + ((e & f) ^ (~e & g)) +
                  util_sha_k[i] + w[i];
    uint32_t t2 = (UTIL_ROR(a, 2) ^ UTIL_ROR(a, 13) ^ UTIL_ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  s->h[0] += a;
  s->h[1] += b;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
  s->h[5] += f;
  s->h[6] += g;
  s->h[7] += h;
}

void util_sha256_init(util_sha256 *s) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, h0, sizeof h0);
  s->len = 0;
  s->n = 0;
}

void util_sha256_update(util_sha256 *s, const void *data, size_t n) {
  const uint8_t *p = data;
  s->len += n;
  while (n > 0) {
    size_t k = 64 - s->n;
    if (k > n) k = n;
    memcpy(s->buf + s->n, p, k);
    s->n += k;
    p += k;
    n -= k;
    if (s->n == 64) {
      util_sha256_block(s, s->buf);
      s->n = 0;
    }
  }
}

void util_sha256_final(util_sha256 *s, uint8_t out[32]) {
  uint64_t bits = s->len * 8;
  uint8_t pad = 0x80;
  util_sha256_update(s, &pad, 1);
  uint8_t z = 0;
  while (s->n != 56) util_sha256_update(s, &z, 1);
  uint8_t l[8];
  for (int i = 0; i < 8; i++) l[i] = (uint8_t)(bits >> (56 - 8 * i));
  util_sha256_update(s, l, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(s->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)s->h[i];
  }
}

void util_sha256_hex(const void *p, size_t n, char out[65]) {
  util_sha256 s;
  uint8_t d[32];
  util_sha256_init(&s);
  util_sha256_update(&s, p, n);
  util_sha256_final(&s, d);
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* "<path>.sha256"; NULL (with util_err) when out of memory */
static char *util_seal_path(const char *path) {
  size_t n = strlen(path) + 8;
  char *p = util_malloc(n, "file name");
  if (p) snprintf(p, n, "%s.sha256", path);
  return p;
}

int util_cache_seal(const char *path, const void *data, size_t n) {
  char line[66], *sp = util_seal_path(path);
  if (!sp) return -1;
  util_sha256_hex(data, n, line);
  line[64] = '\n';
  int rc = util_write_file_atomic(sp, line, 65);
  free(sp);
  return rc;
}

const char *util_cache_check(const char *path, const void *data, size_t n) {
  char want[65], *sp = util_seal_path(path), *got = NULL;
  size_t len = 0;
  if (!sp) return "out of memory";
  int missing = !util_file_exists(sp), unreadable = !missing && util_read_file(sp, &got, &len);
  free(sp);
  util_errclear();
  if (missing) return "no content hash beside it";
  if (unreadable) return "its content hash cannot be read";
  util_sha256_hex(data, n, want);
  int ok = len == 65 && got[64] == '\n' && !memcmp(got, want, 64), garbled = len != 65 || got[64] != '\n' ||
                                                                           strspn(got, "0123456789abcdef") != 64;
  free(got);
  if (ok) return NULL;
  return garbled ? "its content hash file is damaged" : "its contents do not match their hash (damaged)";
}

int util_cache_verify(const char *path, char **data, size_t *n) {
  char *bytes;
  size_t len;
  const char *why = "it cannot be read";
  if (util_read_file(path, &bytes, &len) == 0) {
    why = util_cache_check(path, bytes, len);
    if (!why && data) {
      *data = bytes, *n = len;
      return 0;
    }
    free(bytes);
  }
  util_errclear();
  if (!why) return 0;
  fprintf(stderr, "gptc: cached object %s: %s; rebuilding it\n", path, why);
  return -1;
}

uint64_t util_fnv1a(const void *data, size_t n, uint64_t h) {
  const uint8_t *p = data;
  if (!h) h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* ---- UTF-8 ---- */
long util_utf8_invalid_at(const char *str, size_t n) {
  const uint8_t *s = (const uint8_t *)str;
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    int len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return (long)i;
    if (i + (size_t)len > n) return (long)i;
    for (int k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return (long)i;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (long)i;
    i += (size_t)len;
  }
  return -1;
}

int util_utf8_decode(const char *str, uint32_t *cp) {
  const uint8_t *s = (const uint8_t *)str;
  if (s[0] < 0x80) return *cp = s[0], 1;
  if ((s[0] & 0xE0) == 0xC0) return *cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F), 2;
  if ((s[0] & 0xF0) == 0xE0)
    return *cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F), 3;
  *cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
        (s[3] & 0x3F);
  return 4;
}

int util_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Edit distance of a and b, case-insensitive, counting an insertion, a
 * deletion, a substitution and a swap of neighbours as one edit each
 * ("trian" is one edit from "train"); names over 64 bytes are never close. */
static int util_edit_distance(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > 64 || nb > 64) return 99;
  int d[65][65];
  for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= na; i++)
    for (size_t j = 1; j <= nb; j++) {
      int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
      int v = d[i - 1][j - 1] + (ai != bj);
      if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) && tolower((unsigned char)a[i - 2]) == bj &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[na][nb];
}

const char *util_closest(const char *name, const char *const *cands, int n) {
  /* the leading dashes of an option do not count towards its length */
  const char *core = name;
  while (*core == '-') core++;
  size_t len = strlen(core), nlen = strlen(name);
  if (len < 3) return NULL;
  /* an abbreviation: the start of exactly one candidate */
  const char *prefix_of = NULL;
  int n_prefix = 0;
  for (int i = 0; i < n; i++)
    if (strlen(cands[i]) > nlen && !strncasecmp(cands[i], name, nlen)) prefix_of = cands[i], n_prefix++;
  if (n_prefix == 1) return prefix_of;
  /* else a misspelling: one edit in a short name, two in a name of six or more */
  const char *best = NULL;
  int best_d = len >= 6 ? 3 : 2;
  for (int i = 0; i < n; i++) {
    int d = util_edit_distance(name, cands[i]);
    if (d < best_d) best = cands[i], best_d = d;
  }
  return best;
}

double util_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t util_mem_total(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : (size_t)1 << 32;
}

size_t util_mem_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (f) {
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
      if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
        fclose(f);
        return (size_t)kb * 1024;
      }
    }
    fclose(f);
  }
  return util_mem_total();
}

const char *util_cache_dir(void) {
  static _Thread_local char path[4096]; /* (written on every call: per thread, as the cuda.c pool calls it) */
  const char *env = getenv("GPTC_CACHE");
  if (env && *env) return env;
  const char *home = getenv("HOME");
  snprintf(path, sizeof path, "%s/.cache/gptc", home && *home ? home : "/tmp");
  return path;
}

/* Objects are built with -march=native, so one built on another CPU model (a
 * cache directory shared between machines) may die of SIGILL, and a schedule
 * tuned on one may be slow on another: the JIT's cache key and the tuned
 * schedules' file name hash /proc/cpuinfo's first vendor, family, model,
 * model name and flags lines; $GPTC_CPU_ID replaces them (tests, or a cache
 * split by hand). */
int util_vec_bytes(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 64;
  if (__builtin_cpu_supports("avx2")) return 32;
#endif
  return 16;
}

void util_cpu_id(util_sha256 *s) {
  const char *env = getenv("GPTC_CPU_ID");
  if (env && *env) {
    util_sha256_update(s, env, strlen(env));
    return;
  }
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  static const char *const keys[] = {"vendor_id", "cpu family", "model\t", "model name", "flags"};
  int seen[sizeof keys / sizeof *keys] = {0};
  char line[8192];
  while (fgets(line, sizeof line, f)) {
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
      if (!seen[k] && !strncmp(line, keys[k], strlen(keys[k]))) {
        seen[k] = 1;
        util_sha256_update(s, line, strlen(line));
      }
    if (line[0] == '\n') break; /* the first processor's block is enough */
  }
  fclose(f);
}
