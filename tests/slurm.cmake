# train.sbatch on a real one-node SLURM cluster started by the test (scripts/slurm/local-cluster.sh;
# needs root and slurm-wlm + munge, installed with apt-get when missing). Not skipped when SLURM
# cannot be set up: the tests fail and say why. Run only these with `ctest -L slurm`, or leave
# them out with `ctest -LE slurm`.
#   slurm_script:  the batch script's logic with a stand-in trainer (tests/slurm_fake_shardprop.sh):
#                  USR1 forwarded to every rank (srun and mpirun), requeue, resume, no requeue on
#                  a crash.
#   slurm_requeue: the real trainer: an uninterrupted run, then the warning signal mid-run with
#                  srun and with mpirun: checkpointed, requeued, resumed, finished with the same
#                  final parameters; a failing run is not requeued.
add_test(NAME slurm_script COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm_test.sh --fake)
add_test(NAME slurm_requeue
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm_test.sh $<TARGET_FILE:shardprop_cli>)
set_tests_properties(slurm_script slurm_requeue PROPERTIES TIMEOUT 300 LABELS slurm
    RESOURCE_LOCK slurm PROCESSORS 2 ENVIRONMENT "${SP_TEST_ENV}")
