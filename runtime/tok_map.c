/* tok_map: the byte-string -> int32 hash map of the tokenizers (see
 * tok_internal.h): BPE ranks, the BPE piece cache, word vocabularies. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

static uint32_t tok_map_hash(const void *key, size_t len) {
  uint64_t h = util_fnv1a(key, len, 0);
  return (uint32_t)(h ^ h >> 32);
}

int tok_map_init(tok_map *m, size_t expect) {
  memset(m, 0, sizeof *m);
  size_t cap = 16;
  while (cap < 2 * expect) cap *= 2;
  m->slot = util_calloc(cap, sizeof *m->slot, "tokenizer hash map");
  if (!m->slot) return -1;
  m->cap = cap;
  return 0;
}

static int tok_map_grow(tok_map *m) {
  size_t cap = m->cap * 2;
  tok_map_slot *s = util_calloc(cap, sizeof *s, "tokenizer hash map");
  if (!s) return -1;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slot[i].idx) continue;
    size_t j = m->slot[i].hash & (cap - 1);
    while (s[j].idx) j = (j + 1) & (cap - 1);
    s[j] = m->slot[i];
  }
  free(m->slot);
  m->slot = s;
  m->cap = cap;
  return 0;
}

/* The slot holding the key, or the empty slot where it would go. */
static size_t tok_map_find(const tok_map *m, const void *key, size_t len, uint32_t h) {
  size_t j = h & (m->cap - 1);
  for (;;) {
    const tok_map_slot *s = &m->slot[j];
    if (!s->idx) return j;
    if (s->hash == h) {
      const tok_map_ent *e = &m->ent[s->idx - 1];
      if (e->len == len && !memcmp(m->keys.data + e->off, key, len)) return j;
    }
    j = (j + 1) & (m->cap - 1);
  }
}

int32_t tok_map_get(const tok_map *m, const void *key, size_t len) {
  size_t j = tok_map_find(m, key, len, tok_map_hash(key, len));
  return m->slot[j].idx ? m->ent[m->slot[j].idx - 1].val : -1;
}

int tok_map_put(tok_map *m, const void *key, size_t len, int32_t val) {
  uint32_t h = tok_map_hash(key, len);
  size_t j = tok_map_find(m, key, len, h);
  if (m->slot[j].idx) return 0;
  if (len > UINT32_MAX || m->n >= UINT32_MAX - 1) return util_err("tokenizer hash map: too many or too long keys");
  if (m->n == m->ent_cap) {
    size_t cap = m->ent_cap ? m->ent_cap * 2 : 64;
    tok_map_ent *e = util_realloc(m->ent, cap * sizeof *e, "tokenizer hash map");
    if (!e) return -1;
    m->ent = e;
    m->ent_cap = cap;
  }
  tok_map_ent *e = &m->ent[m->n];
  e->off = m->keys.len;
  e->len = (uint32_t)len;
  e->val = val;
  if (util_buf_add(&m->keys, key, len)) return -1;
  m->slot[j].hash = h;
  m->slot[j].idx = (uint32_t)++m->n;
  if (2 * m->n > m->cap && tok_map_grow(m)) return -1;
  return 1;
}

void tok_map_clear(tok_map *m) {
  memset(m->slot, 0, m->cap * sizeof *m->slot);
  m->n = 0;
  m->keys.len = 0;
}

void tok_map_free(tok_map *m) {
  free(m->slot);
  free(m->ent);
  util_buf_free(&m->keys);
  memset(m, 0, sizeof *m);
}
