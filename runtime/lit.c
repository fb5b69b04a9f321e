/* lit: see lit.h. A recursive-descent reader over the bytes; it builds the
 * value with the Lua C API inside a protected call (lx_pcall), so running
 * out of the state's memory is an error, not a panic. */
#include "lit.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "lx.h"
#include "util.h"

typedef struct {
  const char *p, *end, *where;
  int line;
} lit_parser;

static int lit_fail(lua_State *L, lit_parser *ps, const char *rule) {
  lua_pushfstring(L, "%s: line %d: %s", ps->where, ps->line, rule);
  return lua_error(L);
}

/* What is at the cursor, for messages: a short quote, or "the end". */
static int lit_fail_near(lua_State *L, lit_parser *ps, const char *want) {
  char near[24];
  if (ps->p >= ps->end) {
    snprintf(near, sizeof near, "the end");
  } else {
    size_t n = 0;
    while (n < 12 && ps->p + n < ps->end && (unsigned char)ps->p[n] > ' ' && ps->p[n] != '\'' &&
           ps->p[n] != '"' && ((unsigned char)ps->p[n] < 0x80))
      n++;
    snprintf(near, sizeof near, "'%.*s'", (int)(n ? n : 1), n ? ps->p : "?");
    if (!n && (unsigned char)ps->p[0] > ' ' && (unsigned char)ps->p[0] < 0x80)
      snprintf(near, sizeof near, "'%c'", ps->p[0]);
  }
  lua_pushfstring(L,
                  "%s: line %d: expected %s near %s (a stored config is data: tables, strings, numbers and "
                  "booleans only)",
                  ps->where, ps->line, want, near);
  return lua_error(L);
}

static void lit_space(lit_parser *ps) {
  while (ps->p < ps->end) {
    char c = *ps->p;
    if (c == '\n') {
      ps->line++;
      ps->p++;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      ps->p++;
    } else if (c == '-' && ps->p + 1 < ps->end && ps->p[1] == '-') {
      if (ps->p + 3 < ps->end && ps->p[2] == '[' && (ps->p[3] == '[' || ps->p[3] == '=')) return; /* refused later */
      while (ps->p < ps->end && *ps->p != '\n') ps->p++;
    } else {
      return;
    }
  }
}

static int lit_is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int lit_is_name(char c) { return lit_is_name0(c) || (c >= '0' && c <= '9'); }

/* A word at the cursor equal to `w`, not followed by a name character. */
static int lit_word(lit_parser *ps, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0) return 0;
  if (ps->p + n < ps->end && lit_is_name(ps->p[n])) return 0;
  ps->p += n;
  return 1;
}

static int lit_hex(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One UTF-8 sequence for code point u (Lua allows up to 2^31 - 1). */
static void lit_utf8(luaL_Buffer *b, unsigned long u) {
  char buf[8];
  int n = 0;
  if (u < 0x80) {
    buf[n++] = (char)u;
  } else {
    unsigned long mfb = 0x3f; /* largest that fits in the first byte */
    char tmp[8];
    int k = 0;
    do {
      tmp[k++] = (char)(0x80 | (u & 0x3f));
      u >>= 6;
      mfb >>= 1;
    } while (u > mfb);
    buf[n++] = (char)((~mfb << 1) | u);
    while (k) buf[n++] = tmp[--k];
  }
  luaL_addlstring(b, buf, (size_t)n);
}

static void lit_string(lua_State *L, lit_parser *ps) {
  char q = *ps->p++;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    if (ps->p >= ps->end || *ps->p == '\n' || *ps->p == '\r') lit_fail(L, ps, "unfinished string");
    char c = *ps->p++;
    if (c == q) break;
    if (c != '\\') {
      luaL_addchar(&b, c);
      continue;
    }
    if (ps->p >= ps->end) lit_fail(L, ps, "unfinished string");
    c = *ps->p++;
    switch (c) {
      case 'a': luaL_addchar(&b, '\a'); break;
      case 'b': luaL_addchar(&b, '\b'); break;
      case 'f': luaL_addchar(&b, '\f'); break;
      case 'n': luaL_addchar(&b, '\n'); break;
      case 'r': luaL_addchar(&b, '\r'); break;
      case 't': luaL_addchar(&b, '\t'); break;
      case 'v': luaL_addchar(&b, '\v'); break;
      case '\\': case '"': case '\'': luaL_addchar(&b, c); break;
      case '\n': /* a backslash before a line break keeps the break (%q writes this) */
        ps->line++;
        luaL_addchar(&b, '\n');
        if (ps->p < ps->end && *ps->p == '\r') ps->p++;
        break;
      case '\r':
        ps->line++;
        luaL_addchar(&b, '\n');
        if (ps->p < ps->end && *ps->p == '\n') ps->p++;
        break;
      case 'z':
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r' ||
                                   *ps->p == '\f' || *ps->p == '\v'))
          if (*ps->p++ == '\n') ps->line++;
        break;
      case 'x': {
        int h1 = ps->p < ps->end ? lit_hex(ps->p[0]) : -1, h2 = ps->p + 1 < ps->end ? lit_hex(ps->p[1]) : -1;
        if (h1 < 0 || h2 < 0) lit_fail(L, ps, "\\x needs two hexadecimal digits");
        luaL_addchar(&b, (char)(h1 * 16 + h2));
        ps->p += 2;
        break;
      }
      case 'u': {
        if (ps->p >= ps->end || *ps->p != '{') lit_fail(L, ps, "\\u needs {hex digits}");
        ps->p++;
        unsigned long u = 0;
        int digits = 0;
        for (; ps->p < ps->end && lit_hex(*ps->p) >= 0; ps->p++, digits++) {
          u = u * 16 + (unsigned long)lit_hex(*ps->p);
          if (u > 0x7FFFFFFFul) lit_fail(L, ps, "\\u escape beyond 2^31");
        }
        if (!digits || ps->p >= ps->end || *ps->p != '}') lit_fail(L, ps, "\\u needs {hex digits}");
        ps->p++;
        lit_utf8(&b, u);
        break;
      }
      default:
        if (c >= '0' && c <= '9') {
          int v = c - '0';
          for (int i = 0; i < 2 && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; i++) v = v * 10 + (*ps->p++ - '0');
          if (v > 255) lit_fail(L, ps, "decimal escape above 255");
          luaL_addchar(&b, (char)v);
        } else {
          lit_fail(L, ps, "invalid escape sequence in a string");
        }
    }
  }
  luaL_pushresult(&b);
}

/* A numeral, or inf/nan, with an optional leading '-'. lua_stringtonumber
 * gives it exactly the value and type (integer or float) Lua would. */
static void lit_number(lua_State *L, lit_parser *ps) {
  int neg = 0;
  if (*ps->p == '-') {
    neg = 1;
    ps->p++;
  }
  if (lit_word(ps, "inf")) {
    lua_pushnumber(L, neg ? -HUGE_VAL : HUGE_VAL);
    return;
  }
  if (lit_word(ps, "nan")) {
    lua_pushnumber(L, (lua_Number)NAN);
    return;
  }
  const char *s = ps->p;
  if (s >= ps->end || !((*s >= '0' && *s <= '9') || *s == '.')) lit_fail_near(L, ps, "a value");
  while (ps->p < ps->end) {
    char c = *ps->p;
    if (lit_is_name(c) || c == '.') {
      ps->p++;
    } else if ((c == '+' || c == '-') && (ps->p[-1] == 'e' || ps->p[-1] == 'E' || ps->p[-1] == 'p' ||
                                          ps->p[-1] == 'P')) {
      ps->p++;
    } else {
      break;
    }
  }
  char buf[80];
  size_t n = (size_t)(ps->p - s);
  if (n + 2 > sizeof buf) lit_fail(L, ps, "number too long");
  buf[0] = '-';
  memcpy(buf + 1, s, n);
  buf[n + 1] = '\0';
  if (lua_stringtonumber(L, neg ? buf : buf + 1) == 0) lit_fail(L, ps, "malformed number");
}

static void lit_value(lua_State *L, lit_parser *ps, int depth);

static void lit_table(lua_State *L, lit_parser *ps, int depth) {
  if (depth >= LIT_MAX_DEPTH) lit_fail(L, ps, "tables nest too deep");
  luaL_checkstack(L, 4, "stored config");
  ps->p++; /* '{' */
  lua_newtable(L);
  lua_Integer next_index = 1;
  for (;;) {
    lit_space(ps);
    if (ps->p < ps->end && *ps->p == '}') break;
    /* key = value, [key] = value, or a positional value */
    const char *mark = ps->p;
    int mark_line = ps->line;
    int keyed = 0;
    if (ps->p < ps->end && *ps->p == '[') {
      ps->p++;
      lit_space(ps);
      if (ps->p < ps->end && (*ps->p == '"' || *ps->p == '\''))
        lit_string(L, ps);
      else if (ps->p < ps->end && (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9') || *ps->p == '.'))
        lit_number(L, ps);
      else
        lit_fail_near(L, ps, "a string or number key");
      if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))
        lit_fail(L, ps, "a key may not be nan");
      lit_space(ps);
      if (ps->p >= ps->end || *ps->p != ']') lit_fail_near(L, ps, "']'");
      ps->p++;
      keyed = 1;
    } else if (ps->p < ps->end && lit_is_name0(*ps->p)) {
      const char *s = ps->p;
      while (ps->p < ps->end && lit_is_name(*ps->p)) ps->p++;
      size_t n = (size_t)(ps->p - s);
      lit_space(ps);
      int is_value = (n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)) ||
                     (n == 3 && (!memcmp(s, "inf", 3) || !memcmp(s, "nan", 3)));
      if (ps->p < ps->end && *ps->p == '=' && !(ps->p + 1 < ps->end && ps->p[1] == '=') && !is_value) {
        lua_pushlstring(L, s, n);
        keyed = 1;
      } else {
        ps->p = mark, ps->line = mark_line; /* a positional value: true, false, inf, nan */
      }
    }
    if (keyed) {
      lit_space(ps);
      if (ps->p >= ps->end || *ps->p != '=') lit_fail_near(L, ps, "'='");
      ps->p++;
    } else {
      lua_pushinteger(L, next_index++);
    }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) != LUA_TNIL) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING) {
        const char *k = lua_tostring(L, -1);
        lua_pushfstring(L, "%s: line %d: key '%s' appears twice", ps->where, ps->line, k);
        lua_error(L);
      }
      lit_fail(L, ps, "a key appears twice");
    }
    lua_pop(L, 1);
    lit_value(L, ps, depth + 1);
    lua_rawset(L, -3);
    lit_space(ps);
    if (ps->p < ps->end && (*ps->p == ',' || *ps->p == ';')) {
      ps->p++;
      continue;
    }
    lit_space(ps);
    if (ps->p < ps->end && *ps->p == '}') break;
    lit_fail_near(L, ps, "',' or '}'");
  }
  ps->p++; /* '}' */
}

static void lit_value(lua_State *L, lit_parser *ps, int depth) {
  lit_space(ps);
  if (ps->p >= ps->end) lit_fail_near(L, ps, "a value");
  char c = *ps->p;
  if (c == '{') lit_table(L, ps, depth);
  else if (c == '"' || c == '\'') lit_string(L, ps);
  else if (lit_word(ps, "true")) lua_pushboolean(L, 1);
  else if (lit_word(ps, "false")) lua_pushboolean(L, 0);
  else if (c == '-' || c == '.' || (c >= '0' && c <= '9') || (c == 'i' || c == 'n')) lit_number(L, ps);
  else lit_fail_near(L, ps, "a value");
}

static int lit_parse(lua_State *L) {
  lit_parser *ps = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lit_space(ps);
  lit_word(ps, "return");
  lit_value(L, ps, 0);
  lit_space(ps);
  if (ps->p < ps->end) lit_fail_near(L, ps, "the end");
  return 1;
}

int lit_push(lua_State *L, const char *src, size_t n, const char *where) {
  lit_parser ps = {src, src + n, where, 1};
  if (memchr(src, '\0', n)) return util_err("%s: a NUL byte in a stored config", where);
  lua_pushcfunction(L, lit_parse);
  lua_pushlightuserdata(L, &ps);
  return lx_pcall(L, 1, 1);
}
