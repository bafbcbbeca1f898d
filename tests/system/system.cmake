# Integration: whole runs of the `shardprop` executable (alone and under mpiexec), tests that
# exercise several modules of src/ together, and the build, install and batch-system checks.

# ---- Several modules in one process
# Thread invariance of training steps (model, loss, optimizer) with 1, 2 and 3 OpenMP threads.
sp_test(threads)
# Sizes from outside are never trusted: the memory limit of util/mem.h at the model, optimizer,
# data-file, loader and importer allocation sites; the in-memory entry points of the fuzz targets.
sp_test(limits TIMEOUT 60)

# ---- `shardprop train` through the executable
sp_test(train_mpi TIMEOUT 600 LABELS mpi)
target_link_libraries(test_train_mpi PRIVATE sp_trainutil)
sp_test(resume TIMEOUT 600 LABELS mpi)
target_link_libraries(test_resume PRIVATE sp_trainutil)
# --keep-best, --best-metric and --early-stop on a run that overfits: best.h5, the stop epoch,
# resumes mid-epoch and between epochs, 2 ranks, bad flags (test_best.c).
sp_test(best TIMEOUT 300 LABELS mpi)
target_link_libraries(test_best PRIVATE sp_trainutil)
sp_test(deterministic TIMEOUT 900 LABELS mpi)
target_link_libraries(test_deterministic PRIVATE sp_trainutil)
# --augment: bitwise layouts with --deterministic, ranks within 1e-5 and threads bitwise without,
# bitwise resume mid-epoch (another list refused), validation not augmented, errors
# (test_augment.c).
sp_test(augment TIMEOUT 600 LABELS mpi)
target_link_libraries(test_augment PRIVATE sp_trainutil)
set_tests_properties(augment PROPERTIES PROCESSORS 2)
# --accum-steps: the parameters of the whole batch (1e-5; bitwise with --deterministic on
# 1x1, 2x1, 1x2), bitwise resume, a signal acted on at an optimizer step, errors, --dry-run.
sp_test(accum TIMEOUT 600 LABELS mpi)
target_link_libraries(test_accum PRIVATE sp_trainutil)
# Graphs (residual blocks, named joins, batch and layer norm) trained through the executable:
# synchronized batch norm on 1-4 ranks, --bn-stats local, threads, bitwise resume,
# --deterministic layouts, bad specs and --model @FILE, the --dry-run graph (test_graph_train.c).
sp_test(graph_train TIMEOUT 600 LABELS mpi) # about 45 s; ~200 s in the sanitizer build
target_link_libraries(test_graph_train PRIVATE sp_trainutil)
set_tests_properties(graph_train PROPERTIES PROCESSORS 2)
# A GPT (embeddings, causal attention, tied output) on token data through the executable: 1-4
# ranks, threads, bitwise resume, --deterministic layouts, generate, errors (test_gpt_train.c).
sp_test(gpt_train TIMEOUT 600 LABELS mpi)
target_link_libraries(test_gpt_train PRIVATE sp_trainutil)
set_tests_properties(gpt_train PROPERTIES PROCESSORS 2)
# --trace, the straggler line and --layer-stats end to end (trace_test.py; the trace and metrics
# files parsed with /usr/bin/python3, scripts/plot_metrics.py run on the layer statistics).
foreach(t trace straggler layer_stats)
  add_test(NAME train_${t} COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/trace_test.py ${t})
  set_tests_properties(train_${t} PROPERTIES TIMEOUT 300 ENVIRONMENT "${SP_TEST_ENV}"
      PROCESSORS 2 LABELS mpi)
endforeach()

# ---- Injected faults (issue 8; test_kill_resume.c, test_faults.c): kill -9 at random moments
# then --resume auto (bitwise), a checkpoint directory that fills up or turns read-only mid-run,
# NaN/Inf with --on-nonfinite stop|skip, a data file truncated or replaced under the reader. Both
# are end-to-end runs of the executable under mpiexec; each bounded by TIMEOUT.
sp_test(kill_resume TIMEOUT 420 LABELS mpi faults)
target_link_libraries(test_kill_resume PRIVATE sp_trainutil)
sp_test(faults TIMEOUT 300 LABELS mpi faults)
target_link_libraries(test_faults PRIVATE sp_trainutil)
target_compile_options(test_faults PRIVATE -Wno-format-truncation) # fixed buffers, paths under TMPDIR

# ---- Using a trained model: shardprop eval / predict / inspect MODEL.h5, alone and under mpiexec
# (test_eval.c; it starts mpiexec itself, 2 and 3 ranks). Its PyTorch cross-check:
# tests/torch/predict_torch.py.
sp_test(eval TIMEOUT 600 LABELS mpi) # about 25 s; ~170 s in the sanitizer build
target_link_libraries(test_eval PRIVATE sp_trainutil)
set_tests_properties(eval PROPERTIES PROCESSORS 2)

# ---- A data set as shard files (test_shards.c): split --shards, inspect of the set, training on
# the shards bitwise equal to the one file (1 and 2 ranks, --deterministic layouts, a virtual
# dataset over the shards), --shuffle shards across layouts, eval and predict, the errors.
sp_test(shards TIMEOUT 600 LABELS mpi)
target_link_libraries(test_shards PRIVATE sp_trainutil)
set_tests_properties(shards PROPERTIES PROCESSORS 2)

# ---- The demo: two spirals in memory reach 99% training accuracy within its default 30 epochs
# (the command exits non-zero when they do not).
add_test(NAME demo COMMAND shardprop_cli demo --quiet --epochs 30)
set_tests_properties(demo PROPERTIES TIMEOUT 120 PASS_REGULAR_EXPRESSION "meets the 0.99 target")

# ---- Smoke test of the benchmark harness, shardprop side only (no peers, no pip): a --quick run
# of every workload on 1x1, 1x2 and 2x1 that must produce every field. Speed is never asserted; a
# run pinned to fewer cores than it has threads fails it.
add_test(NAME bench_smoke
  COMMAND ${CMAKE_SOURCE_DIR}/scripts/bench/run.sh --quick --no-build --no-gemm --peers none
          --check --layouts "1x1 1x2 2x1" --build ${CMAKE_BINARY_DIR}
          --results ${CMAKE_BINARY_DIR}/bench/smoke)
set_tests_properties(bench_smoke PROPERTIES TIMEOUT 600 LABELS bench PROCESSORS 2
    ENVIRONMENT "${SP_TEST_ENV}")

# ---- install: cmake --install into a temporary prefix, then build scripts/examples against it
# with find_package(shardprop) and with pkg-config, and train with both (install.sh).
find_program(SP_PKG_CONFIG pkg-config)
if(SP_PKG_CONFIG)
  set(SP_CONSUMER_FLAGS "")
  if(SHARDPROP_SANITIZE OR SHARDPROP_FUZZ)
    set(SP_CONSUMER_FLAGS "-fsanitize=address,undefined")
  endif()
  add_test(NAME install
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/install.sh ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR}
            ${CMAKE_C_COMPILER} "${SP_CONSUMER_FLAGS}")
  set_tests_properties(install PROPERTIES LABELS install TIMEOUT 180
      ENVIRONMENT "${SP_TEST_ENV}")
else()
  message(STATUS "pkg-config not found: the install test is skipped")
endif()

# ---- train.sbatch on a real one-node SLURM cluster started by the test
# (scripts/slurm/local-cluster.sh; needs root and slurm-wlm + munge, installed with apt-get when
# missing). Not skipped when SLURM cannot be set up: the tests fail and say why. Run only these
# with `ctest -L slurm`, or leave them out with `ctest -LE slurm`.
#   slurm_script:  the batch script's logic with a stand-in trainer (slurm_fake_shardprop.sh):
#                  USR1 forwarded to every rank (srun and mpirun), requeue, resume, no requeue on
#                  a crash.
#   slurm_requeue: the real trainer: an uninterrupted run, then the warning signal mid-run with
#                  srun and with mpirun: checkpointed, requeued, resumed, finished with the same
#                  final parameters; a failing run is not requeued.
#   slurm_multinode: the same on 2 emulated nodes (network namespaces of scripts/cluster/cluster.sh,
#                  one slurmd each; `sbatch -N 2`, a rank per node over TCP): both nodes ran ranks
#                  in every start, bitwise the parameters of the uninterrupted run; a job with
#                  two ranks per node. About 50 s.
add_test(NAME slurm_script COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/slurm_test.sh --fake)
add_test(NAME slurm_requeue
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/slurm_test.sh $<TARGET_FILE:shardprop_cli>)
add_test(NAME slurm_multinode
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/slurm_test.sh --nodes 2 $<TARGET_FILE:shardprop_cli>)
set_tests_properties(slurm_script slurm_requeue slurm_multinode PROPERTIES TIMEOUT 300 LABELS slurm
    RESOURCE_LOCK slurm PROCESSORS 2 ENVIRONMENT "${SP_TEST_ENV}")

# ---- The trainer across emulated hosts: network namespaces joined by a bridge, real TCP between
# them (scripts/cluster/cluster.sh; needs root and iproute2, installed with apt-get when missing).
# Each test brings up a cluster of its own and always tears it down; when namespaces cannot be
# created the test fails and says why. Run only these with `ctest -L cluster`.
#   cluster_script: the contract of cluster.sh (up idempotent or re-created, a failed up leaves
#                   nothing, shaping, status, link, run's placement and --mca merging).
#   cluster_train:  2 and 4 hosts: the layout report names each host and its ranks, the
#                   gradients cross the hosts' links, parameters equal a one-host run (1e-5;
#                   bitwise with --deterministic).
#   cluster_faults: a host's link cut and its rank killed mid-run: the job ends (the watchdog
#                   names rank and operation), nothing is left in the namespaces, --resume auto
#                   ends bitwise equal to an uninterrupted run.
# One at a time (RESOURCE_LOCK): the fault test bounds how long the job takes to end, and two
# trainings at once on these 2 cores stretch that. About 8 s, 15 s and 25 s.
add_test(NAME cluster_script
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cluster_test.sh script $<TARGET_FILE:shardprop_cli>)
add_test(NAME cluster_train
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cluster_test.sh train $<TARGET_FILE:shardprop_cli>)
add_test(NAME cluster_faults
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/cluster_test.sh faults $<TARGET_FILE:shardprop_cli>)
set_tests_properties(cluster_script cluster_train cluster_faults PROPERTIES TIMEOUT 180 LABELS "cluster;mpi"
    RESOURCE_LOCK cluster PROCESSORS 2 ENVIRONMENT "${SP_TEST_ENV}")
set_tests_properties(cluster_faults PROPERTIES LABELS "cluster;mpi;faults")

# ---- The layering of src/, enforced by the build (layering/layering.cmake).
include(${CMAKE_CURRENT_LIST_DIR}/layering/layering.cmake)
