/* The generator's passes (issue 16, item 4): gen/shapes.lua derives only
 * what both devices share, each device's layout pass (gen/cpu/layout.lua,
 * gen/cuda/layout.lua) adds its own buffers, and one fusion pass
 * (gen/fuse.lua) marks the op program for both emitters. The last is
 * checked by its effect: a fusion pass replaced (through GPTC_GEN_DIR, the
 * generator read from a directory, here one holding only gen/fuse.lua)
 * changes what the CPU source and the CUDA launch plan fuse, alike. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "gen.h"
#include "lx.h"
#include "testutil.h"
#include "util.h"

/* tiny-test: L=2, B=2, T=16, C=16, drop_rate 0; GELU's (B, T, 4C) has
 * 2048 elements and a residual stream's (B, T, C) 512. */
#define TINY_L 2

static void load_tiny(cfg_t *c) {
  ck_assert_msg(cfg_load_file(tu_src("configs/tiny-test.lua"), c) == 0, "%s", util_errmsg());
  ck_assert_msg(cfg_set_vocab(c, 65) == 0, "%s", util_errmsg());
}

/* Runs Lua `chunk` with the config as its argument, in a generator state;
 * it returns a string (malloc'ed copy returned) or raises. */
static char *run_lua(const cfg_t *c, const char *chunk) {
  lua_State *L = lx_new();
  ck_assert_ptr_nonnull(L);
  ck_assert_msg(luaL_loadstring(L, chunk) == LUA_OK, "%s", lua_tostring(L, -1));
  cfg_push(L, c);
  ck_assert_msg(lx_pcall(L, 1, 1) == 0, "%s", util_errmsg());
  ck_assert_msg(lua_type(L, -1) == LUA_TSTRING, "the chunk returned no string");
  char *s = util_strdup(lua_tostring(L, -1));
  lua_close(L);
  return s;
}

/* Occurrences of `needle` in `s`. */
static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* Lines of `s` that call fn: fn( after nothing but indentation (a
 * definition has KERNEL or a type before the name). */
static int calls(const char *s, const char *fn) {
  char needle[128];
  snprintf(needle, sizeof needle, "%s(", fn);
  int n = 0;
  size_t len = strlen(needle);
  for (const char *line = s; line; line = strchr(line, '\n')) {
    if (*line == '\n') line++;
    const char *p = line;
    while (*p == ' ') p++;
    if (p > line && !strncmp(p, needle, len)) n++;
  }
  return n;
}

/* Launch lines of the CUDA plan whose kernel starts with `prefix` and
 * whose name contains `part` ("" for any). */
static int launches(const char *s, const char *prefix, const char *part) {
  int n = 0;
  for (const char *p = strstr(s, "\n@k "); p; p = strstr(p + 1, "\n@k ")) {
    const char *fn = p + 4, *end = strchr(fn, ' ');
    size_t fl = end ? (size_t)(end - fn) : strlen(fn);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)fl, fn);
    if (!strncmp(name, prefix, strlen(prefix)) && strstr(name, part)) n++;
  }
  return n;
}

/* `gptc gen` of tiny-test for `device`: the source it writes (malloc'ed).
 * gen_dir: GPTC_GEN_DIR for the run, or NULL for the embedded generator. */
static char *gen(const char *device, const char *gen_dir) {
  static int run;
  char out[1024], path[1200];
  snprintf(out, sizeof out, "%s/gen-%s-%d", tu_tmpdir(), device, run++);
  tu_run_result r;
  int code = tu_sh(&r, NULL, "%s%s%s timeout 300 '%s' gen --config '%s' --device %s --vocab-size 65 -o '%s'",
                   gen_dir ? "GPTC_GEN_DIR='" : "", gen_dir ? gen_dir : "", gen_dir ? "'" : "", GPTC_EXE,
                   tu_src("configs/tiny-test.lua"), device, out);
  ck_assert_msg(code == 0, "gptc gen --device %s: %s", device, r.err);
  tu_run_free(&r);
  snprintf(path, sizeof path, "%s/model.%s", out, strcmp(device, "cuda") ? "c" : "cu");
  char *text;
  size_t n;
  ck_assert_msg(util_read_file(path, &text, &n) == 0, "%s", util_errmsg());
  return text;
}

/* ---- shapes.lua holds no device's buffers ---- */

static const char shapes_chunk[] =
    "local cfg = ...\n"
    "local S = require('shapes').derive(cfg)\n"
    "for _, k in ipairs({ 'acts', 'eval_acts', 'grad_acts', 'memory' }) do\n"
    "  if S[k] ~= nil then return 'device field S.' .. k end\n"
    "end\n"
    "local seen = {}\n"
    "local function walk(t, path)\n"
    "  if seen[t] then return end\n"
    "  seen[t] = true\n"
    "  for k, v in pairs(t) do\n"
    "    local p = path .. '.' .. tostring(k)\n"
    /* the devices' buffers, by name anywhere */
    "    for _, dev in ipairs({ 'att_scratch', 'att_lse' }) do\n"
    "      if k == dev or v == dev then return 'device name ' .. dev .. ' at ' .. p end\n"
    "    end\n"
    /* the layout and fusion passes' fields on ops */
    "    for _, mark in ipairs({ 'scratch', 'fused', 'fused_bwd', 'residual', 'gelu_out', 'gelu_grad_of' }) do\n"
    "      if k == mark then return 'pass field ' .. mark .. ' at ' .. p end\n"
    "    end\n"
    "    if type(v) == 'table' then\n"
    "      local r = walk(v, p)\n"
    "      if r then return r end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local r = walk(S, 'S')\n"
    "if r then return r end\n"
    /* the training attention op keeps nothing of its own in the shapes */
    "for _, op in ipairs(S.train.layer) do\n"
    "  if op.kind == 'attention' and op.att ~= nil then return 'attention op has att' end\n"
    "end\n"
    "return 'ok'\n";

START_TEST(shapes_neutral) {
  cfg_t c;
  load_tiny(&c);
  char *r = run_lua(&c, shapes_chunk);
  ck_assert_str_eq(r, "ok");
  free(r);
}
END_TEST

/* Each device's layout: its own buffers where it puts them, the shared
 * ones with the same shapes on both. Returns a line per finding. */
static const char layouts_chunk[] =
    "local cfg = ...\n"
    "local shapes = require('shapes')\n"
    "local cpu = require('cpu.layout').derive(cfg)\n"
    "local ca, ce, cg = require('cuda.layout').acts(shapes.derive(cfg))\n"
    "local o = {}\n"
    "local function say(fmt, ...) o[#o + 1] = string.format(fmt, ...) end\n"
    "local a = cpu.acts.by.att\n"
    "say('cpu att %s stride>0 %s', shapes.shape_str(a.shape), tostring(a.stride > 0))\n"
    "for _, lay in ipairs({ cpu.acts, cpu.eval_acts, cpu.grad_acts }) do\n"
    "  local last = lay.buffers[#lay.buffers]\n"
    "  say('cpu %s last %s %s', lay.name, last.name, shapes.shape_str(last.shape))\n"
    "end\n"
    "local l = ca.by.att_lse\n"
    "say('cuda att_lse %s stride>0 %s', shapes.shape_str(l.shape), tostring(l.stride > 0))\n"
    "say('cuda att %s att_scratch %s %s %s', tostring(ca.by.att), tostring(ca.by.att_scratch),\n"
    "  tostring(ce.by.att_scratch), tostring(cg.by.att_scratch))\n"
    /* every buffer but the devices' own: present on both, same shape */
    "local own = { att = 1, att_scratch = 1, att_lse = 1 }\n"
    "local pairs_ = { { cpu.acts, ca }, { cpu.eval_acts, ce }, { cpu.grad_acts, cg } }\n"
    "local n = 0\n"
    "for _, p in ipairs(pairs_) do\n"
    "  for i = 1, 2 do\n"
    "    local x, y = p[i], p[3 - i]\n"
    "    for _, b in ipairs(x.buffers) do\n"
    "      if not own[b.name] then\n"
    "        n = n + 1\n"
    "        local c = y.by[b.name]\n"
    "        if not c then say('%s: %s only on one device', x.name, b.name)\n"
    "        elseif shapes.shape_str(c.shape) ~= shapes.shape_str(b.shape) or c.stride > 0 ~= (b.stride > 0) then\n"
    "          say('%s: %s differs', x.name, b.name) end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "say('shared checks %d', n)\n"
    /* the CPU pass gives attention its buffers */
    "for _, m in ipairs({ 'train', 'eval' }) do\n"
    "  for _, op in ipairs(cpu[m].layer) do\n"
    "    if op.kind == 'attention' then\n"
    "      say('cpu %s attention att=%s scratch=%s', m, op.att and op.att.buf or '-', op.scratch.buf)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return table.concat(o, '\\n')\n";

START_TEST(device_layouts) {
  cfg_t c;
  load_tiny(&c);
  char *r = run_lua(&c, layouts_chunk);
  /* the scratch sizes S are gen/cpu/layout.lua's att_scratch (forward,
   * T=16: Tp=32, hd=8: 8*48 + 2*8*32 + 2*8*8 + 32 + 128 = 1184) and
   * att_grad_scratch (8*48 + 2*16*32 + 8*32 + 2*8*8 + 32 + 128 = 1952);
   * shared: acts 19 buffers (encoded, 12 a layer, 6 of the tail), eval_acts
   * 18 (res3 doubles as encoded), grad_acts 6, each looked up both ways */
  ck_assert_str_eq(r, "cpu att (B=2, H=2, T=16, T=16) stride>0 true\n"
                      "cpu acts last att_scratch (B=2, H=2, S=1184)\n"
                      "cpu eval_acts last att_scratch (B=2, H=2, S=1184)\n"
                      "cpu grad_acts last att_scratch (B=2, H=2, S=1952)\n"
                      "cuda att_lse (B=2, H=2, T=16) stride>0 true\n"
                      "cuda att nil att_scratch nil nil nil\n"
                      "shared checks 86\n"
                      "cpu train attention att=att scratch=att_scratch\n"
                      "cpu eval attention att=- scratch=att_scratch");
  free(r);
}
END_TEST

/* ---- one fusion pass ---- */

/* The marks gen/fuse.lua leaves on the op program, one line per marked op. */
static const char marks_chunk[] =
    "local cfg, enabled = ...\n"
    "local S = require('fuse').run(require('shapes').derive(cfg), { enabled = enabled })\n"
    "local o = {}\n"
    "for _, mode in ipairs({ 'train', 'eval' }) do\n"
    "  for _, part in ipairs({ 'pre', 'layer', 'post' }) do\n"
    "    for i, op in ipairs(S[mode][part]) do\n"
    "      local m = {}\n"
    "      if op.residual then m[#m + 1] = 'residual=' .. op.residual.out.buf end\n"
    "      if op.gelu_out then m[#m + 1] = 'gelu_out=' .. op.gelu_out.buf end\n"
    "      if op.gelu_grad_of then m[#m + 1] = 'gelu_grad_of=' .. op.gelu_grad_of.buf end\n"
    "      if op.fused then m[#m + 1] = 'fused' end\n"
    "      if op.fused_bwd then m[#m + 1] = 'fused_bwd' end\n"
    "      if #m > 0 then o[#o + 1] = string.format('%s.%s[%d] %s %s', mode, part, i, op.kind,\n"
    "        table.concat(m, ' ')) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return table.concat(o, '\\n')\n";

static char *marks(const cfg_t *c, int enabled) {
  char chunk[sizeof marks_chunk + 64];
  /* the second argument: the pass's opts.enabled */
  snprintf(chunk, sizeof chunk, "local a = ... return (function(...) %s end)(a, %s)", marks_chunk,
           enabled ? "true" : "false");
  return run_lua(c, chunk);
}

START_TEST(fuse_marks) {
  cfg_t c;
  load_tiny(&c);
  char *m = marks(&c, 1);
  /* layer ops: ln1, qkv, attention, c_proj (res2), residual, ln2, c_fc
   * (fch), gelu, c_proj (res3), residual */
  const char *layer = "layer[4] matmul residual=res2\n"
                      "%s.layer[5] residual fused\n"
                      "%s.layer[7] matmul gelu_out=fch_gelu\n"
                      "%s.layer[8] gelu fused fused_bwd\n"
                      "%s.layer[9] matmul residual=res3 gelu_grad_of=fch\n"
                      "%s.layer[10] residual fused";
  char want[1024], t[400], e[400];
  snprintf(t, sizeof t, layer, "train", "train", "train", "train", "train");
  snprintf(e, sizeof e, layer, "eval", "eval", "eval", "eval", "eval");
  snprintf(want, sizeof want, "train.%s\neval.%s", t, e);
  ck_assert_str_eq(m, want);
  free(m);
  m = marks(&c, 0);
  ck_assert_str_eq(m, "");
  free(m);
}
END_TEST

/* What the CPU source fuses, from its pass comments and calls. */
static void cpu_fusions(const char *src, int residual, int gelu) {
  /* the layer loop is written once per pass (training, evaluation) */
  ck_assert_int_eq(count(src, "(residual fused) */"), residual ? 2 * 2 : 0);
  ck_assert_int_eq(calls(src, "residual_512_forward"), residual ? 0 : 2 * 2);
  ck_assert_int_eq(count(src, "fch_gelu = GELU(fch), fused */"), gelu ? 2 : 0);
  ck_assert_int_eq(calls(src, "gelu_2048_forward"), gelu ? 0 : 2);
  ck_assert_int_eq(count(src, "times GELU'(fch) (fused)"), gelu ? 1 : 0);
  ck_assert_int_eq(calls(src, "gelu_2048_backward"), gelu ? 0 : 1);
  /* the residual's backward is its own kernel either way */
  ck_assert_int_eq(calls(src, "residual_512_backward"), 2);
}

/* What the CUDA launch plan fuses, from its launches: each layer is
 * unrolled (L of them) in the training and the evaluation forward. */
static void cuda_fusions(const char *src, int residual, int gelu) {
  ck_assert_int_eq(launches(src, "gemm_", "_residual"), residual ? 2 * 2 * TINY_L : 0);
  ck_assert_int_eq(launches(src, "residual_512", ""), residual ? 0 : 2 * 2 * TINY_L);
  ck_assert_int_eq(launches(src, "gemm_", "_gelu_bias"), gelu ? 2 * TINY_L : 0);
  ck_assert_int_eq(launches(src, "gelu_fwd_2048", ""), gelu ? 0 : 2 * TINY_L);
  ck_assert_int_eq(launches(src, "gemm_", "_gelu_bwd"), gelu ? TINY_L : 0);
  ck_assert_int_eq(launches(src, "gelu_bwd_2048", ""), gelu ? 0 : TINY_L);
}

START_TEST(emitters_follow_marks) {
  char *cpu = gen("cpu", NULL), *cuda = gen("cuda", NULL);
  cpu_fusions(cpu, 1, 1);
  cuda_fusions(cuda, 1, 1);
  free(cpu);
  free(cuda);
}
END_TEST

/* A fusion pass with the GELU rule left out, and one that marks nothing:
 * the API of gen/fuse.lua (run(S, opts) marks S's programs in place). */
static const char fuse_residual_only[] =
    "local M = {}\n"
    "function M.run(S, opts)\n"
    "  if opts and opts.enabled == false then return S end\n"
    "  for _, prog in ipairs({ S.train, S.eval }) do\n"
    "    local ops = prog.layer\n"
    "    for i = 1, #ops - 1 do\n"
    "      local a, r = ops[i], ops[i + 1]\n"
    "      if a.kind == 'matmul' and r.kind == 'residual' and r.out.buf == a.out.buf then\n"
    "        a.residual, r.fused = r, true\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  return S\n"
    "end\n"
    "return M\n";
static const char fuse_nothing[] = "return { run = function(S) return S end }\n";

/* A generator directory holding only gen/fuse.lua (the rest is read from
 * the embedded files). */
static const char *gen_dir(const char *name, const char *fuse_src) {
  static char dir[1024];
  char path[1200];
  snprintf(dir, sizeof dir, "%s/%s", tu_tmpdir(), name);
  snprintf(path, sizeof path, "%s/gen", dir);
  ck_assert_int_eq(util_mkdir_p(path), 0);
  snprintf(path, sizeof path, "%s/gen/fuse.lua", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(fuse_src, f);
  ck_assert_int_eq(fclose(f), 0);
  return dir;
}

START_TEST(one_pass_drives_both) {
  const char *dir = gen_dir("residual-only", fuse_residual_only);
  char *cpu = gen("cpu", dir), *cuda = gen("cuda", dir);
  cpu_fusions(cpu, 1, 0);
  cuda_fusions(cuda, 1, 0);
  free(cpu);
  free(cuda);
  dir = gen_dir("nothing", fuse_nothing);
  cpu = gen("cpu", dir);
  cuda = gen("cuda", dir);
  cpu_fusions(cpu, 0, 0);
  cuda_fusions(cuda, 0, 0);
  free(cpu);
  free(cuda);
}
END_TEST

int main(void) {
  Suite *s = suite_create("passes");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, shapes_neutral);
  tcase_add_test(tc, device_layouts);
  tcase_add_test(tc, fuse_marks);
  tcase_add_test(tc, emitters_follow_marks);
  tcase_add_test(tc, one_pass_drives_both);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
