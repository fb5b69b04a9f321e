/* ==== thunks and the op table ====
 * Per op: the specialized thunk calls the model's instance; the generic one
 * fills gd from dims and calls its generic_ twin; for a matmul the plain one
 * runs the product alone on a generic GEMM. Dropout runs with a fixed seed
 * and train = 1, so both variants draw the same masks. */
static const gptc_rng bench_rng = { {{seed}}u, 0, 1 };
/* the config's AdamW settings, step 1 */
static const gptc_adamw_args bench_adamw = {
  {{flit(tr.lr)}}, {{flit(tr.beta1)}}, {{flit(tr.beta2)}}, {{flit(tr.eps)}}, {{flit(tr.weight_decay)}}, 1.0f, 1,
};
% local function call(fn, r)
%   return (r.discard and "(void)" or "") .. fn .. "(" .. table.concat(r.args, ", ") .. ");"
% end
% local function quoted(list)
%   local q = {}
%   for _, x in ipairs(list) do q[#q + 1] = '"' .. x.name .. '"' end
%   return table.concat(q, ", ")
% end
% local function values(list)
%   local q = {}
%   for _, x in ipairs(list) do q[#q + 1] = string.format("%d", x.value) end
%   return table.concat(q, ", ")
% end
% for i, r in ipairs(ops) do
%   local id = "op" .. (i - 1)

/* ---- {{id}}: {{r.kernel}}, {{r.pass}}, {{r.calls}} call{{r.calls == 1 and "" or "s"}} per step
 * {{(r.what:gsub("%*/", "* /"))}} */
static void {{id}}_specialized(void *const *bufs, const int *dims) {
  (void)dims;
  {{call(r.spec_fn or r.kernel, r)}}
}

static void {{id}}_generic(void *const *bufs, const int *dims) {
%   if #r.dims == 0 then
  (void)dims;
%   end
%   for j, x in ipairs(r.dims) do
  gd.{{x.name}} = dims[{{j - 1}}];
%   end
%   for _, x in ipairs(r.derived) do
  gd.{{x.name}} = {{x.expr}};
%   end
  {{call(r.generic_kernel, r)}}
}
%   if r.gemm then

/* C = op(A) . op(B){{r.gemm.acc and " + C" or ""}} alone, on the generic GEMM */
static void {{id}}_plain(void *const *bufs, const int *dims) {
%     for j, x in ipairs(r.dims) do
  gd.{{x.name}} = dims[{{j - 1}}];
%     end
  {{r.plain_kernel}}(bufs[{{r.gemm.c}}], bufs[{{r.gemm.a}}], bufs[{{r.gemm.b}}], NULL);
}
%   end

static const gptc_bench_buf {{id}}_bufs[{{#r.bufs}}] = {
%   for _, b in ipairs(r.bufs) do
  { "{{b.name}}", {{b.numel}}, GPTC_BENCH_{{b.init}}, {{b.ids_below}}, {{b.out}} },
%   end
};
static const int {{id}}_dims[{{#r.dims}}] = { {{values(r.dims)}} };
static const char *const {{id}}_dim_names[{{#r.dims}}] = { {{quoted(r.dims)}} };
% end

static const gptc_bench_op bench_ops[{{#ops}}] = {
% for i, r in ipairs(ops) do
%   local id = "op" .. (i - 1)
  {
    .kernel = "{{r.kernel}}", .op = "{{r.op}}", .pass = "{{r.pass}}",
    .what = "{{c_string(r.what)}}",
    .calls = {{r.calls}}, .flops = {{num(r.flops)}}, .bytes = {{num(r.bytes)}},
    .compute_bound = {{r.compute_bound}},
    .n_bufs = {{#r.bufs}}, .bufs = {{id}}_bufs,
    .n_dims = {{#r.dims}}, .dims = {{id}}_dims, .dim_names = {{id}}_dim_names,
    .specialized = {{id}}_specialized, .generic = {{id}}_generic,
%   if r.gemm then
%     local g = r.gemm
    .gemm = 1, .M = {{g.M}}, .N = {{g.N}}, .K = {{g.K}},
    .ta = {{g.ta and 1 or 0}}, .tb = {{g.tb and 1 or 0}}, .accumulate = {{g.acc and 1 or 0}},
    .a_buf = {{g.a}}, .b_buf = {{g.b}}, .c_buf = {{g.c}}, .plain = {{id}}_plain,
%   end
  },
% end
};

static const gptc_bench bench = {
  GPTC_BENCH_ABI_VERSION, "{{c_string(config_name)}}", GPTC_SOURCE_HASH, {{#ops}}, bench_ops,
};

/* the one exported symbol (GPTC_BENCH_SYMBOL) */
__attribute__((visibility("default"))) const gptc_bench *gptc_bench_get(void);
const gptc_bench *gptc_bench_get(void) { return &bench; }
