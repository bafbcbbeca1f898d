# scale/: scaling beyond one machine (docs/scaling.md): the alpha-beta model (costmodel.c), its
# check against the SMPI skeleton of scripts/scale/ when SimGrid's smpicc is installed (CI
# installs libsimgrid-dev), and the advice of scaleplan.c. Every test here also has the label
# scale of old, so `ctest -L scale` runs this room and nothing else.
sp_test(costmodel LABELS scale)

# The scripts below run shardprop as an MPI singleton, where LeakSanitizer crashes inside Open MPI
# (see tests/lib/train_util.c): leak detection off for them, the rest of the sanitizers on.
set(SP_SCALE_ENV ${SP_TEST_ENV})
list(FILTER SP_SCALE_ENV EXCLUDE REGEX "^ASAN_OPTIONS=")
list(APPEND SP_SCALE_ENV ASAN_OPTIONS=fast_unwind_on_malloc=0:detect_leaks=0)

# The SMPI skeleton (scripts/scale/run.sh) on the 100 Gb/s fat tree at P = 8 and 64 for both
# benchmark models: every simulated step time within 20 % of the alpha-beta model (docs/scaling.md
# states the tolerance), and the skeleton's bucket plan equal to the trainer's
# (`train --dry-run --json`; the skeleton also re-derives it and refuses a different one). Once
# with the default 4 MB buckets, once with 0.5 MB (several buckets per model).
# Needs smpicc/smpirun (apt-get install libsimgrid-dev; CI installs it): fails, naming the
# package, without them.
foreach(mb 4 0.5)
  add_test(NAME scale_skeleton_${mb}mb
    COMMAND ${CMAKE_SOURCE_DIR}/scripts/scale/run.sh mlp-wide cnn --platforms ib100
            --ranks "8 64" --bucket-mb ${mb} --reps 3 --no-build --build ${CMAKE_BINARY_DIR}
            --results ${CMAKE_BINARY_DIR}/scale/test-${mb}mb --check 0.2)
  set_tests_properties(scale_skeleton_${mb}mb PROPERTIES TIMEOUT 300 LABELS scale
      ENVIRONMENT "${SP_SCALE_ENV}" PASS_REGULAR_EXPRESSION "within 20% of the model")
endforeach()

# The advice of `train --dry-run --network` (rows, summary, errors: scale_advice.sh).
add_test(NAME scale_advice COMMAND ${CMAKE_CURRENT_LIST_DIR}/scale_advice.sh
         $<TARGET_FILE:shardprop_cli>)
set_tests_properties(scale_advice PROPERTIES TIMEOUT 120 LABELS scale ENVIRONMENT "${SP_SCALE_ENV}")
