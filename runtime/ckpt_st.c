/* ckpt_st: safetensors files in general (ckpt.h's ckpt_st_*): reading with
 * the whole header validated first, F16/BF16 widened exactly, and streaming
 * atomic writing. gptc's own checkpoints on top of it are ckpt.c.
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON header
 * padded with spaces so the data starts 8-byte aligned, then the tensors'
 * bytes back to back in header order. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "json.h"
#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; ckpt_st.c reads and writes it in host order"
#endif

#define CKPT_MAX_HEADER 100000000u /* the limit PyPI's safetensors applies */

struct ckpt_st {
  char *path;
  FILE *f;
  uint64_t file_size, data_start;
  json_val *header;
  const json_val *meta; /* __metadata__ object, or NULL */
  int n;
  ckpt_st_tensor *t;
  const ckpt_st_tensor **by_name; /* t sorted by name */
  /* bytes after the last tensor's data, and where they start in the file:
   * an error, raised after the tensor names are checked where the caller
   * knows them (a missing tensor's entry leaves its data behind) */
  uint64_t tail, tail_at;
};

static const struct {
  const char *name;
  int size, dtype;
} ckpt_dtypes[] = {
    {"F32", 4, CKPT_F32},    {"F16", 2, CKPT_F16},       {"BF16", 2, CKPT_BF16},     {"F64", 8, CKPT_OTHER},
    {"I64", 8, CKPT_OTHER},  {"I32", 4, CKPT_OTHER},     {"I16", 2, CKPT_OTHER},     {"I8", 1, CKPT_OTHER},
    {"U64", 8, CKPT_OTHER},  {"U32", 4, CKPT_OTHER},     {"U16", 2, CKPT_OTHER},     {"U8", 1, CKPT_OTHER},
    {"BOOL", 1, CKPT_OTHER}, {"F8_E4M3", 1, CKPT_OTHER}, {"F8_E5M2", 1, CKPT_OTHER},
};

/* ---- reading ------------------------------------------------------------ */

void ckpt_shape_str(char *out, size_t cap, int ndim, const uint64_t *shape) {
  size_t k = (size_t)snprintf(out, cap, "[");
  for (int i = 0; i < ndim && k < cap; i++)
    k += (size_t)snprintf(out + k, cap - k, "%s%" PRIu64, i ? ", " : "", shape[i]);
  if (k < cap) snprintf(out + k, cap - k, "]");
}

static int ckpt_u64_field(const char *path, const char *tname, const char *field, const json_val *v, uint64_t *out) {
  if (v->type != JSON_NUM || !v->is_int || v->i < 0)
    return util_err("%s: tensor '%s': %s must hold non-negative integers (header byte %zu)", path, tname, field,
                    v->offset);
  *out = (uint64_t)v->i;
  return 0;
}

/* Parses one header entry into t (offsets checked against the data size). */
static int ckpt_st_entry(ckpt_st *st, const json_member *m, ckpt_st_tensor *t, uint64_t data_len) {
  const char *path = st->path, *name = m->key;
  if (strlen(name) != m->key_len)
    return util_err("%s: tensor name at header byte %zu contains a NUL character", path, m->key_offset);
  if (m->val.type != JSON_OBJ)
    return util_err("%s: tensor '%s': entry must be an object (got %s)", path, name, json_type_name(m->val.type));
  for (size_t i = 0; i < m->val.len; i++) {
    const char *k = m->val.members[i].key;
    if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
      return util_err("%s: tensor '%s': unknown field '%s' (expected dtype, shape, data_offsets)", path, name, k);
  }
  const json_val *dt = json_get(&m->val, "dtype"), *sh = json_get(&m->val, "shape"),
                 *off = json_get(&m->val, "data_offsets");
  if (!dt || !sh || !off) return util_err("%s: tensor '%s': entry needs dtype, shape and data_offsets", path, name);
  if (dt->type != JSON_STR) return util_err("%s: tensor '%s': dtype must be a string", path, name);
  int size = 0;
  for (size_t i = 0; i < sizeof ckpt_dtypes / sizeof ckpt_dtypes[0]; i++) {
    if (!strcmp(dt->str, ckpt_dtypes[i].name)) {
      size = ckpt_dtypes[i].size;
      t->dtype = ckpt_dtypes[i].dtype;
      snprintf(t->dtype_name, sizeof t->dtype_name, "%s", ckpt_dtypes[i].name);
    }
  }
  if (!size) return util_err("%s: tensor '%s': unknown dtype \"%.20s\"", path, name, dt->str);
  if (sh->type != JSON_ARR) return util_err("%s: tensor '%s': shape must be an array", path, name);
  if (sh->len > CKPT_MAX_DIMS)
    return util_err("%s: tensor '%s': shape has %zu dimensions (at most %d)", path, name, sh->len, CKPT_MAX_DIMS);
  t->ndim = (int)sh->len;
  t->numel = 1;
  for (int i = 0; i < t->ndim; i++) {
    if (ckpt_u64_field(path, name, "shape", &sh->items[i], &t->shape[i])) return -1;
    if (__builtin_mul_overflow(t->numel, t->shape[i], &t->numel))
      return util_err("%s: tensor '%s': shape overflows 64 bits", path, name);
  }
  if (off->type != JSON_ARR || off->len != 2)
    return util_err("%s: tensor '%s': data_offsets must be an array [begin, end]", path, name);
  if (ckpt_u64_field(path, name, "data_offsets", &off->items[0], &t->begin) ||
      ckpt_u64_field(path, name, "data_offsets", &off->items[1], &t->end))
    return -1;
  if (t->begin > t->end)
    return util_err("%s: tensor '%s': data_offsets begin %" PRIu64 " is after end %" PRIu64, path, name, t->begin,
                    t->end);
  uint64_t need;
  char shs[160];
  ckpt_shape_str(shs, sizeof shs, t->ndim, t->shape);
  if (__builtin_mul_overflow(t->numel, (uint64_t)size, &need) || need != t->end - t->begin)
    return util_err("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                    " bytes but %s %s needs %" PRIu64 " x %d",
                    path, name, t->begin, t->end, t->end - t->begin, t->dtype_name, shs, t->numel, size);
  if (t->end > data_len)
    return util_err("%s: truncated: tensor '%s' data ends at byte %" PRIu64 " but the file has %" PRIu64 " bytes", path,
                    name, st->data_start + t->end, st->file_size);
  return 0;
}

static int ckpt_cmp_begin(const void *a, const void *b) {
  const ckpt_st_tensor *x = *(const ckpt_st_tensor *const *)a, *y = *(const ckpt_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int ckpt_cmp_name(const void *a, const void *b) {
  return strcmp((*(const ckpt_st_tensor *const *)a)->name, (*(const ckpt_st_tensor *const *)b)->name);
}

/* The data section must be covered exactly: no overlap, no gap, no tail. */
static int ckpt_st_layout(ckpt_st *st, uint64_t data_len) {
  const ckpt_st_tensor **idx = util_malloc((size_t)(st->n ? st->n : 1) * sizeof *idx, "tensor index");
  if (!idx) return -1;
  for (int i = 0; i < st->n; i++) idx[i] = &st->t[i];
  qsort(idx, (size_t)st->n, sizeof *idx, ckpt_cmp_begin);
  uint64_t at = 0;
  const char *prev = NULL;
  for (int k = 0; k < st->n; k++) {
    const ckpt_st_tensor *t = idx[k];
    if (t->begin < at) {
      util_err("%s: tensor '%s' (data bytes [%" PRIu64 ", %" PRIu64 ")) overlaps tensor '%s'", st->path, t->name,
               t->begin, t->end, prev);
      free(idx);
      return -1;
    }
    if (t->begin > at) {
      util_err("%s: data bytes [%" PRIu64 ", %" PRIu64 ") (file byte %" PRIu64 ") belong to no tensor", st->path, at,
               t->begin, st->data_start + at);
      free(idx);
      return -1;
    }
    at = t->end;
    prev = t->name;
  }
  free(idx);
  st->tail = data_len - at;
  st->tail_at = st->data_start + at;
  return 0;
}

int ckpt_st_check_tail(const ckpt_st *st) {
  if (st->tail)
    return util_err("%s: %" PRIu64 " bytes after the last tensor's data (file byte %" PRIu64 ")", st->path, st->tail,
                    st->tail_at);
  return 0;
}

static int ckpt_st_parse(ckpt_st *st) {
  const char *path = st->path;
  struct stat sb;
  if (fstat(fileno(st->f), &sb) != 0) return util_err("%s: cannot stat: %s", path, strerror(errno));
  st->file_size = (uint64_t)sb.st_size;
  if (st->file_size < 8)
    return util_err("%s: truncated: %" PRIu64 " bytes, but a safetensors file starts with an 8-byte header length",
                    path, st->file_size);
  unsigned char len8[8];
  if (fread(len8, 1, 8, st->f) != 8) return util_err("%s: read error at byte 0", path);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  if (hlen == 0) return util_err("%s: header length (bytes 0-7) is 0", path);
  if (hlen > CKPT_MAX_HEADER)
    return util_err("%s: header length %" PRIu64 " (bytes 0-7) is over the limit of %u bytes", path, hlen,
                    CKPT_MAX_HEADER);
  if (hlen > st->file_size - 8)
    return util_err("%s: truncated: header length %" PRIu64 " (bytes 0-7) runs past the end of the file (%" PRIu64
                    " bytes)",
                    path, hlen, st->file_size);
  st->data_start = 8 + hlen;
  char *text = util_malloc((size_t)hlen, "safetensors header");
  if (!text) return -1;
  if (fread(text, 1, (size_t)hlen, st->f) != hlen) {
    free(text);
    return util_err("%s: read error in the header (bytes 8-%" PRIu64 ")", path, 8 + hlen);
  }
  char what[1100];
  snprintf(what, sizeof what, "%s: header", path);
  st->header = json_parse(text, (size_t)hlen, what);
  free(text);
  if (!st->header) return -1;
  if (st->header->type != JSON_OBJ)
    return util_err("%s: header must be a JSON object (got %s)", path, json_type_name(st->header->type));

  const json_val *h = st->header;
  st->t = util_calloc(h->len ? h->len : 1, sizeof *st->t, "tensor list");
  st->by_name = util_malloc((h->len ? h->len : 1) * sizeof *st->by_name, "tensor index");
  if (!st->t || !st->by_name) return -1;
  uint64_t data_len = st->file_size - st->data_start;
  for (size_t i = 0; i < h->len; i++) {
    const json_member *m = &h->members[i];
    if (!strcmp(m->key, "__metadata__") && m->key_len == 12) {
      if (m->val.type != JSON_OBJ)
        return util_err("%s: __metadata__ must be an object (got %s)", path, json_type_name(m->val.type));
      for (size_t k = 0; k < m->val.len; k++) {
        const json_member *e = &m->val.members[k];
        if (e->val.type != JSON_STR)
          return util_err("%s: __metadata__ value '%s' must be a string (got %s)", path, e->key,
                          json_type_name(e->val.type));
      }
      st->meta = &m->val;
      continue;
    }
    ckpt_st_tensor *t = &st->t[st->n];
    t->name = m->key;
    if (ckpt_st_entry(st, m, t, data_len)) return -1;
    st->by_name[st->n] = t;
    st->n++;
  }
  qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, ckpt_cmp_name);
  return ckpt_st_layout(st, data_len);
}

/* ckpt_st_open without the tail check (the caller makes it later). */
ckpt_st *ckpt_st_open_lax(const char *path) {
  ckpt_st *st = util_calloc(1, sizeof *st, "safetensors reader");
  if (!st) return NULL;
  st->path = util_strdup(path);
  if (!st->path) {
    free(st);
    return NULL;
  }
  int fd = util_open_regular(path, "a safetensors file", NULL);
  if (fd >= 0 && !(st->f = fdopen(fd, "rb"))) {
    util_err("%s: cannot open: %s", path, strerror(errno));
    close(fd);
  }
  if (!st->f) {
    ckpt_st_close(st);
    return NULL;
  }
  if (ckpt_st_parse(st)) {
    ckpt_st_close(st);
    return NULL;
  }
  return st;
}

ckpt_st *ckpt_st_open(const char *path) {
  ckpt_st *st = ckpt_st_open_lax(path);
  if (st && ckpt_st_check_tail(st)) {
    ckpt_st_close(st);
    return NULL;
  }
  return st;
}

void ckpt_st_close(ckpt_st *st) {
  if (!st) return;
  if (st->f) fclose(st->f);
  json_free(st->header);
  free(st->t);
  free(st->by_name);
  free(st->path);
  free(st);
}

int ckpt_st_count(const ckpt_st *st) { return st->n; }

const ckpt_st_tensor *ckpt_st_at(const ckpt_st *st, int i) { return i >= 0 && i < st->n ? &st->t[i] : NULL; }

const ckpt_st_tensor *ckpt_st_find(const ckpt_st *st, const char *name) {
  int lo = 0, hi = st->n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(st->by_name[mid]->name, name);
    if (!c) return st->by_name[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

const char *ckpt_st_meta(const ckpt_st *st, const char *key, size_t *len) {
  const json_val *v = json_get(st->meta, key);
  if (!v) return NULL;
  if (len) *len = v->len;
  return v->str;
}

static float ckpt_bits_f32(uint32_t bits) {
  float x;
  memcpy(&x, &bits, 4);
  return x;
}

static float ckpt_bf16_to_f32(uint16_t h) { return ckpt_bits_f32((uint32_t)h << 16); }

static float ckpt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f) return ckpt_bits_f32(sign | 0x7f800000u | man << 13);
  if (exp) return ckpt_bits_f32(sign | (exp + 112) << 23 | man << 13);
  if (!man) return ckpt_bits_f32(sign);
  /* subnormal half: shift the mantissa up to an implicit leading 1 */
  uint32_t e = 113;
  while (!(man & 0x400)) {
    man <<= 1;
    e--;
  }
  return ckpt_bits_f32(sign | e << 23 | (man & 0x3ff) << 13);
}

int ckpt_st_read_f32(ckpt_st *st, const ckpt_st_tensor *t, float *out) {
  if (t->dtype == CKPT_OTHER)
    return util_err("%s: tensor '%s' has dtype %s; only F32, F16 and BF16 can be read", st->path, t->name,
                    t->dtype_name);
  if (fseeko(st->f, (off_t)(st->data_start + t->begin), SEEK_SET) != 0)
    return util_err("%s: cannot seek to byte %" PRIu64 ": %s", st->path, st->data_start + t->begin, strerror(errno));
  if (t->dtype == CKPT_F32) {
    if (fread(out, 4, (size_t)t->numel, st->f) != t->numel)
      return util_err("%s: read error in tensor '%s' (file bytes from %" PRIu64 ")", st->path, t->name,
                      st->data_start + t->begin);
    return 0;
  }
  unsigned char buf[1 << 15];
  for (uint64_t done = 0; done < t->numel;) {
    size_t k = t->numel - done < sizeof buf / 2 ? (size_t)(t->numel - done) : sizeof buf / 2;
    if (fread(buf, 2, k, st->f) != k)
      return util_err("%s: read error in tensor '%s' (file bytes from %" PRIu64 ")", st->path, t->name,
                      st->data_start + t->begin);
    for (size_t i = 0; i < k; i++) {
      uint16_t h = (uint16_t)(buf[2 * i] | buf[2 * i + 1] << 8);
      out[done + i] = t->dtype == CKPT_BF16 ? ckpt_bf16_to_f32(h) : ckpt_f16_to_f32(h);
    }
    done += k;
  }
  return 0;
}

/* ---- writing ------------------------------------------------------------ */

/* (the atomic writes are util.c's: util_write_segs_atomic, util_commit_tmp) */

int ckpt_st_emit(const char *path, const ckpt_st_kv *meta, int n_meta, const ckpt_st_out *t, int n,
                 char **tmp_out) {
  util_buf h = {0};
  util_seg *seg = util_malloc((size_t)(n + 2) * sizeof *seg, "write list");
  if (!seg) return -1;
  char what[1200];
  uint64_t at = 0;
  int rc = -1;
  if (util_buf_add(&h, "{", 1)) goto out;
  if (n_meta > 0) {
    if (util_buf_printf(&h, "\"__metadata__\":{")) goto out;
    for (int i = 0; i < n_meta; i++) {
      snprintf(what, sizeof what, "%s: metadata '%s'", path, meta[i].key);
      if ((i && util_buf_add(&h, ",", 1)) || json_write_str(&h, meta[i].key, strlen(meta[i].key), what) ||
          util_buf_add(&h, ":", 1) || json_write_str(&h, meta[i].val, meta[i].len, what))
        goto out;
    }
    if (util_buf_add(&h, "}", 1)) goto out;
  }
  for (int i = 0; i < n; i++) {
    if (!t[i].name[0] || !strcmp(t[i].name, "__metadata__") || t[i].ndim < 0 || t[i].ndim > CKPT_MAX_DIMS) {
      util_err("%s: cannot write tensor '%s': bad name or rank %d", path, t[i].name, t[i].ndim);
      goto out;
    }
    for (int j = 0; j < i; j++) {
      if (!strcmp(t[i].name, t[j].name)) {
        util_err("%s: cannot write tensor '%s' twice", path, t[i].name);
        goto out;
      }
    }
    uint64_t numel = 1;
    for (int d = 0; d < t[i].ndim; d++) numel *= t[i].shape[d];
    snprintf(what, sizeof what, "%s: tensor name", path);
    if ((n_meta > 0 || i) && util_buf_add(&h, ",", 1)) goto out;
    if (json_write_str(&h, t[i].name, strlen(t[i].name), what) ||
        util_buf_printf(&h, ":{\"dtype\":\"F32\",\"shape\":["))
      goto out;
    for (int d = 0; d < t[i].ndim; d++)
      if (util_buf_printf(&h, "%s%" PRIu64, d ? "," : "", t[i].shape[d])) goto out;
    if (util_buf_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", at, at + 4 * numel)) goto out;
    seg[i + 2] = (util_seg){t[i].data, (size_t)(4 * numel)};
    at += 4 * numel;
  }
  if (util_buf_add(&h, "}", 1)) goto out;
  while ((8 + h.len) % 8)
    if (util_buf_add(&h, " ", 1)) goto out;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  seg[0] = (util_seg){len8, 8};
  seg[1] = (util_seg){h.data, h.len};
  rc = util_write_segs_atomic(path, seg, n + 2, tmp_out);
out:
  util_buf_free(&h);
  free(seg);
  return rc;
}

int ckpt_st_write(const char *path, const ckpt_st_kv *meta, int n_meta, const ckpt_st_out *t, int n) {
  return ckpt_st_emit(path, meta, n_meta, t, n, NULL);
}
