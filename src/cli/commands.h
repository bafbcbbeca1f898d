/* The subcommands of the `shardprop` executable: one file each under src/cli/.
 * Each takes the arguments after its name (argv[0] is the subcommand name) and
 * returns the process exit status. */
#ifndef SP_CLI_COMMANDS_H
#define SP_CLI_COMMANDS_H

typedef struct sp_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} sp_command;

/* Training (src/cli/cmd_train.c, cmd_demo.c). */
int sp_cmd_train(int argc, char **argv);
int sp_cmd_demo(int argc, char **argv);

/* Using a trained model (src/cli/cmd_eval.c, cmd_predict.c, cmd_generate.c). */
int sp_cmd_eval(int argc, char **argv);
int sp_cmd_predict(int argc, char **argv);
int sp_cmd_generate(int argc, char **argv);

/* The data tools (src/cli/cmd_<name>.c). */
int sp_cmd_import(int argc, char **argv);
int sp_cmd_synth(int argc, char **argv);
int sp_cmd_inspect(int argc, char **argv);
int sp_cmd_split(int argc, char **argv);

#endif
