/* schedfile: the host's file of tuned GEMM schedules, written by `gptc tune`
 * (tune.c) and read by the generator's options (gen.c).
 *
 * One small text file per host, $GPTC_CACHE/tune/<key>.txt, the key a hash
 * of the CPU (util_cpu_id), its processor count, the vector width the
 * generator uses and the gptc version. One line a GEMM (or attention)
 * instance, named as in the generated source:
 *   gemm_256x2304x768_nt_bias mr=6 nv=2 mc=84 nc=256 kc=384 pack=0 unroll=1 # 1.23 ms, heuristic 1.41 ms
 *   attention_64x256 qb=4 kb=4 # 410 ms, heuristic 432 ms
 * The schedule's fields and rules are gen/cpu/schedule.lua's ('-' instead of a
 * schedule: measured no better than the heuristic, or not measured); '#'
 * starts a note. The file can be read and edited by hand: the generator
 * checks every schedule against the rules and falls back to the heuristic
 * (saying so in the source's header) for one that breaks them. */
#ifndef GPTC_SCHEDFILE_H
#define GPTC_SCHEDFILE_H

#include <stddef.h>

typedef struct {
  char name[96];   /* gemm_... or attention_... */
  char sched[128]; /* "mr=6 nv=2 ...", or "-" */
  char note[160];
} sched_entry;

typedef struct {
  char path[4200];
  sched_entry *e;
  int n, cap;
} sched_file;

/* The path of this host's file (the directory is not created). */
void sched_path(char *out, size_t n);
/* Loads this host's file (no file: no entries). A line that is not
 * `name schedule [# note]` is skipped with a warning on stderr naming the
 * file and line, so a damaged file costs its lines, not the run. -1 with
 * util_err only when the file exists but cannot be read. */
int sched_load(sched_file *f);
const sched_entry *sched_find(const sched_file *f, const char *name);
/* Adds or replaces the entry of `name`. */
int sched_set(sched_file *f, const char *name, const char *sched, const char *note);
/* Writes the file atomically, entries sorted by name, under a header naming the host. */
int sched_save(const sched_file *f);
void sched_free(sched_file *f);

#endif
