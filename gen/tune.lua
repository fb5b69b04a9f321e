-- tune: the source `gptc tune` compiles (gen/bench.lua renders it: the
-- benchmark ABI, one op per candidate GEMM schedule) and the list of the
-- training step's GEMM instances it tunes.
local bench = require("bench")

return { body = bench.tune_body, header = bench.tune_header, gemms = bench.gemms }
