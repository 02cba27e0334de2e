/* The subcommands of the `osseg` tool. Each lives in its own cmd_*.c file
 * and receives argv with argv[0] = the subcommand name. Return value: the
 * process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef OSSEG_CLIENTS_COMMANDS_H
#define OSSEG_CLIENTS_COMMANDS_H

int osseg_cmd_ensemble(int argc, char **argv);
int osseg_cmd_dice(int argc, char **argv);
int osseg_cmd_view(int argc, char **argv);
int osseg_cmd_rle(int argc, char **argv);
int osseg_cmd_run_model(int argc, char **argv);
int osseg_cmd_model_info(int argc, char **argv);
int osseg_cmd_predict(int argc, char **argv);
int osseg_cmd_overlay(int argc, char **argv);
int osseg_cmd_quantize(int argc, char **argv);
/* Clients of the ossegd daemon (client_segment.c, osseg_client.h). */
int osseg_cmd_segment(int argc, char **argv);
int osseg_cmd_batch(int argc, char **argv);
int osseg_cmd_health(int argc, char **argv);
int osseg_cmd_models(int argc, char **argv);
int osseg_cmd_stats(int argc, char **argv);

/* Sets the OpenMP spin count for the engine's threads and re-executes the
 * tool, unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT (omp_env.c).
 * Call first thing in main. */
void osseg_cli_omp_policy(char **argv);

#endif
