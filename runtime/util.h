/* util: error reporting, files, hashing, small helpers shared by all modules.
 *
 * Error convention: a function that can fail returns -1 (or NULL) after
 * calling util_err() with a one-line message that names the file, field or
 * option and the rule broken. The CLI prints it as "gptc: <message>" and
 * exits 1; tests compare it with util_errmsg(). */
#ifndef GPTC_UTIL_H
#define GPTC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define UTIL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define UTIL_PRINTF(a, b)
#endif

/* Sets the current error message (always returns -1 for `return util_err(..)`).
 * The message is the calling thread's own: an error set on a worker thread
 * must be copied out (as cuda.c's pool and tune.c do) for another to read. */
int util_err(const char *fmt, ...) UTIL_PRINTF(1, 2);
const char *util_errmsg(void);
void util_errclear(void);

/* Allocation that reports "out of memory: <what> needs N bytes" and returns NULL. */
void *util_malloc(size_t n, const char *what);
void *util_calloc(size_t n, size_t size, const char *what);
void *util_realloc(void *p, size_t n, const char *what);
char *util_strdup(const char *s);

/* Opens `path` for reading if it is a regular file, without ever blocking
 * (a FIFO with no writer, a device): else -1 with "<path>: not a regular
 * file (FIFO)" ("character device", "socket", ...), or "<path>: is a
 * directory, expected <what>". Returns the descriptor, *size its size. */
int util_open_regular(const char *path, const char *what, uint64_t *size);
/* "FIFO", "character device", ... for a st_mode (what the refusals name). */
const char *util_mode_name(unsigned mode);
/* Whole-file read of a regular file (util_open_regular), bounded by the
 * available memory (util_mem_available) before and while reading; the
 * buffer gets a NUL after the last byte. */
int util_read_file(const char *path, char **data, size_t *len);
/* util_read_file of a text document, with the rules every text gptc trains
 * or evaluates on meets: not empty, valid UTF-8 (the error names the file
 * and the byte offset). */
int util_read_text(const char *path, char **data, size_t *len);
/* Atomic write: temp file in the same directory, fsync, rename, dir fsync. */
int util_write_file_atomic(const char *path, const void *data, size_t len);
/* One piece of a file written from several buffers. */
typedef struct {
  const void *p;
  size_t n;
} util_seg;
/* util_write_file_atomic of the concatenated segments, streamed (a
 * checkpoint is hundreds of MB and is not copied into one buffer). With
 * tmp_out it stops before the rename and hands over the temp file's name
 * (malloc'ed): the caller renames it with util_commit_tmp, or unlinks it. */
int util_write_segs_atomic(const char *path, const util_seg *seg, int nseg, char **tmp_out);
/* Renames a finished temp file into place and fsyncs the directory, so the
 * rename itself survives a power cut; on failure the temp file is removed. */
int util_commit_tmp(const char *tmp, const char *path);
/* The temp file of `path` is path + UTIL_TMP_SUFFIX (mkstemp's template);
 * util_is_tmp_of says whether a directory entry is one of base's, so a run
 * can remove what a killed save left behind and nothing else. */
#define UTIL_TMP_SUFFIX ".tmpXXXXXX"
int util_is_tmp_of(const char *name, const char *base);
/* Formats a path into out[cap]; a path that does not fit is an error naming
 * it, never silently cut (a cut path writes somewhere else). */
int util_path(char *out, size_t cap, const char *fmt, ...) UTIL_PRINTF(3, 4);
/* Takes an exclusive flock on dir/.lock for the life of the process (the
 * kernel drops it when the process dies, even by kill -9), writing our pid
 * into it. Another holder is an error naming `dir` and its pid. Returns the
 * lock's fd (keep it open; close it to unlock) or -1. */
int util_lock_dir(const char *dir, const char *what);
int util_file_exists(const char *path);
int util_is_dir(const char *path);
int util_mkdir_p(const char *path);
/* fsync the directory that holds `path` (after a rename into it). */
int util_fsync_dir_of(const char *path);

/* Growable byte buffer. */
typedef struct {
  char *data;
  size_t len, cap;
} util_buf;
int util_buf_add(util_buf *b, const void *p, size_t n);
int util_buf_printf(util_buf *b, const char *fmt, ...) UTIL_PRINTF(2, 3);
void util_buf_free(util_buf *b);

/* SHA-256; util_sha256_hex writes 64 hex chars + NUL into out. */
typedef struct {
  uint32_t h[8];
  uint64_t len;
  uint8_t buf[64];
  size_t n;
} util_sha256;
void util_sha256_init(util_sha256 *s);
void util_sha256_update(util_sha256 *s, const void *p, size_t n);
void util_sha256_final(util_sha256 *s, uint8_t out[32]);
void util_sha256_hex(const void *p, size_t n, char out[65]);
/* Compiled objects in the cache carry their content's SHA-256 beside them,
 * in "<path>.sha256" (64 hex digits and a newline): the cache key names the
 * source, not the bytes, and a damaged object (flipped bits in .text) would
 * load and crash or compute garbage. util_cache_seal writes the hash of
 * data (the object's bytes) atomically, after the object is in place;
 * util_cache_check returns NULL when the hash beside `path` matches data,
 * else why not ("no content hash beside it", ...), for a one-line notice
 * before the object is rebuilt. */
int util_cache_seal(const char *path, const void *data, size_t n);
const char *util_cache_check(const char *path, const void *data, size_t n);
/* Reads the cached object at `path` and checks it: 0 with its bytes in
 * *data, *n (when data is not NULL; caller frees), or -1 after the notice
 * "gptc: cached object <path>: <why>; rebuilding it" on stderr. */
int util_cache_verify(const char *path, char **data, size_t *n);

/* This CPU's vector width in bytes (64 AVX-512, 32 AVX2, else 16). */
int util_vec_bytes(void);
/* This CPU's identity (vendor, family, model, name, flags; or $GPTC_CPU_ID) into s. */
void util_cpu_id(util_sha256 *s);
/* 64-bit FNV-1a, for cheap non-cryptographic keys. */
uint64_t util_fnv1a(const void *p, size_t n, uint64_t h);

/* UTF-8: index of the first invalid byte, or -1 when `s` is valid UTF-8
 * (overlongs, surrogates and code points above U+10FFFF are invalid). */
long util_utf8_invalid_at(const char *s, size_t n);
/* Decodes one code point from valid UTF-8; returns its byte length. */
int util_utf8_decode(const char *s, uint32_t *cp);
int util_utf8_encode(uint32_t cp, char out[4]);

/* The one of cands[0..n) a mistyped `name` most likely meant, or NULL: the
 * one candidate that name is the start of ("--temp" for "--temperature"),
 * else the closest by case-insensitive edit distance (insert, delete,
 * substitute, swap neighbours) within one edit for names of 3-5 characters
 * and two from 6 on (leading dashes not counted); ties go to the earlier.
 * For "did you mean" in option, command and config field errors. */
const char *util_closest(const char *name, const char *const *cands, int n);

double util_now(void);            /* monotonic seconds */
size_t util_mem_total(void);      /* physical memory in bytes */
size_t util_mem_available(void);  /* MemAvailable from /proc/meminfo (or total) */
const char *util_cache_dir(void); /* $GPTC_CACHE or ~/.cache/gptc */

#endif
