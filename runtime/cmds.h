/* cmds: the gptc subcommands. Each takes argv with argv[0] = the command name
 * and returns the process exit code (0 ok, 1 runtime error, 2 usage error). */
#ifndef GPTC_CMDS_H
#define GPTC_CMDS_H

int cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int cmd_data(int argc, char **argv);     /* cmd_data.c */
int cmd_gen(int argc, char **argv);      /* cmd_gen.c */
int cmd_train(int argc, char **argv);    /* cmd_train.c */
int cmd_eval(int argc, char **argv);     /* cmd_eval.c */
int cmd_sample(int argc, char **argv);   /* cmd_sample.c */
int cmd_import(int argc, char **argv);   /* cmd_ckpt.c */
int cmd_export_hf(int argc, char **argv);/* cmd_ckpt.c */
int cmd_export(int argc, char **argv);   /* cmd_export.c */
int cmd_bench(int argc, char **argv);    /* cmd_bench.c */
int cmd_tune(int argc, char **argv);     /* cmd_tune.c */
int cmd_sweep(int argc, char **argv);    /* cmd_sweep.c */
int cmd_plot(int argc, char **argv);     /* cmd_plot.c */
int cmd_help(int argc, char **argv);     /* main.c */

#endif
